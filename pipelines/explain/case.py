"""One video's explanation: its inputs (`VideoCase`) and what is computed from them (`Explanation`).

A case holds what scored the video, not copies of settings: its face rows and crops, each
learner's frame probabilities and the level-0 models that produced them (the fold models a
detector averages, or the one fold model that scored an OOF video), and the level-1
contributions of the ensemble that gave its P(FAKE). `explain` picks, per learner, the frames
that learner found most fake (the most-fake face of each frame, as features.aggregate reduces
faces by default) and computes their heat maps (base_learners.explain).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from torch import nn

from base_learners.explain import MapConfig, face_maps, mappable
from base_learners.inputs import FRAME, model_input_kind
from meta.contributions import Contributions
from pipelines.explain.sound import SoundView


@dataclass
class ExplainConfig:
    """What a report shows; PredictConfig and StackConfig carry one (defaults here only)."""

    maps: MapConfig = field(default_factory=MapConfig)
    top_frames: int = 3  # heat maps per learner: its most-fake frames
    strip_frames: int = 12  # sampled frames shown in the strip (evenly picked when there are more)

    def __post_init__(self) -> None:
        if self.top_frames < 1 or self.strip_frames < 1:
            raise ValueError(f"explain: top_frames and strip_frames must be >= 1, got {self.top_frames}, "
                             f"{self.strip_frames}")


@dataclass
class VideoCase:
    """Everything a report needs about one video (see the module docstring)."""

    name: str  # shown as the title (file name)
    path: Path | None  # the video file, decoded again for the frame strip (None: not shown)
    status: str  # ok | no_face | decode_error | missing_file | ...
    message: str
    p_fake: float
    threshold: float
    n_frames: int  # frames (clips) the face stage samples per video
    decoder: str = "opencv"  # the face stage's decoder (frame_idx values are its sampled frames)
    clip_len: int = 1  # consecutive frames per sampled position (features.faces)
    faces: pd.DataFrame = field(default_factory=pd.DataFrame)  # frame_idx, face_idx, x0..y1, det_prob, crop_idx
    crops: np.ndarray | None = None  # the video's crops, row = crop_idx
    frame_preds: pd.DataFrame = field(default_factory=pd.DataFrame)  # frame_idx, face_idx, learner, prob
    models: dict[str, list[nn.Module]] = field(default_factory=dict)
    contributions: Contributions | None = None  # one row: this video
    context: dict[str, str] = field(default_factory=dict)  # extra facts shown under the verdict
    sound: SoundView | None = None  # the soundtrack, when the ensemble has a soundtrack learner

    @property
    def label(self) -> str:
        return "FAKE" if self.p_fake > self.threshold else "REAL"

    @property
    def judged(self) -> bool:
        """Whether any learner saw a face (otherwise P(FAKE) is the training prior)."""
        no_face = self.contributions is not None and bool(self.contributions.no_face[0])
        return not self.frame_preds.empty and not no_face


@dataclass
class LearnerMaps:
    frames: list[int]  # frame_idx of the maps, most fake first
    probs: list[float]  # the learner's P(FAKE) of those faces
    crops: np.ndarray  # (k, C, C, 3)
    maps: np.ndarray  # (k, C, C)


@dataclass
class Explanation:
    case: VideoCase
    per_frame: pd.DataFrame  # frame_idx x learner: P(FAKE) of the most-fake face of the frame
    maps: dict[str, LearnerMaps]
    method: str
    unmapped: list[str] = field(default_factory=list)  # learners of pairs or tracks: no per-face map
    no_layer: list[str] = field(default_factory=list)  # frame learners the map method cannot map (spectrum)


def per_frame_probs(frame_preds: pd.DataFrame) -> pd.DataFrame:
    """frame_idx x learner table of the most-fake face's P(FAKE) in each frame."""
    if frame_preds.empty:
        return pd.DataFrame()
    return frame_preds.groupby(["frame_idx", "learner"])["prob"].max().unstack("learner").sort_index()


def most_fake_faces(frame_preds: pd.DataFrame, learner: str, k: int) -> pd.DataFrame:
    """The learner's k most-fake frames, one face each (its most-fake face there)."""
    fp = frame_preds[frame_preds["learner"] == learner]
    best = fp.sort_values("prob", ascending=False, kind="stable").drop_duplicates("frame_idx")
    return best.head(k)


def explain(case: VideoCase, cfg: ExplainConfig | None = None) -> Explanation:
    """The heat maps of each learner's most-fake frames (none for a video without faces)."""
    cfg = cfg or ExplainConfig()
    maps: dict[str, LearnerMaps] = {}
    unmapped = [name for name, models in case.models.items() if model_input_kind(models[0]) != FRAME]
    no_layer = [name for name, models in case.models.items()
                if name not in unmapped and not mappable(models[0], cfg.maps.method)]
    if case.judged and case.crops is not None:
        crop_of = case.faces.set_index(["frame_idx", "face_idx"])["crop_idx"]
        for learner, models in case.models.items():
            if learner in unmapped or learner in no_layer:
                continue
            top = most_fake_faces(case.frame_preds, learner, cfg.top_frames)
            if top.empty:
                continue
            idx = crop_of.loc[list(zip(top["frame_idx"], top["face_idx"]))].to_numpy()
            crops = case.crops[idx]
            maps[learner] = LearnerMaps(top["frame_idx"].astype(int).tolist(), top["prob"].astype(float).tolist(),
                                        crops, face_maps(models, crops, cfg.maps))
    return Explanation(case, per_frame_probs(case.frame_preds), maps, cfg.maps.method, unmapped, no_layer)
