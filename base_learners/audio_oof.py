"""The audio stage of oof.py: soundtracks -> windows -> `audio_cnn` per fold -> frame_preds rows.

Why it looks like this:

* **The frame learners' folds, the frame learners' rules.** Fold k's model trains on the windows of
  labelled videos of the other folds only and predicts fold k (docs/design.md rule 2); test videos
  (no fold) are predicted by every fold model and get the mean logit (rule 4). Each unit records
  the videos it trained on, so the discipline can be checked after the fact (tests do).
* **Windows at the frames the face stage samples, planned from the header** (features.audio:
  `planned_frames`), not only where a face was found: a voice needs no face, so a video whose face
  the detector missed still has audio evidence.
* **Every video keeps a row.** `audio_status` (features.audio.TABLE_COLUMNS) has one row per video
  with its status (`ok`, `no_audio`, `short_audio`, `decode_error`, `missing_file`); a video other
  than `ok` has no audio rows in frame_preds, so features.aggregate leaves its `audio_cnn__*`
  features NaN and the level-1 models treat them as missing (meta.learners: LightGBM natively,
  logistic regression through a median imputer with missing indicators, Caruana / average with the
  prior; a subset of the audio learner alone gives such a video the prior).
* **Cached and resumable like a frame unit**: decoded audio in features.audio's cache, and one
  folder per fold named by a hash of everything that decides it (audio and training configs, the
  learner, the fold, the windows with their labels and folds, the audio cache key); `model.pt`,
  `preds.parquet`, then `metrics.json`, written last, marks it done.
* **Deterministic**: the unit seed derives from (seed, learner, fold) and torch runs on
  `num_threads` threads while training, so neither unit order nor an interruption changes a number.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import torch
from scipy.special import expit
from torch import nn
from tqdm.auto import tqdm

from base_learners.audio import LEARNER, AudioCNN, AudioTrainConfig, predict_audio_logits, train_predict_fold, window_preds
from base_learners.lipsync import LipSyncStageConfig
from features.audio import AudioConfig, audio_table, collect_windows, log_mel
from features.common import added_field, atomic_write_json, atomic_write_parquet, atomic_write_with, config_hash
from features.contract import FRAME_PREDS_COLUMNS, UNITS_COLUMNS, unit_name

log = logging.getLogger(__name__)

STATUS_TABLE = "audio_status"  # features.contract.TABLES
AUDIO_CACHE_DIR, UNITS_DIR = "audio", "audio_units"  # under the workdir, and under workdir/oof
MODEL_FILE, PREDS_FILE, MARKER_FILE = "model.pt", "preds.parquet", "metrics.json"  # written in this order
ROLE_OOF, ROLE_TEST = "oof", "test"
SEED_RANGE = 2**31 - 1
WINDOW_KEY = ["video_id", "window_idx", "frame_idx"]


@dataclass(frozen=True)
class AudioStageConfig:
    """`oof.py`'s `audio` section. Off by default, and then in no hash (features.common.added_field)."""

    enabled: bool = False
    learner: str = LEARNER  # its name in frame_preds and the stack's tables
    features: AudioConfig = AudioConfig()  # decoding, windows, log-mel (its hash keys the audio cache)
    train: AudioTrainConfig = AudioTrainConfig()
    num_threads: int = 1  # torch threads while training: results may differ bit for bit across counts
    # the lip-sync learner (base_learners.lipsync_oof): mouths against these windows; needs `enabled`
    lipsync: LipSyncStageConfig = added_field(LipSyncStageConfig())

    def __post_init__(self) -> None:
        if self.num_threads < 1:
            raise ValueError(f"audio.num_threads must be >= 1, got {self.num_threads}")
        if self.lipsync.enabled and not self.enabled:
            raise ValueError("audio.lipsync.enabled needs audio.enabled (it pairs mouths with the audio stage's windows)")
        if self.lipsync.enabled and self.lipsync.learner == self.learner:
            raise ValueError(f"audio.lipsync.learner and audio.learner are both {self.learner!r}: one name per learner")


@dataclass
class AudioStageResult:
    status: pd.DataFrame  # audio_status: one row per video
    preds: pd.DataFrame  # FRAME_PREDS_COLUMNS rows of the audio learner (OOF and test)
    units: list[dict] = field(default_factory=list)  # each fold unit's metrics.json, with its folder (`dir`)


def unit_seed(seed: int, learner: str, fold: int) -> int:
    return int(config_hash(seed, learner, fold), 16) % SEED_RANGE


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def window_table(index: pd.DataFrame, videos: pd.DataFrame, folds: pd.DataFrame) -> pd.DataFrame:
    """The windows' index rows with their video's label, group and fold (NaN fold: a test window)."""
    labels = videos[["video_id", "label", "group"]].astype({"video_id": str})
    fold = folds[["video_id", "fold"]].astype({"video_id": str})
    out = index.astype({"video_id": str}).merge(labels, on="video_id", how="left", validate="many_to_one")
    return out.merge(fold, on="video_id", how="left", validate="many_to_one").reset_index(drop=True)


