"""The lip-sync learner's correlation target (`audio.lipsync.train.target: corr`).

Why it exists: the two-stream net (targets `label` and `sync`) has to learn from a few tens of real
videos a fold what "the mouth goes with the sound" looks like, and on the sound corpus it did not
(lip-sync fakes at chance with 6 frames a video). A person checks sync differently: across a
video's frames, is the mouth open when the voice is loud? This target does that with a handful of
parameters, so a few real videos suffice:

* **Mouth -> loudness, learnt from real videos only.** A linear map (ridge regression, one weight a
  pixel) from the mouth patch, less its track's mean mouth (whose face it is), to the loudness at the
  frame's instant (the log-mel around the instant averaged, z-scored within its video: how loud
  the speaker is does not matter). Only the training folds' real videos fit it: self-supervised,
  no fake needed.
* **Per face track, r = the correlation over its frames** of the loudness the mouth predicts and
  the loudness heard. In sync r is high; a lip-sync fake's mouth follows other words, so r falls to
  about 0, whatever the voice sounds like (the soundtrack learner's job).
* **The speaker is the face most in sync.** In a video with two people only one speaks; the
  mouth and sound of each face track (its face_idx) are correlated apart and the video's r is the
  highest of them (as active-speaker detection does). A lip-sync fake has no face in sync.
* **r -> P(fake) by a two-parameter logistic fit over the training videos.** Their r is
  cross-fitted over inner group folds: no training video is scored by a map fitted on its own
  group's reals (a face swap keeps its original's mouth and sound), as no held-out video is. The
  ridge strength is the one of RIDGE_ALPHAS whose cross-fitted mean r over the training reals is
  highest: chosen on reals only.
* **Every sample of a video carries its video's logit**: one verdict from all its frames
  together, so features.aggregate's statistics are that logit's. A video with fewer than
  MIN_SAMPLES samples, or a still mouth or flat sound, has no r and gets no rows (its `lipsync__*`
  features NaN, its statuses saying why), never a made-up verdict.
* **The mouth as pixels or as landmarks** (`mouth_input`): without landmarks the map reads the
  mouth patch's pixels (with 64 px crops of the sound corpus a weak signal: a few pixels open); with
  the face cache's 68-point landmarks (`faces.landmarks: 68`) it reads the mouth's opening, the inner
  lips' gap over the mouth's width (`mouth_opening`), one number a frame, the classic lip-reading
  measure, and the map is a sign and a scale.
* **A torch module of buffers** (the map and the calibration), so a unit saves as a state dict and
  loads with `weights_only`, and the packaged detector builds it where it would build the net.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GroupKFold
from torch import nn

from base_learners.lipsync_sync import per_video_centred

RIDGE_ALPHAS = (1.0, 10.0, 100.0, 1000.0)  # candidate ridge strengths (pixels in [0, 1], a few hundred per mouth)
INNER_SPLITS = 3  # group folds over the training videos, for their cross-fitted r (fewer real groups: one each)
MIN_REAL_GROUPS = 2  # cross-fitting needs a group's reals to fit on and another group to score
MIN_SAMPLES = 3  # a correlation needs at least this many frames of a video
CALIBRATION_C = 100.0  # nearly unpenalised: one feature, the slope must be free to be steep
FLAT = 1e-8  # a standard deviation below this is a still mouth or a flat sound: no correlation
REAL = 0.0
MOUTH_PIXELS = "pixels"  # the mouth patch (base_learners.lipsync.mouth_patch)
MOUTH_LANDMARKS = "landmarks"  # the mouth's opening from 68-point landmarks
MOUTH_INPUTS = (MOUTH_PIXELS, MOUTH_LANDMARKS)
LANDMARK_POINTS = 68  # iBUG 300-W: 60 and 64 the inner mouth corners, 61-63 the inner upper lip, 67-65 below them
INNER_CORNERS = (60, 64)
INNER_UPPER, INNER_LOWER = (61, 62, 63), (67, 66, 65)
OPENING_SHAPE = (1, 1, 1)  # one number a frame, in the mouths tensor's (N, C, h, w) form


def mouth_opening(points: np.ndarray) -> np.ndarray:
    """(N,) float32: the inner lips' mean vertical gap over the inner corners' distance (scale-free:
    the same for a face near or far), of (N, 68, 2) landmarks."""
    points = np.asarray(points, np.float64)
    if points.ndim != 3 or points.shape[1:] != (LANDMARK_POINTS, 2):
        raise ValueError(f"mouth_opening wants (N, {LANDMARK_POINTS}, 2) landmarks, got {points.shape}")
    gap = np.linalg.norm(points[:, list(INNER_UPPER)] - points[:, list(INNER_LOWER)], axis=2).mean(axis=1)
    width = np.linalg.norm(points[:, INNER_CORNERS[0]] - points[:, INNER_CORNERS[1]], axis=1)
    return (gap / np.maximum(width, FLAT)).astype(np.float32)


def loudness(mel: torch.Tensor) -> np.ndarray:
    """(N,) the mean log-mel of each sample's sound (the span around its frame's instant)."""
    return mel.double().mean(dim=(1, 2)).numpy()


def mouth_features(mouth: torch.Tensor, tracks: np.ndarray) -> np.ndarray:
    """(N, pixels) float64: each mouth less its face track's mean mouth (a test video: its own frames)."""
    return per_video_centred(mouth.double().flatten(1), np.asarray(tracks)).numpy()


