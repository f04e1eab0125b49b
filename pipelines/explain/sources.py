"""Where explained videos come from: the packaged detector's last scoring batch (predict.py
--explain) and an oof + stack run's out-of-fold videos (stack.py, the costliest ones first).

Each source builds `VideoCase`s from exactly what scored the video. For the detector that is its
fold models (mean logit) and the fitted ensemble. For an OOF video it is the fold model of each
learner that did not train on it (its frame predictions are that model's) and the best
configuration refitted on the other outer folds, which is what scored it in the outer CV: the
report's P(FAKE) is the one that cost the log loss, and the case says whether the refit reproduced
it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import clone

from base_learners.audio_oof import STATUS_TABLE as AUDIO_STATUS
from base_learners.registry import LearnerConfig, load_unit_model
from features.common import from_dict
from features.corpus.face_csv import MEDIA_FACES
from features.faces.config import FaceConfig
from features.faces.extract import extract_faces, load_crops
from features.losses import row_log_losses
from meta.contributions import contributions
from pipelines.explain.case import ExplainConfig, VideoCase
from pipelines.explain.report import report_name, write_report
from pipelines.explain.sound import SoundView, sound_view
from pipelines.scoring import package
from pipelines.scoring.detector import DEFAULT_THRESHOLD, TEST_TIMES

FACE_CACHE = "faces"  # the oof workdir's face cache folder (pipelines/oof.py face_stage)
REPRODUCED_ATOL = 1e-6  # an outer-fold refit must give the OOF P(FAKE) to this precision


def _video_faces(faces, video_id: str) -> tuple[pd.DataFrame, np.ndarray | None]:
    rows = faces.faces[faces.faces["video_id"] == video_id]
    if rows.empty:
        return rows, None
    return rows, load_crops(faces.crops_dir, video_id)


def detector_cases(detector, verdicts: pd.DataFrame, threshold: float) -> list[VideoCase]:
    """One case per row of the detector's last `score` call (`verdicts` is what it returned)."""
    batch = detector.last_batch
    ids = dict(enumerate(batch.row_video_ids))  # input row -> its video id (None: never decoded)
    n_frames = int(detector.spec.faces.get("n_frames", 0))
    models = {name: detector.models(name) for name in detector.spec.learners}
    audio = detector.spec.audio.stage() if detector.spec.audio else None
    cases = []
    for i, v in enumerate(verdicts.itertuples(index=False)):
        vid = ids.get(i)
        faces, crops = _video_faces(batch.faces, vid) if vid is not None else (pd.DataFrame(), None)
        fp = batch.frame_preds[batch.frame_preds["video_id"] == vid] if vid is not None else pd.DataFrame()
        contrib = contributions(detector.ensemble, batch.features.iloc[[i]])
        path = Path(v.path) if v.path and Path(v.path).is_file() else None
        cases.append(VideoCase(name=str(v.filename), path=path, status=str(v.status), message=str(v.message or ""),
                               p_fake=float(v.p_fake), threshold=threshold, n_frames=n_frames,
                               decoder=str(detector.spec.faces.get("decoder", "opencv")),
                               clip_len=int(detector.spec.faces.get("clip_len", 1)), faces=faces,
                               crops=crops, frame_preds=fp, models=models, contributions=contrib,
                               context={"model": str(detector.spec.info.get("configuration", "")),
                                        "faces used": str(v.n_faces)},
                               sound=_batch_sound(audio, batch.audio, vid, path) if audio else None))
    return cases


def _batch_sound(stage, scored, video_id: str | None, path: Path | None) -> SoundView:
    """A detector row's soundtrack: its status and window rows from the batch that scored it."""
    if video_id is None:  # never decoded: its pre-check status says why
        return SoundView(stage.learner, "", "not decoded")
    status = scored.status.set_index("video_id").loc[video_id]
    preds = scored.preds
    return sound_view(stage.learner, stage.features, video_id, path, str(status["status"]),
                      preds[(preds["video_id"] == video_id) & (preds["learner"] == stage.learner)])


def _oof_sound(run: OOFRun, video_id: str, path: Path | None) -> SoundView | None:
    """An oof video's soundtrack: the oof run's audio_status row and its soundtrack learner's rows."""
    status_file = run.oof_dir / f"{AUDIO_STATUS}.parquet"
    if run.spec.audio is None or not status_file.is_file():
        return None
    stage = run.spec.audio.stage()
    status = pd.read_parquet(status_file).set_index("video_id").loc[video_id]
    fp = run.tables["frame_preds"]
    return sound_view(stage.learner, stage.features, video_id, path, str(status["status"]),
                      fp[(fp["video_id"] == video_id) & (fp["learner"] == stage.learner)])


def write_detector_reports(detector, verdicts: pd.DataFrame, threshold: float, out_dir: Path,
                           cfg: ExplainConfig) -> list[Path]:
    """A report per scored row into `out_dir` (names: pipelines.explain.report.report_name)."""
    return [write_report(case, out_dir / report_name(case.name, str(v.path)), cfg)
            for case, v in zip(detector_cases(detector, verdicts, threshold), verdicts.itertuples(index=False))]


