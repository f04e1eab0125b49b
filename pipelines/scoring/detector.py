"""The whole detector in one object: videos in, P(FAKE) per video out, through exactly the code
and settings that made the training data.

    files -> features.faces.extract_faces (the training FaceConfig) -> every fold model of every
    learner (mean logit, as the oof stage scored its test videos) -> features.aggregate (the
    training AggregateConfig) -> the fitted level-1 StackedEnsemble (calibration, clipping)

With a sound learner in the ensemble (`DetectorSpec.audio`), each file's soundtrack also goes
through base_learners.audio_oof.predict_unseen (the training AudioConfig, windows at the frames
the face stage plans, every fold model's mean logit per window) and, for the lip-sync learner,
base_learners.lipsync_oof.predict_unseen (the faces just extracted, paired with the windows at
their frames); the rows join the frame predictions before aggregation, exactly as in oof; every
output row then says its `audio_status`, and a video without usable sound has NaN sound features
(the ensemble treats them as missing). A detector without one never decodes audio.

`DetectorSpec` is the JSON-able description (face and aggregation settings, each learner's
config and train config, the folds whose checkpoints it carries); `Detector` adds the fitted
ensemble and the checkpoints' folder. A video that cannot be judged (pre-check status, no face,
decode error) gets the ensemble's training prior, and its status and message say so.
No MLflow here: `pipelines.scoring.package` wraps this as a pyfunc model.
"""

from __future__ import annotations

import hashlib
import os
import pickle  # only for its exception class: checkpoints load with weights_only=True
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.special import expit

from base_learners.audio import AudioCNN, load_audio_cnn
from base_learners.audio_oof import AudioStageConfig, predict_unseen, with_audio_preds
from base_learners.inputs import FRAME, input_kind, learner_inputs
from base_learners.lipsync import LipSyncNet, load_lipsync_net
from base_learners.lipsync_oof import input_shape as lipsync_input_shape
from base_learners.lipsync_oof import predict_unseen as predict_unseen_lipsync
from base_learners.registry import LearnerConfig, load_unit_model
from base_learners.train import TrainConfig, predict_logits
from features.aggregate import SEP, AggregateConfig, aggregate, learners_in
from features.common import ConfigError, from_dict, to_dict
from features.contract import FACE_KEY, FRAME_PREDS_COLUMNS, UNIT_FILES, frames_table, unit_name
from features.devices import check_device  # noqa: F401  (part of this module's interface)
from features.faces.config import FaceConfig
from features.faces.extract import extract_faces
from features.faces.face_sets import ESTIMATED, STATED, settings_from_dict
from features.faces.source import CropSource

DEFAULT_THRESHOLD = 0.5  # P(FAKE) above this is labelled FAKE (as meta.metrics' accuracy counts)
SCORE_PREFIX = "score_"  # per-learner video score columns: score_<learner> = mean frame P(FAKE)
VIDEO_SCORE_STAT = "mean"
TEST_TIMES = ("fold_models", "refit")  # every fold model of a learner (mean logit, as submission.csv),
# or the one model per learner refit on every labelled video (oof.py --set refit=true)
CPU = "cpu"
ZERO_WITHOUT_FRAMES = ("n_frames", "n_faces", "n_sampled")  # video columns of a video never decoded
# what torch.load(weights_only=True) and load_state_dict raise on a damaged checkpoint
CHECKPOINT_ERRORS = (OSError, RuntimeError, ValueError, EOFError, KeyError, pickle.UnpicklingError)
FILE_KEY_CHARS = 16  # hex characters of a scored file's cache key (file_video_id)
AUDIO_SCRATCH = "audio"  # the decoded soundtracks' folder inside a score call's temporary folder
NO_LABEL = ""  # the label of a row that could not be judged (its p_fake is the training prior)
OUTPUT_COLUMNS = ["filename", "path", "p_fake", "label", "status", "message", "n_faces", "n_frames"]
AUDIO_STATUS_COLUMN = "audio_status"  # detectors with a soundtrack learner: features.audio.STATUSES per row
NOT_DECODED = ""  # the audio status of a row that never reached decoding (its pre-check status says why)


