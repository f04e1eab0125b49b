"""The stage contract, written once: the tables the stages exchange, their keys and columns, and
where a level-0 unit keeps its files.

`oof.py` writes the tables named in TABLES as `{name}.parquet` in its output folder; `stack.py`
reads them back (those in OPTIONAL_TABLES may be absent); the packaged detector rebuilds the same
frames and frame_preds tables for the videos it scores. Every table is keyed by `video_id`:

| table        | one row per                | key columns                              |
|--------------|----------------------------|------------------------------------------|
| videos       | video                      | video_id (label, split, group, ...)      |
| folds        | labelled video             | video_id, fold                           |
| faces        | face crop                  | video_id, frame_idx, face_idx (FACE_KEY) |
| face_status  | video                      | video_id, status, message                |
| frame_preds  | face x learner             | FACE_KEY + learner (FRAME_PREDS_COLUMNS) |
| units        | learner x fold unit        | learner, fold                            |
| refit_preds  | test face x learner        | FACE_KEY + learner                       |
| audio_status | video (RUN_TABLES: audio)  | video_id, status, message, n_windows     |

With `audio.enabled` (profile `audio`), frame_preds also holds the soundtrack learner's rows
(base_learners.audio_oof): one per audio window, keyed by the sampled frame it is centred on,
face_idx 0; a video whose audio_status is not `ok` has none, so its audio features are NaN. Its
fold units are rows of the units table too, so stack.py can package them. With `audio.lipsync`
also the lip-sync learner's rows (base_learners.lipsync_oof): one per sampled frame that has both a
face (face_idx 0) and an audio window, face_idx 0; its fold units are units rows too.

Face landmarks (faces.landmarks 5|68) sit beside the crops: features.faces.cache.landmarks_for_rows.

A unit folder holds UNIT_FILES, written in that order: the last one marks it finished.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TABLES = ("videos", "folds", "faces", "face_status", "frame_preds", "units", "refit_preds")
# optional: aggregation works without detections (det_prob_mean is then NaN), without units no
# detector is packaged, and refit_preds only scores the test split with refit level-0 models
OPTIONAL_TABLES = ("faces", "units", "refit_preds")
# written (and logged beside TABLES) only by runs that make them; stack.py does not read them: the
# audio learner's evidence reaches it through frame_preds
RUN_TABLES = ("audio_status",)
FACE_KEY = ["video_id", "frame_idx", "face_idx"]
FRAME_PREDS_COLUMNS = ["video_id", "frame_idx", "face_idx", "learner", "fold", "logit", "prob"]
UNITS_COLUMNS = ["learner", "fold", "key", "dir"]  # `dir`: the unit folder, relative to the run's output folder
UNIT_FILES = ("model.pt", "preds.parquet", "metrics.json")  # written in this order; the last marks done
REFIT_FOLD = -1  # the unit "fold" of a learner's model refit on every labelled video (no held-out fold)


def unit_name(fold: int) -> str:
    """`fold<k>`, or `refit` for the model trained on every labelled video."""
    return "refit" if fold == REFIT_FOLD else f"fold{fold}"


def frames_table(faces: pd.DataFrame, videos: pd.DataFrame, folds: pd.DataFrame) -> pd.DataFrame:
    """One row per face with its video's label, group, fold and clip; sorted by (video, frame, face).

    Rows with a fold are OOF/training rows; rows without one (test split, unlabelled) are test rows,
    scored by every fold model. A fold without a label cannot be trained on, so it is an error.
    """
    frames = with_clip_idx(faces)[FACE_KEY + ["crop_idx", "clip_idx"]].merge(
        videos[["video_id", "label", "group"]], on="video_id", how="left", validate="many_to_one"
    ).merge(folds[["video_id", "fold"]], on="video_id", how="left", validate="many_to_one")
    unknown = frames.loc[frames["group"].isna(), "video_id"].unique()
    if len(unknown):
        raise ValueError(f"faces table has videos absent from the videos table: {list(unknown[:5])}")
    bad = frames["label"].isna() & frames["fold"].notna()
    if bad.any():
        raise ValueError(f"videos with a fold but no label: {list(frames.loc[bad, 'video_id'].unique()[:5])}")
    if frames.duplicated(FACE_KEY).any():
        raise ValueError("faces table has duplicate (video_id, frame_idx, face_idx) rows")
    return frames.sort_values(FACE_KEY, kind="stable").reset_index(drop=True)


def with_clip_idx(faces: pd.DataFrame) -> pd.DataFrame:
    """Faces rows with `clip_idx`; rows made before clips existed (always single frames: a cache
    entry, an older run's faces table) get each frame with a face as its own clip, as a fresh
    extraction numbers them."""
    if "clip_idx" in faces.columns:
        return faces
    rank = faces.groupby("video_id", sort=False)["frame_idx"].rank(method="dense")
    return faces.assign(clip_idx=rank.astype(np.int64) - 1)