def track_keys(video_ids: np.ndarray, face_idx: np.ndarray | None = None) -> np.ndarray:
    """One key per face track (video, face_idx); without face_idx each video is one track."""
    vids = np.asarray(video_ids).astype(str)
    if face_idx is None:
        return vids
    return np.char.add(np.char.add(vids, "#"), np.asarray(face_idx).astype(str))


def speaker_r(track_r: pd.Series, tracks: np.ndarray, video_ids: np.ndarray) -> pd.Series:
    """Per video, the highest r of its face tracks (NaN when none has one)."""
    owner = pd.Series(np.asarray(video_ids).astype(str), index=np.asarray(tracks)).groupby(level=0).first()
    return track_r.groupby(owner.reindex(track_r.index).to_numpy()).max()


def within_video_z(x: np.ndarray, video_ids: np.ndarray) -> np.ndarray:
    """x z-scored within each video; NaN for a video whose x is flat."""
    s = pd.Series(np.asarray(x, np.float64))
    g = s.groupby(np.asarray(video_ids))
    sd = g.transform("std", ddof=0)
    return ((s - g.transform("mean")) / sd.where(sd > FLAT)).to_numpy()


def video_corr(predicted: np.ndarray, heard: np.ndarray, video_ids: np.ndarray) -> pd.Series:
    """Pearson r of predicted and heard loudness over each video's (or track's) samples (NaN: too
    few or flat)."""
    frame = pd.DataFrame({"v": np.asarray(video_ids), "p": within_video_z(predicted, video_ids),
                          "h": within_video_z(heard, video_ids)})
    frame["ph"] = frame["p"] * frame["h"]
    g = frame.groupby("v", sort=True)
    r = g["ph"].mean()  # the mean product of two population z-scores is their correlation
    return r.where(g.size() >= MIN_SAMPLES)


class SyncCorrModel(nn.Module):
    """(mouths, their sound, their videos) -> one logit per sample, its video's (module docstring)."""

    def __init__(self, mouth_shape: tuple[int, ...]):
        super().__init__()
        self.mouth_shape = tuple(mouth_shape)
        self.register_buffer("coef", torch.zeros(math.prod(mouth_shape), dtype=torch.float64))
        self.register_buffer("intercept", torch.zeros((), dtype=torch.float64))
        self.register_buffer("slope", torch.zeros((), dtype=torch.float64))  # logit = slope * r + bias
        self.register_buffer("bias", torch.zeros((), dtype=torch.float64))

    def predicted_loudness(self, mouth: torch.Tensor, tracks: np.ndarray) -> np.ndarray:
        return mouth_features(mouth, tracks) @ self.coef.numpy() + float(self.intercept)

    def video_r(self, mouth: torch.Tensor, mel: torch.Tensor, video_ids: np.ndarray,
                face_idx: np.ndarray | None = None) -> pd.Series:
        if tuple(mouth.shape[1:]) != self.mouth_shape or len(mouth) != len(mel) or len(mel) != len(video_ids):
            raise ValueError(f"SyncCorrModel wants mouths (N, {self.mouth_shape}) with N windows and N video ids, "
                             f"got {tuple(mouth.shape)}, {tuple(mel.shape)}, {len(video_ids)}")
        tracks = track_keys(video_ids, face_idx)
        return speaker_r(video_corr(self.predicted_loudness(mouth, tracks), loudness(mel), tracks), tracks, video_ids)

    def forward(self, mouth: torch.Tensor, mel: torch.Tensor, video_ids: np.ndarray,
                face_idx: np.ndarray | None = None) -> torch.Tensor:
        """(N,) logits, each its video's; NaN for the samples of a video without a correlation."""
        r = self.video_r(mouth, mel, video_ids, face_idx)
        logit = float(self.slope) * r + float(self.bias)
        return torch.from_numpy(logit.reindex(np.asarray(video_ids).astype(str)).to_numpy(np.float64, copy=True))

    def set_fit(self, ridge: Ridge, calibrator: LogisticRegression) -> None:
        self.coef.copy_(torch.from_numpy(np.asarray(ridge.coef_, np.float64)))
        self.intercept.fill_(float(ridge.intercept_))
        self.slope.fill_(float(calibrator.coef_[0, 0]))
        self.bias.fill_(float(calibrator.intercept_[0]))


