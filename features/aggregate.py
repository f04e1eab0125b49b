"""Per learner x video statistics of frame predictions: the level-1 feature table.

frame_preds holds one row per (video, frame, face, learner). Faces in one frame are first reduced
to one value per frame (FACE_REDUCERS; default: the most-fake face, since one swapped face makes
the video fake), then per (learner, video) we compute order statistics, top-k and share-above
summaries, the DFDC winner's "confident" mean, the mean logit and two temporal statistics over the
frames in frame order. Everything is vectorised groupby work: no Python loop over videos.

Output: one row per video of `videos` (videos without faces keep NaN learner features and their
face_status status), columns `{learner}__{stat}` plus video-level columns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from features.common import Registry
from features.contract import FRAME_PREDS_COLUMNS

SEP = "__"  # `{learner}__{stat}`
KEY = ["learner", "video_id"]
VIDEO_COLUMNS = ("video_id", "label", "fold", "split", "group", "status", "message", "n_frames",
                 "n_faces", "n_sampled", "det_prob_mean")
MAIN_TRACK = 0  # face_idx of the main (first, largest) track

FACE_REDUCERS: Registry[Callable[[pd.DataFrame], pd.DataFrame]] = Registry("face reducer")


@dataclass
class AggregateConfig:
    """Which statistics to compute; defaults follow the DFDC winner where one exists."""

    face_reducer: str = "max"  # FACE_REDUCERS: max (most-fake face), mean, main_track
    quantiles: list[float] = field(default_factory=lambda: [0.1, 0.25, 0.75, 0.9])
    top_k: int = 3  # mean of the k most-fake frames
    thresholds: list[float] = field(default_factory=lambda: [0.5, 0.8])  # share of frames above
    confident_hi: float = 0.8  # a frame is confidently fake above this
    confident_lo: float = 0.2  # ... confidently real below this
    confident_fake_share: float = 0.4  # fake branch: > this share of frames confidently fake ...
    confident_fake_min: int = 3  # ... and at least this many (the winner used 11 of 32 frames)
    confident_real_share: float = 0.9  # real branch: > this share confidently real
    run_threshold: float = 0.5  # longest run of consecutive frames above this


def _pct(x: float) -> str:
    return f"{round(x * 100):02d}"


def stat_names(cfg: AggregateConfig) -> list[str]:
    """The `{stat}` part of the learner columns, in output order."""
    return (["mean", "median", "std", "min", "max"]
            + [f"q{_pct(q)}" for q in cfg.quantiles]
            + [f"top{cfg.top_k}"]
            + [f"share{_pct(t)}" for t in cfg.thresholds]
            + ["confident", "logit_mean", "diff_mean", "longest_run"])


_PROB_STAT = re.compile(r"^(mean|median|min|max|confident|q\d+|top\d+|share\d+)$")


def stat_kind(stat: str) -> str:
    """'prob' (probability-like, larger = more fake), 'logit' (logit_*), or 'other'.

    Meta-learners use it for monotone constraints and for turning probabilities into logits.
    """
    if stat.startswith("logit_"):
        return "logit"
    return "prob" if _PROB_STAT.match(stat) else "other"


def learners_in(frame: pd.DataFrame) -> list[str]:
    """Learner names present as `{learner}__mean` columns, sorted."""
    return sorted(c[: -len(SEP + "mean")] for c in frame.columns if c.endswith(SEP + "mean"))


@FACE_REDUCERS.register("max")
def _reduce_max(fp: pd.DataFrame) -> pd.DataFrame:
    """The most-fake face of each frame (its prob and its own logit)."""
    idx = fp.groupby(KEY + ["frame_idx"], sort=False)["prob"].idxmax()
    return fp.loc[idx, KEY + ["frame_idx", "prob", "logit"]]


@FACE_REDUCERS.register("mean")
def _reduce_mean(fp: pd.DataFrame) -> pd.DataFrame:
    return fp.groupby(KEY + ["frame_idx"], as_index=False, sort=False)[["prob", "logit"]].mean()


@FACE_REDUCERS.register("main_track")
def _reduce_main(fp: pd.DataFrame) -> pd.DataFrame:
    """Only track 0; frames where track 0 is absent drop out."""
    return fp.loc[fp["face_idx"] == MAIN_TRACK, KEY + ["frame_idx", "prob", "logit"]]


def _check_inputs(frame_preds: pd.DataFrame, face_status: pd.DataFrame, videos: pd.DataFrame):
    missing = [c for c in FRAME_PREDS_COLUMNS if c not in frame_preds.columns]
    if missing:
        raise ValueError(f"frame_preds lacks columns {missing}")
    dup = frame_preds.duplicated(["video_id", "frame_idx", "face_idx", "learner"])
    if dup.any():
        row = frame_preds.loc[dup].iloc[0]
        raise ValueError(f"frame_preds has {int(dup.sum())} duplicate (video, frame, face, learner) "
                         f"rows, e.g. {row['video_id']!r} frame {row['frame_idx']} {row['learner']!r}")
    if frame_preds["prob"].isna().any():
        raise ValueError("frame_preds has NaN probabilities")
    known = set(videos["video_id"])
    extra = sorted(set(frame_preds["video_id"]) - known)
    if extra:
        raise ValueError(f"frame_preds has {len(extra)} videos not in videos, e.g. {extra[:3]}")
    no_status = sorted(known - set(face_status["video_id"]))
    if no_status:
        raise ValueError(f"face_status lacks {len(no_status)} videos, e.g. {no_status[:3]}")


def _confident(per_frame: pd.DataFrame, g, cfg: AggregateConfig) -> pd.Series:
    """DFDC winner's mean: the confidently-fake frames' mean if enough of them, else the
    confidently-real frames' mean if nearly all are, else the plain mean."""
    p = per_frame["prob"]
    keys = [per_frame[k] for k in KEY]
    hi, lo = p > cfg.confident_hi, p < cfg.confident_lo
    n = g["prob"].size()
    n_hi, n_lo = hi.groupby(keys).sum(), lo.groupby(keys).sum()
    mean_hi, mean_lo = p.where(hi).groupby(keys).mean(), p.where(lo).groupby(keys).mean()
    fake = (n_hi > cfg.confident_fake_share * n) & (n_hi >= cfg.confident_fake_min)
    real = n_lo > cfg.confident_real_share * n
    out = g["prob"].mean()
    out = out.where(~real, mean_lo)
    return out.where(~fake, mean_hi)


