"""A small synthetic video_features table (through features.aggregate) for tests and examples.

Each learner's frame logits are label-signed `strength` plus Gaussian noise, so learner quality is
known by construction; every `no_face_every`-th video has no face (NaN features, status no_face).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import expit

from features.aggregate import AggregateConfig, aggregate

TOY_LEARNERS = {"good": 2.0, "weak": 0.7, "noise": 0.0}  # name -> logit separation
TOY_FAKE_SHARE = 0.7
TOY_FRAME_NOISE = 2.0


def toy_video_features(n_videos: int = 180, learners: dict[str, float] | None = None,
                       n_frames: int = 6, group_size: int = 3, k: int = 3,
                       no_face_every: int = 0, seed: int = 0,
                       cfg: AggregateConfig | None = None) -> pd.DataFrame:
    """video_features with label, fold (grouped), group, status; learners' quality from `learners`."""
    rng = np.random.default_rng(seed)
    learners = TOY_LEARNERS if learners is None else learners
    vids = np.array([f"toy{i:04d}.mp4" for i in range(n_videos)])
    group = np.arange(n_videos) // group_size
    label = (rng.random(n_videos) < TOY_FAKE_SHARE).astype(int)
    no_face = np.zeros(n_videos, bool)
    if no_face_every:
        no_face = np.arange(n_videos) % no_face_every == no_face_every - 1
    frames = []
    for name, strength in learners.items():
        for i in np.flatnonzero(~no_face):
            z = (2 * label[i] - 1) * strength + rng.normal(0.0, TOY_FRAME_NOISE, n_frames)
            frames.append(pd.DataFrame({"video_id": vids[i], "frame_idx": np.arange(n_frames),
                                        "face_idx": 0, "learner": name, "logit": z}))
    fp = pd.concat(frames, ignore_index=True)
    fp["prob"] = expit(fp["logit"])
    fold = group % k
    fp["fold"] = fp["video_id"].map(dict(zip(vids, fold)))
    videos = pd.DataFrame({"video_id": vids, "label": pd.array(label, dtype="Int8"),
                           "split": "train", "group": group})
    folds = pd.DataFrame({"video_id": vids, "fold": pd.array(fold, dtype="Int64")})
    status = pd.DataFrame({"video_id": vids, "status": np.where(no_face, "no_face", "ok"),
                           "message": "", "n_frames": n_frames,
                           "n_faces": np.where(no_face, 0, n_frames)})
    faces = fp.drop_duplicates(["video_id", "frame_idx", "face_idx"])[["video_id", "frame_idx", "face_idx"]]
    faces = faces.assign(det_prob=rng.uniform(0.9, 1.0, len(faces)))
    return aggregate(fp, status, videos, folds, cfg, faces=faces)