def _cross_fitted(x: np.ndarray, target: np.ndarray, real: np.ndarray, groups: np.ndarray, alpha: float) -> np.ndarray:
    """Predicted loudness of every sample by a map fitted on the reals of the other inner folds'
    groups (a fake and its original share a group, and often their mouths and sound)."""
    out = np.full(len(target), np.nan)
    splits = min(INNER_SPLITS, pd.unique(groups[real]).size)
    real_groups = pd.unique(groups[real])
    for _, score_groups in GroupKFold(n_splits=splits).split(real_groups, groups=real_groups):
        scored = np.isin(groups, real_groups[score_groups])
        fit = real & ~scored
        out[scored] = Ridge(alpha=alpha).fit(x[fit], target[fit]).predict(x[scored])
    return out


def fit_corr(mouth: torch.Tensor, mel: torch.Tensor, video_ids: np.ndarray, labels: pd.Series, rows: np.ndarray,
             mouth_shape: tuple[int, ...], groups: pd.Series | None = None, face_idx: np.ndarray | None = None
             ) -> tuple[SyncCorrModel, list[dict]]:
    """Fit the map on the real videos among the samples `rows`, choose its strength and calibrate r
    on all of them (labels, groups: video_id -> 0/1, -> group; without groups each video is its
    own; face_idx: each sample's face track, None: one a video). (model, history: one record per
    candidate strength, then the chosen fit's)."""
    vids = np.asarray(video_ids)[rows].astype(str)
    tracks = track_keys(vids, None if face_idx is None else np.asarray(face_idx)[rows])
    y = labels.rename(index=str).reindex(vids).to_numpy(np.float64)
    if np.isnan(y).any():
        raise ValueError("lipsync target corr: a training sample's video has no label")
    group = vids if groups is None else groups.rename(index=str).reindex(vids).astype(str).to_numpy()
    x, heard = mouth_features(mouth[torch.from_numpy(rows)], tracks), loudness(mel[torch.from_numpy(rows)])
    target = within_video_z(heard, tracks)
    real = (y == REAL) & np.isfinite(target)
    real &= pd.Series(tracks).map(pd.Series(tracks[real]).value_counts()).fillna(0).to_numpy() >= MIN_SAMPLES
    n_real, n_groups = pd.unique(vids[real]).size, pd.unique(group[real]).size
    if n_groups < MIN_REAL_GROUPS:
        raise ValueError(f"lipsync target corr: needs real training videos with {MIN_SAMPLES}+ frames with a face "
                         f"and a varying sound in {MIN_REAL_GROUPS} or more groups, got {n_real} in {n_groups}")
    history, best = [], (-math.inf, None, None)
    for alpha in RIDGE_ALPHAS:
        crossed = _cross_fitted(x, target, real, group, alpha)
        mean_r = float(speaker_r(video_corr(crossed[real], heard[real], tracks[real]), tracks[real], vids[real]).mean())
        history.append({"alpha": alpha, "inner_mean_r_real": mean_r})
        if mean_r > best[0]:
            best = (mean_r, alpha, crossed)
    _, alpha, crossed = best
    scored = np.isfinite(crossed)  # a fake whose group holds no usable real is scored by the whole map
    ridge = Ridge(alpha=alpha).fit(x[real], target[real])
    predicted = crossed.copy()
    if not scored.all():
        predicted[~scored] = ridge.predict(x[~scored])
    r = speaker_r(video_corr(predicted, heard, tracks), tracks, vids)
    video_y = pd.Series(y, index=vids).groupby(level=0).first().reindex(r.index)
    ok = r.notna()
    if video_y[ok].nunique() < 2:
        raise ValueError("lipsync target corr: the calibration needs real and fake training videos with a correlation")
    calibrator = LogisticRegression(C=CALIBRATION_C).fit(r[ok].to_numpy()[:, None], video_y[ok].to_numpy())
    model = SyncCorrModel(mouth_shape)
    model.set_fit(ridge, calibrator)
    history.append({"alpha": alpha, "slope": float(model.slope), "bias": float(model.bias),
                    "n_real_videos": int(n_real), "n_videos": int(ok.sum()),
                    "mean_r_real": float(r[ok & (video_y == REAL)].mean()),
                    "mean_r_fake": float(r[ok & (video_y != REAL)].mean())})
    return model.eval(), history