@dataclass(frozen=True)
class FoldSplit:
    """Which rows of a window table fold k's unit trains on, predicts out of fold, and predicts as test."""

    train: np.ndarray  # bool masks over the table's rows
    held: np.ndarray
    test: np.ndarray
    train_ids: list[str]  # the videos it trains on (recorded in the unit, checked by tests)


def fold_split(table: pd.DataFrame, fold: int) -> FoldSplit:
    """Rule 2 and 4 of docs/design.md: train on labelled videos of the other folds, predict fold
    `fold`, and predict the videos of no fold (test)."""
    train = (table["fold"].notna() & (table["fold"] != fold)).fillna(False).to_numpy(dtype=bool)
    held = (table["fold"] == fold).fillna(False).to_numpy(dtype=bool)
    test = table["fold"].isna().to_numpy(dtype=bool)
    return FoldSplit(train, held, test, sorted(set(table.loc[train, "video_id"])))


def video_labels(table: pd.DataFrame) -> pd.Series:
    return table.drop_duplicates("video_id").set_index("video_id")["label"].astype("float64")


def video_groups(table: pd.DataFrame) -> pd.Series:
    """video_id -> group of a window table (a fake and its original share one)."""
    return table.drop_duplicates("video_id").set_index("video_id")["group"].astype(str)


def load_unit(folder: Path) -> tuple[pd.DataFrame, dict] | None:
    """A finished unit's (rows, info), or None when `folder` holds none (its marker is written last)."""
    if not (folder / MARKER_FILE).exists():
        return None
    info = json.loads((folder / MARKER_FILE).read_text())
    return pd.read_parquet(folder / PREDS_FILE), {**info, "cached": True, "dir": str(folder)}


def save_unit(folder: Path, model: nn.Module, rows: pd.DataFrame, info: dict) -> tuple[pd.DataFrame, dict]:
    """Write a trained unit: checkpoint, rows, then the marker (last: the unit is done)."""
    atomic_write_with(folder / MODEL_FILE, lambda tmp: torch.save(model.state_dict(), tmp))
    atomic_write_parquet(rows, folder / PREDS_FILE)
    atomic_write_json(info, folder / MARKER_FILE)
    return rows, {**info, "cached": False, "dir": str(folder)}


def unit_info(learner: str, fold: int, key: str, seed: int, split: FoldSplit, history: list[dict],
              seconds: float) -> dict:
    """A unit's metrics.json (the train videos: what the fold-discipline checks read)."""
    return {"learner": learner, "fold": fold, "key": key, "seed": seed, "n_train": int(split.train.sum()),
            "n_oof": int(split.held.sum()), "n_test": int(split.test.sum()), "train_video_ids": split.train_ids,
            "history": history, "train_seconds": seconds}


def run_fold(mel: torch.Tensor, table: pd.DataFrame, fold: int, cfg: AudioStageConfig, units_dir: Path,
             audio_key: str) -> tuple[pd.DataFrame, dict]:
    """(prediction rows with `role`, metrics) of one fold unit: trained, or loaded when finished."""
    key = config_hash(cfg.features, cfg.train, cfg.learner, fold, table[WINDOW_KEY + ["label", "fold"]], audio_key)
    folder = units_dir / f"{cfg.learner}-{unit_name(fold)}-{key}"
    done = load_unit(folder)
    if done is not None:
        return done
    t0 = time.perf_counter()
    split = fold_split(table, fold)
    tcfg = dataclasses.replace(cfg.train, seed=unit_seed(cfg.train.seed, cfg.learner, fold))
    with torch_threads(cfg.num_threads):
        model, oof, history = train_predict_fold(mel, table[WINDOW_KEY], video_labels(table), split.train_ids,
                                                 table.loc[split.held, "video_id"].unique(), fold, tcfg)
        tested = fold_test_rows(model, mel[torch.from_numpy(np.flatnonzero(split.test))], table.loc[split.test],
                                fold, cfg.learner, tcfg.predict_batch_size)
    rows = pd.concat([oof.assign(role=ROLE_OOF), tested], ignore_index=True)
    rows["learner"] = cfg.learner
    return save_unit(folder, model, rows, unit_info(cfg.learner, fold, key, tcfg.seed, split, history,
                                                    time.perf_counter() - t0))


