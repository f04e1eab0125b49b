"""The soundtrack a report shows beside the faces: its status, its log-mel spectrogram, and the
soundtrack learner's P(FAKE) of each window (pipelines.explain.report's `sound` section).

Why decode again: the detector decodes a batch's sound into a temporary folder and the oof run
caches windows' sources under its own key, but a report wants the whole track, once, for one
video; decoding 10 s of DFDC audio costs about 0.1 s. The windows' P(FAKE) are the very rows that
scored the video (the detector's last batch, or the oof run's frame_preds), placed at the time of
the frame each window is centred on (features.audio.windows_of), so the strip shows what the
ensemble read, not a recomputation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features.audio import AudioConfig, decode_audio, frame_times, log_mel

MAX_SHOWN_S = 120.0  # seconds of a long track drawn in the spectrogram (its start); windows past it are still listed


@dataclass
class SoundView:
    """One video's soundtrack as its report shows it."""

    learner: str  # the soundtrack learner's name (audio_cnn)
    status: str  # features.audio.STATUSES, or "" when the video never reached decoding
    message: str = ""
    spectrogram: np.ndarray | None = None  # (n_mels, t) log-mel power of the first MAX_SHOWN_S seconds
    hop_s: float = 0.0  # seconds between spectrogram columns
    times_s: np.ndarray = field(default_factory=lambda: np.zeros(0))  # window centres on the audio's clock
    probs: np.ndarray = field(default_factory=lambda: np.zeros(0))  # the learner's P(FAKE) of each window

    @property
    def usable(self) -> bool:
        return self.status == "ok" and self.spectrogram is not None


def sound_view(learner: str, cfg: AudioConfig, video_id: str, path: Path | None, status: str,
               preds: pd.DataFrame) -> SoundView:
    """The view of one video: `status` as the scoring stage recorded it, `preds` its rows of the
    soundtrack learner (frame_idx, prob). The spectrogram needs the file (path None: listed only)."""
    if status != "ok" or path is None:
        why = "" if status != "ok" else "the video file is not available to draw its sound"
        return SoundView(learner, status, why)
    marker, samples = decode_audio(video_id, path, cfg)
    if samples is None:  # the file changed since it was scored
        return SoundView(learner, str(marker["status"]), str(marker.get("message", "")))
    shown = samples[: int(MAX_SHOWN_S * cfg.sample_rate)]
    spec = log_mel(shown[None, :], cfg)[0].numpy()
    rows = preds.sort_values("frame_idx")
    times = frame_times(rows["frame_idx"].to_numpy(), marker["fps"]) - marker.get("offset_s", 0.0) \
        if len(rows) and marker.get("fps", 0) > 0 else np.zeros(0)
    return SoundView(learner, "ok", str(marker.get("message", "")), spec, cfg.hop_length / cfg.sample_rate,
                     np.asarray(times, dtype=float), rows["prob"].to_numpy(dtype=float)[: len(times)])