def video_log_loss(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Each video's own log loss (features.losses, the project's one clipping)."""
    return row_log_losses(y, p)


@dataclass
class OOFRun:
    """What an oof run left that explanations need: its tables and its unit folders."""

    tables: dict[str, pd.DataFrame]
    oof_dir: Path
    spec: object  # pipelines.scoring.detector.DetectorSpec of the fold models
    unit_dirs: dict[tuple[str, int], Path]


def costliest(X: pd.DataFrame, p_oof: np.ndarray, n: int) -> np.ndarray:
    """Row positions of the n labelled OOF videos with the highest log loss, costliest first."""
    loss = video_log_loss(X["label"].to_numpy(dtype=float), p_oof)
    return np.argsort(-loss, kind="stable")[:n]


def oof_cases(best, X: pd.DataFrame, p_oof: np.ndarray, run: OOFRun, n: int) -> list[VideoCase]:
    """Cases of the n costliest OOF videos of the best configuration (see the module docstring)."""
    pick = costliest(X, p_oof, n)
    y, folds, groups = X["label"].to_numpy(dtype=int), X["fold"].to_numpy(dtype=int), X["group"].to_numpy()
    videos = run.tables["videos"].set_index("video_id")
    ids = X["video_id"].iloc[pick].astype(str).tolist()
    todo = videos.loc[ids].reset_index()[["video_id", "root", "path"]]
    face_cfg = from_dict(FaceConfig, {**run.spec.faces, "workers": 1}, where="oof faces")
    faces = extract_faces(todo, face_cfg, run.oof_dir.parent.parent / FACE_CACHE, progress=False)
    fitted: dict[int, object] = {}
    cases = []
    for pos, vid in zip(pick, ids):
        k = int(folds[pos])
        if k not in fitted:
            train = folds != k
            fitted[k] = clone(best.ensemble).fit(X.loc[train].reset_index(drop=True), y[train], groups=groups[train])
        row = X.iloc[[pos]]
        refit_p = float(fitted[k].predict_proba(row)[0, 1])
        models = {name: [load_unit_model(run.unit_dirs[(name, k)],
                                         from_dict(LearnerConfig, ls.learner_config, where=f"learner {name}"))]
                  for name, ls in run.spec.learners.items()}
        fp = run.tables["frame_preds"]
        fp = fp[(fp["video_id"] == vid) & fp["learner"].isin(list(models))]
        rows, crops = _video_faces(faces, vid)
        status = run.tables["face_status"].set_index("video_id").loc[vid]
        reproduced = abs(refit_p - float(p_oof[pos])) <= REPRODUCED_ATOL
        context = {"true label": "FAKE" if y[pos] else "REAL",
                   "video log loss": f"{video_log_loss(np.array([y[pos]]), np.array([p_oof[pos]]))[0]:.4f}",
                   "scored by": f"outer fold {k}: the level-0 fold-{k} models and {best.spec.name} fitted "
                                "without this fold (out-of-fold)",
                   "contributions": "of that refit, which gives the same P(FAKE)" if reproduced else
                   f"of that refit, whose P(FAKE) {refit_p:.6f} differs from the OOF one"}
        root = videos.at[vid, "root"]
        path = Path(str(root)) / str(videos.at[vid, "path"])
        cases.append(VideoCase(name=vid, path=path if path.is_file() else None, status=str(status["status"]),
                               message=str(status["message"] or ""), p_fake=float(p_oof[pos]), threshold=DEFAULT_THRESHOLD,
                               n_frames=face_cfg.n_frames, decoder=face_cfg.decoder, clip_len=face_cfg.clip_len,
                               faces=rows, crops=crops,
                               frame_preds=fp, models=models,
                               contributions=contributions(fitted[k], row), context=context,
                               sound=_oof_sound(run, vid, path if path.is_file() else None)))
    return cases


def write_oof_reports(best, X: pd.DataFrame, p_oof: np.ndarray, run: OOFRun, n: int, out_dir: Path,
                      cfg: ExplainConfig) -> list[Path]:
    """Reports of the n costliest OOF videos into `out_dir`, named by rank (01-..., costliest first)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return [write_report(case, out_dir / f"{rank:02d}-{report_name(case.name, case.name)}", cfg)
            for rank, case in enumerate(oof_cases(best, X, p_oof, run, n), start=1)]


def explain_costliest(best, X: pd.DataFrame, p_oof: np.ndarray, tables: dict, oof_dir: Path | None, n: int,
                      out_dir: Path, cfg: ExplainConfig) -> tuple[list[Path], str]:
    """stack.py's explanations: reports of the n costliest OOF videos, or ([], why not)."""
    if n <= 0:
        return [], ""
    videos = tables["videos"]
    if "media" in videos and (videos["media"] == MEDIA_FACES).any():
        return [], "no explanations: trained on pre-extracted face images (no video to show)"
    try:
        if oof_dir is None:
            raise package.PackagingError("the oof run has no output folder tag")
        spec, unit_dirs = package.spec_from_oof(oof_dir, tables["units"], list(best.ensemble.meta_.learners_), {},
                                                [], {}, TEST_TIMES[0])
    except package.PackagingError as err:
        return [], f"no explanations: {err}"
    return write_oof_reports(best, X, p_oof, OOFRun(tables, Path(oof_dir), spec, unit_dirs), n, out_dir, cfg), ""