@dataclass
class LearnerSpec:
    learner_config: dict
    train_config: dict
    folds: list[int]


@dataclass
class AudioSpec:
    """The sound learners: their oof stage config as trained (decoding, windows, log-mel, the nets'
    shapes; base_learners.audio_oof.AudioStageConfig), the face stage's `n_frames` the soundtrack
    learner's windows are centred on, and the folds of each learner the ensemble uses (empty: not
    used), one checkpoint each in units/<learner>/fold<k>/: the soundtrack learner's (`folds`) and
    the lip-sync learner's (`lipsync_folds`)."""

    config: dict
    n_frames: int
    folds: list[int]
    lipsync_folds: list[int] = field(default_factory=list)

    def stage(self) -> AudioStageConfig:
        return from_dict(AudioStageConfig, self.config, where="detector.json audio")


@dataclass
class DetectorSpec:
    """Everything but the fitted ensemble and the checkpoint bytes; stored as JSON in the model."""

    faces: dict
    aggregate: dict
    learners: dict[str, LearnerSpec]
    columns: list[str]  # the ensemble's input columns
    test_time: str = TEST_TIMES[0]
    info: dict = field(default_factory=dict)  # provenance: oof run, stack run, configuration, scores
    # the face settings the detector assumes and how they are known: made by the training face stage
    # ("face stage"), or a face set's "stated" / "estimated" margin (features.faces.face_sets); `faces`
    # already holds that margin, so every video is cropped as the training crops were
    face_settings: dict = field(default_factory=dict)
    audio: AudioSpec | None = None  # the sound learners, when the ensemble uses one (None: no audio)

    @property
    def audio_learner(self) -> str | None:
        """The soundtrack learner's name, when the ensemble uses it."""
        return self.audio.stage().learner if self.audio and self.audio.folds else None

    @property
    def lipsync_learner(self) -> str | None:
        """The lip-sync learner's name, when the ensemble uses it."""
        return self.audio.stage().lipsync.learner if self.audio and self.audio.lipsync_folds else None

    def sound_learners(self) -> list[str]:
        return [n for n in (self.audio_learner, self.lipsync_learner) if n]

    def score_learners(self) -> list[str]:
        """The learners with a score_<learner> column: the face learners, then the sound ones."""
        return list(self.learners) + self.sound_learners()

    def describe_faces(self) -> str:
        """One line: the face settings this detector crops videos with, and where they come from."""
        fs, faces = self.face_settings, self.faces
        crop = f"{faces.get('crop_size')} px crops, {faces.get('n_frames')} frames"
        if not fs:
            return f"margin {faces.get('margin')}, {crop} (as the training face stage made them)"
        if fs.get("how") in (STATED, ESTIMATED):
            return f"{settings_from_dict({k: v for k, v in fs.items() if k != 'learner_crop_size'}).describe()}; {crop}"
        return f"margin {fs.get('margin')}, {crop} (as the training face stage made them)"

    def face_config(self, workers: int = 1, device: str | None = None) -> FaceConfig:
        """The training FaceConfig; `workers` is a runtime field (not a bit of the crops changes),
        `device` replaces the training device (a detector trained on a GPU may score on a CPU)."""
        over = {"workers": workers, **({"device": device} if device else {})}
        return from_dict(FaceConfig, {**self.faces, **over}, where="detector faces")


