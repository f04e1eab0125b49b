"""The lip-sync stage of oof.py: face crops x soundtrack windows -> `lipsync` per fold -> frame_preds rows.

Why it looks like this:

* **The audio stage's pieces, not a copy of them** (base_learners.audio_oof): the same decoded
  soundtracks (features.audio's cache, keyed by the same AudioConfig, so nothing is decoded twice),
  the same window cutting, the same grouped folds and fold split, the same unit folders (checkpoint,
  rows, then the marker), the same test-time mean over fold models (`combine`), the same units rows.
* **Samples are the face stage's frames that have both a face and a window**: face_idx 0 of each
  sampled frame the face stage cropped, with the window features.audio centres on that frame
  (`audio_table(frames=...)`: the face stage's own frame indices). A frame without a face, or a
  video whose audio_status is not `ok`, gives no sample and so no row: its `lipsync__*` features are
  NaN, as the soundtrack learner's are for a silent video. Every video stays in every table;
  audio_status and face_status already say why one has no rows.
* **Crops read one at a time and shrunk at once** (base_learners.lipsync.mouth_patches over a
  CropSource): only the small mouth patches are held, never the crops.
* **Target `corr` pairs every face of a frame with the frame's window** (the speaker is the face
  most in sync, base_learners.lipsync_corr), and gives one row a frame, its video's verdict.
* **Target `sync` trains on the real videos of the training folds only** (`trained_split`: the
  unit's recorded train videos are those), pairing each mouth with windows by where the windows sit
  in the track (`Samples.centre_s`, base_learners.lipsync_sync); held-out and test frames are
  scored on their aligned pair, as with `label`.
* **A unit is keyed by everything that decides it**: the audio windows' config, the lip-sync train
  config, the learner, the fold, the samples with their labels and folds, the audio cache's and the
  crop cache's folder names. A rerun loads finished units.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from base_learners.audio_oof import (
    AUDIO_CACHE_DIR,
    ROLE_OOF,
    ROLE_TEST,
    WINDOW_KEY,
    AudioStageConfig,
    FoldSplit,
    combine,
    fold_split,
    load_unit,
    save_unit,
    torch_threads,
    unit_info,
    unit_seed,
    video_groups,
    video_labels,
    window_table,
)
from base_learners.lipsync import LipSyncNet, mouth_patches, scored_rows, train_predict_fold
from base_learners.lipsync_corr import LANDMARK_POINTS, MOUTH_LANDMARKS, SyncCorrModel, mouth_opening
from base_learners.lipsync_sync import TARGET_CORR, TARGET_SYNC, around_instant, per_video_centred, real_videos, window_times
from features.audio import audio_table, collect_windows, log_mel
from features.common import config_hash
from features.contract import unit_name
from features.faces.cache import landmark_points, landmarks_for_rows
from features.faces.source import CropSource

log = logging.getLogger(__name__)

UNITS_DIR = "lipsync_units"  # under workdir/oof, beside the audio stage's
FACE_IDX = 0  # the face the face stage ranks first in a frame: the speaker, in a one-person video


@dataclass
class LipSyncStageResult:
    preds: pd.DataFrame  # FRAME_PREDS_COLUMNS rows of the lip-sync learner (OOF and test)
    units: list[dict] = field(default_factory=list)  # each fold unit's metrics.json, with its folder (`dir`)
    n_samples: dict = field(default_factory=dict)  # video_id -> paired samples (absent: none)


@dataclass
class Samples:
    """The paired inputs: row i is (mouths[i], mel[i]) with table row i (WINDOW_KEY, face_idx with
    target corr, label, group, fold)."""

    table: pd.DataFrame
    mouths: torch.Tensor
    mel: torch.Tensor
    cache_keys: tuple[str, str]  # the audio cache's and the crop cache's folder names (in the units' keys)
    centre_s: np.ndarray | None = None  # where each sample's audio input is centred, s into its track (`sync` pairs by it)


def paired_samples(videos: pd.DataFrame, folds: pd.DataFrame, frames: pd.DataFrame, crops_dir: Path | str,
                   cfg: AudioStageConfig, workdir: Path, audio_dir: Path | None = None) -> Samples:
    """One sample per frame with face FACE_IDX (target corr: per face of the frame, to find the
    speaker) and the audio window centred on the frame (see the module docstring); the soundtracks
    are cached under `audio_dir` (default: the oof workdir's audio cache)."""
    tcfg = cfg.lipsync.train
    every_face = tcfg.target == TARGET_CORR
    faces = frames[["video_id", "frame_idx", "face_idx", "crop_idx"]].astype({"video_id": str, "frame_idx": "int64"})
    if not every_face:
        faces = faces[faces["face_idx"] == FACE_IDX]
    decoded = audio_table(videos, cfg.features, audio_dir or Path(workdir) / AUDIO_CACHE_DIR,
                          frames=faces.drop_duplicates(["video_id", "frame_idx"]))
    windows, index = collect_windows(decoded, cfg.features)
    if index.empty:  # no video with both a face and usable sound
        n_mels, n_time = input_shape(cfg)
        mouths = torch.zeros((0, *tcfg.mouth_shape))
        return Samples(window_table(index[WINDOW_KEY], videos, folds), mouths, torch.zeros((0, n_mels, n_time)),
                       (decoded.audio_dir.name, Path(crops_dir).name), np.zeros(0))
    index = index.astype({"video_id": str, "frame_idx": "int64"}).reset_index(drop=True)
    paired = index.assign(window_row=np.arange(len(index))).merge(faces, on=["video_id", "frame_idx"], how="left",
                                                                  validate="one_to_many")
    if paired["crop_idx"].isna().any():  # audio_table was given exactly these frames
        raise ValueError("lipsync: an audio window at a frame the face stage did not crop")
    mouths = mouth_inputs(paired.astype({"crop_idx": "int64"}), crops_dir, tcfg)
    table = window_table(paired[WINDOW_KEY + (["face_idx"] if every_face else [])], videos, folds)
    centre, instant = window_times(decoded, index, cfg.features.sample_rate, cfg.features.window_s)
    mel = log_mel(windows, cfg.features)
    if tcfg.audio_span_s > 0:  # only the sound around the frame's instant, centred on it
        mel = around_instant(mel, instant - centre, cfg.features.hop_length / cfg.features.sample_rate,
                             tcfg.audio_span_s)
        centre = instant
    window_row = paired["window_row"].to_numpy()  # each face of a frame pairs with the frame's window
    mel, centre = mel[torch.from_numpy(window_row.copy())], centre[window_row]
    if tcfg.per_video_centred:
        vids = table["video_id"].to_numpy()
        mouths, mel = per_video_centred(mouths, vids), per_video_centred(mel, vids)
    return Samples(table, mouths, mel, (decoded.audio_dir.name, Path(crops_dir).name), centre)


def sample_index(table: pd.DataFrame) -> pd.DataFrame:
    """A samples table's key columns: WINDOW_KEY, and face_idx where a frame has a sample per face."""
    return table[[c for c in WINDOW_KEY + ["face_idx"] if c in table]]


def mouth_inputs(paired: pd.DataFrame, crops_dir: Path | str, tcfg) -> torch.Tensor:
    """(N, *tcfg.mouth_shape): each paired row's mouth patch, or its opening from the crop cache's
    68-point landmarks (`mouth_input: landmarks`; a cache without them is refused, naming it)."""
    if tcfg.mouth_input != MOUTH_LANDMARKS:
        return mouth_patches(CropSource.from_table(paired, crops_dir), tcfg)
    points = landmark_points(Path(crops_dir))
    if points != LANDMARK_POINTS:
        raise ValueError(f"{crops_dir}: audio.lipsync.train.mouth_input landmarks needs the face stage's "
                         f"{LANDMARK_POINTS}-point landmarks (faces.landmarks: {LANDMARK_POINTS}); this cache holds {points}")
    opening = mouth_opening(landmarks_for_rows(paired, crops_dir))
    return torch.from_numpy(opening).reshape(len(opening), *tcfg.mouth_shape)


def trained_split(table: pd.DataFrame, fold: int, target: str) -> FoldSplit:
    """fold_split, narrowed to the real videos for target `sync` (what the unit records and trains on)."""
    split = fold_split(table, fold)
    if target != TARGET_SYNC:
        return split
    reals = real_videos(split.train_ids, video_labels(table))
    return dataclasses.replace(split, train=split.train & table["video_id"].isin(reals).to_numpy(), train_ids=reals)


def fold_test_rows(model: LipSyncNet | SyncCorrModel, samples: Samples, rows: np.ndarray, fold: int, learner: str,
                   batch_size: int) -> pd.DataFrame:
    """One fold model's rows (role test) for samples of videos outside every fold; `combine`
    averages them over the folds, as for the soundtrack learner (docs/design.md rule 4)."""
    at = torch.from_numpy(rows)
    return scored_rows(model, samples.mouths[at], samples.mel[at], sample_index(samples.table.iloc[rows]), fold,
                       learner, batch_size).assign(role=ROLE_TEST)


def run_fold(samples: Samples, fold: int, cfg: AudioStageConfig, units_dir: Path) -> tuple[pd.DataFrame, dict]:
    """(prediction rows with `role`, metrics) of one fold unit: trained, or loaded when finished."""
    lcfg = cfg.lipsync
    table = samples.table
    key = config_hash(cfg.features, lcfg.train, lcfg.learner, fold, table[list(sample_index(table)) + ["label", "fold"]],
                     *samples.cache_keys)
    folder = units_dir / f"{lcfg.learner}-{unit_name(fold)}-{key}"
    done = load_unit(folder)
    if done is not None:
        return done
    t0 = time.perf_counter()
    split = trained_split(table, fold, lcfg.train.target)
    tcfg = dataclasses.replace(lcfg.train, seed=unit_seed(lcfg.train.seed, lcfg.learner, fold))
    with torch_threads(cfg.num_threads):
        model, oof, history = train_predict_fold(samples.mouths, samples.mel, sample_index(table), video_labels(table),
                                                 split.train_ids, table.loc[split.held, "video_id"].unique(), fold,
                                                 tcfg, lcfg.learner, samples.centre_s, video_groups(table))
        tested = fold_test_rows(model, samples, np.flatnonzero(split.test), fold, lcfg.learner, tcfg.predict_batch_size)
    rows = pd.concat([oof.assign(role=ROLE_OOF), tested], ignore_index=True)
    return save_unit(folder, model, rows, unit_info(lcfg.learner, fold, key, tcfg.seed, split, history,
                                                    time.perf_counter() - t0))


def run_lipsync_stage(videos: pd.DataFrame, folds: pd.DataFrame, frames: pd.DataFrame, crops_dir: Path | str,
                      cfg: AudioStageConfig, workdir: Path, progress: bool = True) -> LipSyncStageResult:
    """Pair each sampled face with its soundtrack window and run (or load) one lipsync unit per fold
    (`frames`: the face stage's frames table, `crops_dir`: its crop cache)."""
    samples = paired_samples(videos, folds, frames, crops_dir, cfg, workdir)
    counts = samples.table["video_id"].value_counts().to_dict()
    log.info("lipsync: %d samples from %d of %d videos", len(samples.table), len(counts), len(videos))
    if not samples.table["fold"].notna().any():
        log.warning("lipsync: no labelled video has both a face and a usable soundtrack; %s gets no predictions",
                    cfg.lipsync.learner)
        return LipSyncStageResult(combine([]), [], counts)
    units_dir = Path(workdir) / "oof" / UNITS_DIR
    rows, infos = [], []
    fold_ids = sorted(int(k) for k in folds["fold"].dropna().unique())
    for fold in tqdm(fold_ids, desc=f"{cfg.lipsync.learner} folds", unit="unit", disable=not progress):
        preds, info = run_fold(samples, fold, cfg, units_dir)
        rows.append(preds)
        infos.append(info)
    return LipSyncStageResult(combine(rows), infos, counts)


def input_shape(cfg: AudioStageConfig) -> tuple[int, int]:
    """(n_mels, n_time) of the audio input paired_samples gives the net: the whole window's log-mel
    (centred STFT: 1 + samples // hop columns), or 2h + 1 columns around the instant with
    `audio_span_s` (base_learners.lipsync_sync.around_instant). The packaged detector builds its
    fold models from this before it sees a video."""
    feats, span = cfg.features, cfg.lipsync.train.audio_span_s
    if span > 0:
        return feats.n_mels, 2 * int(round(span / 2 / (feats.hop_length / feats.sample_rate))) + 1
    return feats.n_mels, 1 + feats.window_samples // feats.hop_length


def predict_unseen(videos: pd.DataFrame, frames: pd.DataFrame, crops_dir: Path | str, cfg: AudioStageConfig,
                   models: dict[int, LipSyncNet | SyncCorrModel], cache_dir: Path) -> pd.DataFrame:
    """frame_preds rows of videos outside every fold (the packaged detector's), as run_lipsync_stage
    scores its test split: the same paired samples (`frames`: their face stage's frames table,
    `crops_dir`: its crops; the soundtracks decoded into `cache_dir`), each fold model's logit,
    their mean per sample. A frame without a face or a window gets no row, as in oof."""
    folds = pd.DataFrame({"video_id": videos["video_id"].astype(str),
                          "fold": pd.array([pd.NA] * len(videos), dtype="Int64")})
    samples = paired_samples(videos, folds, frames, crops_dir, cfg, Path(cache_dir), audio_dir=Path(cache_dir))
    if samples.table.empty:
        return combine([])
    every = np.arange(len(samples.table))
    return combine([fold_test_rows(model, samples, every, fold, cfg.lipsync.learner, cfg.lipsync.train.predict_batch_size)
                    for fold, model in models.items()])