def _temporal(per_frame: pd.DataFrame, cfg: AggregateConfig) -> pd.DataFrame:
    """Mean |change| of prob between consecutive sampled frames with a face (0 for one frame),
    and the longest run of consecutive frames above run_threshold divided by the frame count."""
    s = per_frame.sort_values(KEY + ["frame_idx"])
    keys = [s[k] for k in KEY]
    diff = s.groupby(KEY, sort=False)["prob"].diff().abs()
    diff_mean = diff.groupby(keys).mean().fillna(0.0)
    above = s["prob"] > cfg.run_threshold
    new_run = (above != above.groupby(keys).shift()) | s.groupby(KEY, sort=False).cumcount().eq(0)
    run_id = new_run.cumsum()
    run_len = above.groupby(keys + [run_id]).transform("sum")  # run length on above rows, 0 else
    longest = run_len.groupby(keys).max() / s.groupby(KEY)["prob"].size()
    return pd.DataFrame({"diff_mean": diff_mean, "longest_run": longest})


def learner_stats(frame_preds: pd.DataFrame, cfg: AggregateConfig) -> pd.DataFrame:
    """Long table indexed by (learner, video_id), one column per stat_names(cfg)."""
    per_frame = FACE_REDUCERS.get(cfg.face_reducer)(frame_preds).reset_index(drop=True)
    g = per_frame.groupby(KEY)
    p = g["prob"]
    out = {"mean": p.mean(), "median": p.median(), "std": p.std(ddof=0), "min": p.min(),
           "max": p.max()}
    for q in cfg.quantiles:
        out[f"q{_pct(q)}"] = p.quantile(q)
    ranked = per_frame.sort_values("prob", ascending=False, kind="stable")
    out[f"top{cfg.top_k}"] = ranked.groupby(KEY).head(cfg.top_k).groupby(KEY)["prob"].mean()
    keys = [per_frame[k] for k in KEY]
    for t in cfg.thresholds:
        out[f"share{_pct(t)}"] = (per_frame["prob"] > t).groupby(keys).mean()
    out["confident"] = _confident(per_frame, g, cfg)
    out["logit_mean"] = g["logit"].mean()
    stats = pd.DataFrame(out).join(_temporal(per_frame, cfg))
    return stats[stat_names(cfg)]