def check_spec(spec: DetectorSpec, checkpoints: Path) -> None:
    """What packaging allows in detector.json, checked before anything is built from it: no learner
    fetches or reads weights of its own (`pretrained` false, no `weights_path`, no sequence
    `encoder_weights`: the fold checkpoints carry every weight), a known test time, and every fold's
    checkpoint (the audio learner's too) a plain file inside the model folder."""
    if spec.test_time not in TEST_TIMES:
        raise ConfigError(f"detector.json: test_time {spec.test_time!r} is not one of {TEST_TIMES}")
    root = Path(checkpoints).resolve()
    for name, ls in spec.learners.items():
        cfg = ls.learner_config
        seq = cfg.get("sequence") or {}
        if cfg.get("pretrained") or cfg.get("weights_path") is not None or seq.get("encoder_weights") is not None:
            raise ConfigError(f"detector.json: learner {name!r} asks for pretrained or local weights at load; "
                              "a packaged detector loads its fold checkpoints only (repackage it with stack.py)")
        _check_checkpoints(root, name, ls.folds)
    if spec.audio_learner:
        _check_checkpoints(root, spec.audio_learner, spec.audio.folds)
    if spec.lipsync_learner:
        _check_checkpoints(root, spec.lipsync_learner, spec.audio.lipsync_folds)


def _check_checkpoints(root: Path, name: str, folds: list[int]) -> None:
    for k in folds:
        path = (root / name / unit_name(k) / UNIT_FILES[0])
        real = path.resolve()
        if root not in real.parents or not real.is_file() or path.is_symlink():
            raise ConfigError(f"detector.json: learner {name!r} fold {k}: no checkpoint inside the model folder")


def usable_device(trained_on: str, device: str | None) -> str | None:
    """The device to score on: the one asked for, else the training one when present, else CPU."""
    if device:
        return device
    wants_cuda = trained_on.startswith("cuda") or trained_on == "auto"
    return None if not wants_cuda or torch.cuda.is_available() else CPU


def _empty_frame_preds() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="float64" if c in ("logit", "prob") else "object")
                         for c in FRAME_PREDS_COLUMNS})


@dataclass
class ScoredBatch:
    """What the last `Detector.score` call computed on the way, for explanations
    (pipelines.explain): the judged videos (one per distinct file, video_id from `file_video_id`),
    which video each input row is (`row_video_ids`, None for a row never decoded), their faces
    (crops stay readable when score was given a cache_dir), the frame predictions and the
    ensemble's input, one row per input row. `frame_preds` are the face learners'; the soundtrack
    learner's status and rows are in `audio` (None: a detector without one)."""

    videos: pd.DataFrame
    faces: object  # features.faces.extract.FaceResult
    frame_preds: pd.DataFrame
    features: pd.DataFrame
    row_video_ids: list = field(default_factory=list)
    audio: object = None  # base_learners.audio_oof.AudioStageResult


def file_video_id(path: str) -> str:
    """The face cache's name for a file to score: a hash of its resolved path, size and modification
    time, then the path. Why: keyed by the file, not by its position in a batch, the same videos in
    another order or another batch reuse their cached faces, and a file replaced at the same path
    (another size or time) is extracted again. A file that cannot be stat'ed keys by its path."""
    try:
        st = os.stat(path)
        stamp = f"{os.path.realpath(path)}\0{st.st_size}\0{st.st_mtime_ns}"
    except (OSError, ValueError):
        stamp = str(path)
    return f"{hashlib.sha256(stamp.encode('utf-8', 'surrogateescape')).hexdigest()[:FILE_KEY_CHARS]}:{path}"