def fold_test_rows(model: AudioCNN, mel: torch.Tensor, index: pd.DataFrame, fold: int, learner: str,
                   batch_size: int) -> pd.DataFrame:
    """One fold model's rows (role test) for windows of videos outside every fold; `combine` averages
    them over the folds. One function for the oof stage's test split and the packaged detector, so
    both score a video the same way (docs/design.md rule 4)."""
    logits = predict_audio_logits(model, mel, batch_size)
    return window_preds(index[WINDOW_KEY], logits, fold, learner).assign(role=ROLE_TEST)


def combine(rows: list[pd.DataFrame]) -> pd.DataFrame:
    """frame_preds rows: OOF windows as predicted, test windows the mean logit of the fold models;
    face_idx 0, window_idx dropped (a window is named by its frame)."""
    if not rows or all(r.empty for r in rows):
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(FRAME_PREDS_COLUMNS, (
            "object", "int64", "int64", "object", "Int64", "float64", "float64"))})
    allp = pd.concat(rows, ignore_index=True)
    oof = allp[allp["role"] == ROLE_OOF].astype({"fold": "Int64"})
    keys = ["learner", "video_id", "frame_idx", "face_idx"]
    test = allp[allp["role"] == ROLE_TEST].groupby(keys, sort=True)["logit"].mean().reset_index()
    test["fold"] = pd.array([pd.NA] * len(test), dtype="Int64")
    out = pd.concat([oof, test], ignore_index=True)
    out["prob"] = expit(out["logit"].astype(np.float64))
    return out[FRAME_PREDS_COLUMNS].sort_values(keys, kind="stable").reset_index(drop=True)


def run_audio_stage(videos: pd.DataFrame, folds: pd.DataFrame, cfg: AudioStageConfig, workdir: Path,
                    n_frames: int, progress: bool = True) -> AudioStageResult:
    """Decode every video's soundtrack (cached), cut a window at each of the `n_frames` frames the
    face stage samples, and run (or load) one audio_cnn unit per fold."""
    decoded = audio_table(videos, cfg.features, Path(workdir) / AUDIO_CACHE_DIR, n_frames=n_frames, progress=progress)
    windows, index = collect_windows(decoded, cfg.features)
    table = window_table(index, videos, folds)
    fold_ids = sorted(int(k) for k in folds["fold"].dropna().unique())
    if not (table["fold"].notna()).any():
        log.warning("audio: no labelled video has a usable soundtrack; %s gets no predictions", cfg.learner)
        return AudioStageResult(decoded.table, combine([]))
    mel = log_mel(windows, cfg.features)
    units_dir = Path(workdir) / "oof" / UNITS_DIR
    rows, infos = [], []
    for fold in tqdm(fold_ids, desc=f"{cfg.learner} folds", unit="unit", disable=not progress):
        preds, info = run_fold(mel, table, fold, cfg, units_dir, decoded.audio_dir.name)
        rows.append(preds)
        infos.append(info)
    return AudioStageResult(decoded.table, combine(rows), infos)


def predict_unseen(videos: pd.DataFrame, cfg: AudioStageConfig, models: dict[int, AudioCNN], cache_dir: Path,
                   n_frames: int) -> AudioStageResult:
    """Level 0 of videos outside every fold (the packaged detector's), as run_audio_stage scores its
    test split: windows at the `n_frames` frames planned from each header, every fold model's
    logits (`models`: fold -> model), their mean per window. A video whose status is not `ok` has
    a status row and no prediction rows (NaN audio features, as in oof)."""
    decoded = audio_table(videos, cfg.features, Path(cache_dir), n_frames=n_frames, progress=False)
    windows, index = collect_windows(decoded, cfg.features)
    mel = log_mel(windows, cfg.features)
    index = index.astype({"video_id": str})
    with torch_threads(cfg.num_threads):
        rows = [fold_test_rows(model, mel, index, fold, cfg.learner, cfg.train.predict_batch_size)
                for fold, model in models.items()]
    return AudioStageResult(decoded.table, combine(rows))


def with_audio_units(units: pd.DataFrame, audio_units: list[dict], relative_to: Path) -> pd.DataFrame:
    """The units table with one row per audio fold unit (`dir` relative to the run's output folder,
    as base_learners.oof.units_table writes it), so stack.py can package the audio models."""
    if not audio_units:
        return units
    rows = pd.DataFrame([{"learner": u["learner"], "fold": int(u["fold"]), "key": u["key"],
                          "dir": os.path.relpath(u["dir"], relative_to)} for u in audio_units], columns=UNITS_COLUMNS)
    return pd.concat([units, rows.astype(units.dtypes.to_dict())], ignore_index=True)


def with_audio_preds(frame_preds: pd.DataFrame, audio_preds: pd.DataFrame) -> pd.DataFrame:
    """frame_preds with the audio learner's rows appended (same columns and dtypes)."""
    if audio_preds.empty:
        return frame_preds
    return pd.concat([frame_preds, audio_preds.astype(frame_preds.dtypes.to_dict())], ignore_index=True)