def _video_columns(videos, folds, face_status, faces, frame_preds) -> pd.DataFrame:
    base = videos[[c for c in ("video_id", "label", "split", "group") if c in videos.columns]]
    base = base.merge(folds[["video_id", "fold"]], on="video_id", how="left")
    st = face_status.set_index("video_id")
    base["status"] = base["video_id"].map(st["status"])
    base["message"] = base["video_id"].map(st["message"]) if "message" in st else pd.NA
    base["n_sampled"] = base["video_id"].map(st["n_frames"]) if "n_frames" in st else pd.NA
    src = faces if faces is not None else frame_preds
    per_video = src.groupby("video_id")
    base["n_frames"] = base["video_id"].map(per_video["frame_idx"].nunique()).fillna(0).astype(int)
    if faces is not None:
        base["n_faces"] = base["video_id"].map(per_video.size()).fillna(0).astype(int)
        base["det_prob_mean"] = base["video_id"].map(per_video["det_prob"].mean()).astype(float)
    else:
        counts = frame_preds.drop_duplicates(["video_id", "frame_idx", "face_idx"]).groupby("video_id").size()
        base["n_faces"] = base["video_id"].map(counts).fillna(0).astype(int)
        base["det_prob_mean"] = np.nan
    return base[[c for c in VIDEO_COLUMNS if c in base.columns]]


def aggregate(frame_preds: pd.DataFrame, face_status: pd.DataFrame, videos: pd.DataFrame,
              folds: pd.DataFrame, cfg: AggregateConfig | None = None,
              faces: pd.DataFrame | None = None) -> pd.DataFrame:
    """video_features: one row per video of `videos`, in its order.

    Video columns: video_id, label, fold, split, group, status and message (face_status),
    n_frames (distinct frames with a face), n_faces (face detections), n_sampled (frames decoded,
    face_status.n_frames), det_prob_mean (from `faces`; NaN without it or without a face).
    Learner columns `{learner}__{stat}` for stat in stat_names(cfg); NaN where the learner has no
    prediction for the video (no face, decode error ...). Raises on duplicate frame_preds rows,
    videos unknown to `videos`, or videos missing from face_status.
    """
    cfg = cfg or AggregateConfig()
    _check_inputs(frame_preds, face_status, videos)
    base = _video_columns(videos, folds, face_status, faces, frame_preds)
    if frame_preds.empty:
        return base.reset_index(drop=True)
    stats = learner_stats(frame_preds, cfg)
    wide = stats.unstack("learner")
    wide = wide.swaplevel(axis=1).sort_index(axis=1, level=0, sort_remaining=False)
    names = stat_names(cfg)
    learners = sorted(stats.index.get_level_values("learner").unique())
    wide = wide[[(l, s) for l in learners for s in names]]
    wide.columns = [f"{l}{SEP}{s}" for l, s in wide.columns]
    out = base.merge(wide, left_on="video_id", right_index=True, how="left")
    return out.reset_index(drop=True)