class Detector:
    """A packaged detector, ready to score files (see the module docstring)."""

    def __init__(self, spec: DetectorSpec, ensemble, checkpoints: Path | str, device: str | None = None):
        self.spec, self.ensemble, self.checkpoints = spec, ensemble, Path(checkpoints)
        self.device = device  # None: as trained (CPU where that device is absent)
        self._models: dict[tuple[str, int], torch.nn.Module] = {}
        self._audio_models: dict[int, AudioCNN] = {}
        self._lipsync_models: dict[int, LipSyncNet] = {}
        self.timings: dict[str, float] = {}
        self.last_batch: ScoredBatch | None = None

    # ---- level 0 models, loaded once
    def learner_config(self, learner: str) -> LearnerConfig:
        return from_dict(LearnerConfig, self.spec.learners[learner].learner_config, where=f"detector learner {learner}")

    def models(self, learner: str) -> list[torch.nn.Module]:
        lcfg = self.learner_config(learner)
        out = []
        for k in self.spec.learners[learner].folds:
            if (learner, k) not in self._models:
                unit_dir = self.checkpoints / learner / unit_name(k)
                self._models[(learner, k)] = _load_checkpoint(learner, k, lambda: load_unit_model(unit_dir, lcfg))
            out.append(self._models[(learner, k)])
        return out

    def audio_models(self) -> dict[int, AudioCNN]:
        """fold -> the soundtrack learner's fold model (the spec must have audio)."""
        stage = self.spec.audio.stage()
        for k in self.spec.audio.folds:
            if k not in self._audio_models:
                path = self.checkpoints / stage.learner / unit_name(k) / UNIT_FILES[0]
                self._audio_models[k] = _load_checkpoint(
                    stage.learner, k, lambda: load_audio_cnn(path, stage.features.n_mels, stage.train))
        return self._audio_models

    def lipsync_models(self) -> dict[int, LipSyncNet]:
        """fold -> the lip-sync learner's fold model, built for the input shape its config gives."""
        stage = self.spec.audio.stage()
        n_mels, n_time = lipsync_input_shape(stage)
        for k in self.spec.audio.lipsync_folds:
            if k not in self._lipsync_models:
                path = self.checkpoints / stage.lipsync.learner / unit_name(k) / UNIT_FILES[0]
                self._lipsync_models[k] = _load_checkpoint(
                    stage.lipsync.learner, k, lambda: load_lipsync_net(path, n_mels, n_time, stage.lipsync.train))
        return self._lipsync_models

    def load_all(self) -> None:
        for learner in self.spec.learners:
            self.models(learner)
        if self.spec.audio_learner:
            self.audio_models()
        if self.spec.lipsync_learner:
            self.lipsync_models()

    # ---- scoring
    def score(self, rows: pd.DataFrame, threshold: float = DEFAULT_THRESHOLD, cache_dir: Path | None = None,
              workers: int = 1) -> pd.DataFrame:
        """One output row per input row (`filename`, `path`, `status`, `message` as made by
        pipelines.scoring.inputs), in input order. `cache_dir`: a face cache kept between calls
        (None: a temporary one)."""
        rows = rows.reset_index(drop=True)
        todo = rows.index[rows["status"].isna()]
        row_ids = [file_video_id(str(rows.at[i, "path"])) for i in todo]
        unique = list(dict.fromkeys(row_ids))  # one extraction per file, however often it is named
        paths = dict(zip(row_ids, rows.loc[todo, "path"].astype(str)))
        videos = pd.DataFrame({"video_id": unique, "root": "", "path": [paths[v] for v in unique],
                               "label": pd.array([pd.NA] * len(unique), dtype="Int8"),
                               "group": np.arange(len(unique)), "split": "test"})
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="fakestack-faces-") as tmp:
            faces = extract_faces(videos, self.spec.face_config(workers, self._device(self.spec.faces.get("device"))),
                                  Path(cache_dir) if cache_dir else Path(tmp), progress=False)
            t1 = time.perf_counter()
            frame_preds = self._frame_preds(faces, videos)
            ta = time.perf_counter()
            audio = self._audio(videos, faces, Path(tmp)) if self.spec.audio else None
            audio_s = time.perf_counter() - ta
        t2 = time.perf_counter()
        vf = aggregate(_with_audio(frame_preds, audio), faces.status, videos, _no_folds(videos),
                       from_dict(AggregateConfig, self.spec.aggregate, where="detector aggregate"), faces=faces.faces)
        vf = vf.set_index("video_id").loc[row_ids].reset_index()  # one row per judged input row
        features = self._features(len(rows), todo, vf)
        out = self._verdicts(rows, todo, vf, features, threshold)
        if audio is not None:
            out[AUDIO_STATUS_COLUMN] = _audio_statuses(audio.status, row_ids, todo, len(rows))
        by_row = dict(zip(todo, row_ids))
        self.last_batch = ScoredBatch(videos, faces, frame_preds, features,
                                      [by_row.get(i) for i in range(len(rows))], audio)
        self.timings = {"faces_s": t1 - t0, "level0_s": t2 - t1 - audio_s, "level1_s": time.perf_counter() - t2,
                        **({"audio_s": audio_s} if audio is not None else {})}  # decoding and scoring the sound
        return out

    def _device(self, trained_on: str | None) -> str | None:
        return usable_device(trained_on or CPU, self.device)

    def _frame_preds(self, faces, videos: pd.DataFrame) -> pd.DataFrame:
        """Per face (pair or track item, base_learners.inputs) and learner: the mean logit over the
        learner's fold models (float64), as base_learners.oof.combine gives the test rows."""
        if faces.faces.empty:
            return _empty_frame_preds()
        frames = frames_table(faces.faces, videos, _no_folds(videos))
        crops = np.asarray(CropSource.from_table(frames, faces.crops_dir))  # read once for every model: a
        # score call holds at most `batch_videos` videos (predict.py), so this is bounded
        tables = []
        for learner, ls in self.spec.learners.items():
            tcfg = from_dict(TrainConfig, ls.train_config, where=f"detector train {learner}")
            device = self._device(tcfg.device)
            tcfg = replace(tcfg, device=device) if device else tcfg
            items, inputs = learner_inputs(frames, crops, input_kind(self.learner_config(learner)))
            if items.empty:  # e.g. a pair learner on a video whose faces never show twice in a clip
                continue
            logits = [predict_logits(m, inputs, tcfg).astype(np.float64) for m in self.models(learner)]
            t = items[FACE_KEY].assign(learner=learner, fold=pd.array([pd.NA] * len(items), dtype="Int64"),
                                       logit=np.mean(logits, axis=0))
            t["prob"] = expit(t["logit"])
            tables.append(t[FRAME_PREDS_COLUMNS])
        return pd.concat(tables, ignore_index=True) if tables else _empty_frame_preds()

    def _audio(self, videos: pd.DataFrame, faces, scratch: Path):
        """The sound learners' status and prediction rows (base_learners.audio_oof.AudioStageResult)
        of the videos to score: the soundtrack learner's windows, and the lip-sync learner's rows of
        the faces just extracted. The decoded audio lives in `scratch` only (both read it): decoding
        costs about 0.1 s per 10 s video, and predict.py's cache bound (face_cache) counts face crops."""
        stage, audio_dir = self.spec.audio.stage(), scratch / AUDIO_SCRATCH
        result = predict_unseen(videos, stage, self.audio_models(), audio_dir, self.spec.audio.n_frames)
        if self.spec.lipsync_learner and not faces.faces.empty:
            frames = frames_table(faces.faces, videos, _no_folds(videos))
            lips = predict_unseen_lipsync(videos, frames, faces.crops_dir, stage, self.lipsync_models(), audio_dir)
            result = replace(result, preds=with_audio_preds(result.preds, lips) if not result.preds.empty else lips)
        return result

    def _features(self, n_rows: int, todo: pd.Index, vf: pd.DataFrame) -> pd.DataFrame:
        """The ensemble's input for every row: the judged videos' features, and for rows that never
        reached the face stage what a video without a decoded frame has (no learner feature, zero
        counts), so the ensemble itself gives them its training prior as it does in submission.csv."""
        features = pd.DataFrame(np.nan, index=pd.RangeIndex(n_rows), columns=self.spec.columns)
        features[[c for c in ZERO_WITHOUT_FRAMES if c in features.columns]] = 0.0
        present = [c for c in self.spec.columns if c in vf.columns]
        # faces were scored, yet columns differ: drift, unless only pair or track learners lack
        # them all (no video of the batch had two consecutive faces of a track: NaN, as without
        # faces); frame learners score every face, so once any learner scored, they must have
        scored = set(learners_in(vf)) - set(self.spec.sound_learners())  # sound: missing without a track
        if scored:
            scored |= {n for n in self.spec.learners if input_kind(self.learner_config(n)) == FRAME}
        drift = [c for c in self.spec.columns if c not in vf.columns and c.split(SEP)[0] in scored]
        if drift:
            raise KeyError(f"video features lack columns the ensemble needs: {drift[:5]}")
        features.loc[todo, present] = vf[present].to_numpy(dtype=float)
        return features

    def _verdicts(self, rows: pd.DataFrame, todo: pd.Index, vf: pd.DataFrame, features: pd.DataFrame,
                  threshold: float) -> pd.DataFrame:
        out = rows[["filename", "path", "status", "message"]].copy()
        out["p_fake"] = self.ensemble.predict_proba(features)[:, 1]
        out["n_faces"], out["n_frames"] = 0, 0
        learners = self.spec.score_learners()
        for learner in learners:
            out[SCORE_PREFIX + learner] = np.nan
        if len(todo):
            out.loc[todo, "status"] = vf["status"].astype(str).to_numpy()
            out.loc[todo, "message"] = vf["message"].fillna("").astype(str).to_numpy()
            out.loc[todo, ["n_faces", "n_frames"]] = vf[["n_faces", "n_frames"]].to_numpy()
            for learner in learners:
                col = f"{learner}{SEP}{VIDEO_SCORE_STAT}"
                if col in vf.columns:
                    out.loc[todo, SCORE_PREFIX + learner] = vf[col].to_numpy(dtype=float)
        for i in np.flatnonzero(self.ensemble.no_face_mask(features)):
            note = f"not judged: P(FAKE) is the training prior {out.at[i, 'p_fake']:.4f}"
            out.at[i, "message"] = "; ".join(filter(None, [str(out.at[i, "message"] or ""), note]))
            if out.at[i, "status"] == "ok":  # faces were found, but none reached the learners
                out.at[i, "status"] = "no_face"
        out["label"] = np.where(out["p_fake"] > threshold, "FAKE", "REAL")
        out.loc[out["status"] != "ok", "label"] = NO_LABEL  # the prior is no verdict on the video
        out = out.astype({"p_fake": float, "n_faces": int, "n_frames": int})
        return out[OUTPUT_COLUMNS + [SCORE_PREFIX + n for n in learners]]


def _load_checkpoint(learner: str, fold: int, load):
    """load(), a damaged (truncated or tampered) checkpoint reported in one line, not a traceback."""
    try:
        return load()
    except CHECKPOINT_ERRORS as err:
        raise ConfigError(f"the detector's {learner} fold {fold} checkpoint cannot be loaded "
                          f"({type(err).__name__}); the model folder is damaged") from None


def _with_audio(frame_preds: pd.DataFrame, audio) -> pd.DataFrame:
    """The level-0 rows features.aggregate reads, as in oof: the face learners' and the soundtrack
    learner's (a batch without faces: its rows alone, with their own dtypes)."""
    if audio is None:
        return frame_preds
    return audio.preds if frame_preds.empty else with_audio_preds(frame_preds, audio.preds)


def _audio_statuses(status: pd.DataFrame, row_ids: list[str], todo: pd.Index, n_rows: int) -> list[str]:
    """Each output row's audio status: its video's (features.audio.STATUSES), NOT_DECODED for a row
    that never reached decoding."""
    by_video = dict(zip(status["video_id"].astype(str), status["status"].astype(str)))
    by_row = dict(zip(todo, row_ids))
    return [by_video[by_row[i]] if i in by_row else NOT_DECODED for i in range(n_rows)]


def _no_folds(videos: pd.DataFrame) -> pd.DataFrame:
    """The folds table of videos to score: none belongs to a fold (all are test videos)."""
    return pd.DataFrame({"video_id": videos["video_id"], "fold": pd.array([pd.NA] * len(videos), dtype="Int64")})


def spec_to_dict(spec: DetectorSpec) -> dict:
    """detector.json's content; a spec without audio is written as before audio existed."""
    data = to_dict(spec)
    if data.get("audio") is None:
        data.pop("audio", None)
    return data


def spec_from_dict(data: dict) -> DetectorSpec:
    return from_dict(DetectorSpec, data, where="detector.json")
