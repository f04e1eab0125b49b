"""Soundtracks in the face stage's table world: decode, cache, cut windows at the sampled frames, log-mel.

Why it looks like this:

* **One waveform per video, cached; windows are cut on read.** The face stage samples `n_frames`
  frame indices evenly (features.faces.decode.sample_indices); an audio window of `window_s`
  seconds is centred on each sampled frame's time `frame_idx / fps`. What is cached is the whole
  mono waveform at `sample_rate` (10 s of DFDC audio: 640 kB as float32), not the windows: 32
  overlapping 1 s windows would be three times larger, and the lip-sync learner needs the envelope
  over clips of consecutive frames, which other windows of the same waveform give. Cutting a
  window is a slice.
* **Time origin is the video stream's.** Frame `i` shows at `video_start + i / fps` (its
  timestamp); audio sample `k` plays at `audio_start + k / sample_rate`. The marker stores
  `offset_s = audio_start - video_start`, so a soundtrack that starts late (AAC priming, an edit
  list) still lines up with the frames.
* **Windows stay inside the audio.** A window centred on frame 0 would be half before the first
  sample; rather than feed the CNN zeros it would learn "silence" from, a window that would cross an
  end is shifted inside (at most `window_s / 2` early or late, at the first and last frames). A
  frame whose time lies outside the decoded audio (a track shorter than the video) gets no window:
  `n_windows` counts the windows a video really has.
* **Every video gets one explicit status** (STATUSES); bad input is a status with a message, never
  an exception and never a silent skip. `missing_file` is the face stage's status for a file that
  is not there; it is not cached, so the video is picked up once the file appears. A track that
  fails part-way is `decode_error`, not a partial `ok`: its missing windows would be silence the
  learner reads as evidence.
* **Cache like crops** (features.faces.cache): `<cache_dir>/audio-<config_hash(AudioConfig)>/`,
  per video an atomic `<name>.audio.npy` and then the `<name>.audio.json` marker, written last:
  a video is done iff its marker exists and its source key (size, mtime) matches. The whole
  AudioConfig keys the folder, so a new n_mels decodes again (0.1 s per 10 s DFDC video).
* **Log-mel in torch** (torch.stft and a triangular HTK-mel filterbank built here): the locked
  stack has torch; torchaudio or librosa would add a dependency for a dozen lines.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from features.common import atomic_write_json, atomic_write_with, config_hash, result_dict
from features.faces.cache import video_name
from features.faces.decode import sample_indices

log = logging.getLogger(__name__)

STATUSES = ("ok", "no_audio", "decode_error", "short_audio", "missing_file")
SAMPLE_RATE = 16_000  # Hz: speech lives below 8 kHz; DFDC tracks are 44.1/48 kHz and are resampled
WINDOW_S = 1.0  # seconds of audio per sampled frame: several syllables (3-6 per second)
MIN_DURATION_S = 1.0  # a shorter track is `short_audio`: not one full window
N_MELS = 64
N_FFT = 512  # 32 ms at 16 kHz: fits the 25 ms analysis window
STFT_WIN_S = 0.025  # the usual speech analysis window ...
STFT_HOP_S = 0.010  # ... and hop
F_MIN = 20.0  # Hz: below the lowest voice pitch
LOG_EPS = 1e-6  # inside the log: digital silence stays finite
DEFAULT_N_FRAMES = 32  # frames planned from the header when no frames table is given (face stage default)
HTK_MEL_BREAK, HTK_MEL_SCALE = 700.0, 2595.0  # mel = 2595 log10(1 + f / 700)
AUDIO_SUFFIX, MARKER_SUFFIX = ".audio.npy", ".audio.json"
CONFIG_FILE = "config.json"
TABLE_COLUMNS = {"video_id": "string", "status": "string", "message": "string", "n_windows": "int64",
                 "duration_s": "float64"}
WINDOW_INDEX_COLUMNS = ["video_id", "window_idx", "frame_idx"]


@dataclass(frozen=True)
class AudioConfig:
    """How soundtracks are decoded, windowed and turned into log-mel images; its hash keys the cache."""

    sample_rate: int = SAMPLE_RATE
    window_s: float = WINDOW_S
    min_duration_s: float = MIN_DURATION_S
    n_mels: int = N_MELS
    n_fft: int = N_FFT
    stft_win_s: float = STFT_WIN_S
    stft_hop_s: float = STFT_HOP_S
    f_min: float = F_MIN
    f_max: float = 0.0  # 0: the Nyquist frequency

    def __post_init__(self) -> None:
        if self.sample_rate <= 0 or self.window_s <= 0 or self.min_duration_s < 0:
            raise ValueError(f"AudioConfig: sample_rate, window_s must be > 0, min_duration_s >= 0: {self}")
        if self.win_length > self.n_fft or self.hop_length < 1:
            raise ValueError(f"AudioConfig: stft window {self.win_length} samples exceeds n_fft {self.n_fft}, "
                             f"or hop {self.hop_length} < 1")
        if not 0 <= self.f_min < self.top_hz <= self.sample_rate / 2:
            raise ValueError(f"AudioConfig: need 0 <= f_min < f_max <= sample_rate / 2, "
                             f"got {self.f_min}, {self.top_hz}")

    @property
    def window_samples(self) -> int:
        return int(round(self.window_s * self.sample_rate))

    @property
    def win_length(self) -> int:
        return int(round(self.stft_win_s * self.sample_rate))

    @property
    def hop_length(self) -> int:
        return int(round(self.stft_hop_s * self.sample_rate))

    @property
    def top_hz(self) -> float:
        return self.f_max or self.sample_rate / 2


# ---- decoding -------------------------------------------------------------------------------------

def status_row(video_id: str, status: str, message: str = "", duration_s: float = math.nan, **info) -> dict:
    """The marker / table row of one video; `info` carries the timing the windows need."""
    if status not in STATUSES:
        raise ValueError(f"unknown audio status {status!r}; valid: {STATUSES}")
    return dict(video_id=video_id, status=status, message=message, duration_s=float(duration_s), **info)


def _video_timing(container) -> dict:
    """fps, header frame count and start time of the first video stream (zeros when there is none)."""
    if not container.streams.video:
        return dict(fps=0.0, n_video_frames=0, video_start_s=0.0)
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate
    start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    return dict(fps=float(rate) if rate else 0.0, n_video_frames=int(stream.frames or 0), video_start_s=start)


def _decode_samples(container, stream, sample_rate: int) -> tuple[np.ndarray, float]:
    """All samples of `stream`, mono float32 at `sample_rate` (PyAV's AudioResampler downmixes and
    resamples), and the time of the first one. FFmpeg errors propagate to the caller."""
    import av

    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    chunks, start = [], None
    for frame in container.decode(stream):
        if start is None and frame.pts is not None:
            start = float(frame.pts * frame.time_base)
        chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
    chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
    samples = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    return samples, start or 0.0


def decode_audio(video_id: str, path: Path | str, cfg: AudioConfig) -> tuple[dict, np.ndarray | None]:
    """(status row, samples or None) of a video's first audio stream. Bad input is a status."""
    import av

    path = Path(path)
    if not path.is_file():
        return status_row(video_id, "missing_file", f"{path}: no such file"), None
    try:
        with av.open(str(path)) as container:
            timing = _video_timing(container)
            if not container.streams.audio:
                message = f"{len(container.streams)} stream(s), none audio"
                return status_row(video_id, "no_audio", message, **timing), None
            stream = container.streams.audio[0]
            codec = stream.codec_context.name
            samples, start = _decode_samples(container, stream, cfg.sample_rate)
    except av.error.FFmpegError as err:
        return status_row(video_id, "decode_error", f"{path.name}: {err}"), None
    timing["offset_s"] = start - timing["video_start_s"]
    duration = len(samples) / cfg.sample_rate
    if duration < cfg.min_duration_s:
        return status_row(video_id, "short_audio", f"{codec}: {duration:.3f} s < {cfg.min_duration_s} s",
                          duration, **timing), None
    return status_row(video_id, "ok", codec, duration, **timing), samples


# ---- windows --------------------------------------------------------------------------------------

def frame_times(frame_idx, fps: float) -> np.ndarray:
    """Seconds from the video stream's start at which each frame shows (its timestamp)."""
    if fps <= 0:
        raise ValueError(f"cannot place frames in time without a frame rate (fps {fps})")
    return np.asarray(frame_idx, dtype=np.float64) / fps


def cut_windows(samples: np.ndarray, sample_rate: int, centres_s: np.ndarray, window_s: float,
                ) -> tuple[np.ndarray, np.ndarray]:
    """(windows (k, L) float32, mask over centres of those kept): one window of `window_s` per
    centre whose time lies inside the audio, shifted to stay inside it (zero-padded only when the
    whole track is shorter than a window)."""
    length = int(round(window_s * sample_rate))
    n = len(samples)
    centres = np.round(np.asarray(centres_s, dtype=np.float64) * sample_rate).astype(np.int64)
    kept = (centres >= 0) & (centres < n)
    padded = np.pad(samples, (0, max(length - n, 0))).astype(np.float32, copy=False)
    starts = np.clip(centres[kept] - length // 2, 0, len(padded) - length)
    windows = padded[starts[:, None] + np.arange(length)[None, :]] if len(starts) else np.zeros((0, length), np.float32)
    return windows.astype(np.float32, copy=False), kept


def planned_frames(marker: dict, n_frames: int) -> list[int]:
    """The frame indices the face stage would sample from this video's header count."""
    return sample_indices(int(marker.get("n_video_frames", 0)), n_frames)


def windows_of(marker: dict, samples: np.ndarray, frame_idx, cfg: AudioConfig) -> tuple[np.ndarray, np.ndarray]:
    """(windows, frame indices they are centred on) of an `ok` video."""
    frame_idx = np.asarray(frame_idx, dtype=np.int64)
    if marker.get("fps", 0) <= 0 and len(frame_idx):
        log.warning("audio %s: no video frame rate, so no frame-aligned windows", marker["video_id"])
        frame_idx = frame_idx[:0]
    if not len(frame_idx):
        return np.zeros((0, cfg.window_samples), np.float32), frame_idx
    centres = frame_times(frame_idx, marker["fps"]) - marker.get("offset_s", 0.0)
    windows, kept = cut_windows(samples, cfg.sample_rate, centres, cfg.window_s)
    return windows, frame_idx[kept]


# ---- cache ----------------------------------------------------------------------------------------

def audio_dir_for(cache_dir: Path | str, cfg: AudioConfig) -> Path:
    return Path(cache_dir) / f"audio-{config_hash(cfg)}"


def audio_path(audio_dir: Path, video_id: str) -> Path:
    return Path(audio_dir) / f"{video_name(video_id)}{AUDIO_SUFFIX}"


def marker_path(audio_dir: Path, video_id: str) -> Path:
    return Path(audio_dir) / f"{video_name(video_id)}{MARKER_SUFFIX}"


def source_key(path: Path) -> dict:
    """Identifies the input file's content cheaply (as the face cache does): a changed file is redone."""
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def read_marker(audio_dir: Path, video_id: str) -> dict | None:
    path = marker_path(audio_dir, video_id)
    return json.loads(path.read_text()) if path.exists() else None


def read_samples(audio_dir: Path, video_id: str) -> np.ndarray:
    return np.load(audio_path(audio_dir, video_id))


def ensure_audio(video_id: str, path: Path | str, cfg: AudioConfig, audio_dir: Path) -> dict:
    """The marker of one video: read when cached for this file, else decoded and stored (samples
    first, marker last). `missing_file` is returned, never cached."""
    path = Path(path)
    if not path.is_file():
        return status_row(video_id, "missing_file", f"{path}: no such file")
    marker = read_marker(audio_dir, video_id)
    if marker is not None and marker.get("source") == source_key(path):
        return marker
    marker_path(audio_dir, video_id).unlink(missing_ok=True)  # stale: the file changed
    status, samples = decode_audio(video_id, path, cfg)
    status["source"] = source_key(path)
    if samples is not None:
        atomic_write_with(audio_path(audio_dir, video_id), lambda tmp: np.save(tmp, samples))
    else:
        audio_path(audio_dir, video_id).unlink(missing_ok=True)
    atomic_write_json(status, marker_path(audio_dir, video_id))
    log.debug("audio %s: %s %s", video_id, status["status"], status["message"])
    return status


@dataclass
class AudioResult:
    """The audio table (TABLE_COLUMNS, one row per input video, in its order) and the cache folder."""

    table: pd.DataFrame
    audio_dir: Path
    frame_idx: dict  # video_id -> the frame indices its windows are centred on (ok videos only)


def _frames_by_video(frames: pd.DataFrame | None) -> dict:
    if frames is None:
        return {}
    return {str(v): sorted(set(g.tolist())) for v, g in frames.groupby(frames["video_id"].astype(str))["frame_idx"]}


def audio_table(videos: pd.DataFrame, cfg: AudioConfig, cache_dir: Path | str, frames: pd.DataFrame | None = None,
                n_frames: int = DEFAULT_N_FRAMES, progress: bool = False) -> AudioResult:
    """Decode (or read from the cache) every video of `videos` (video_id, root, path) and count its
    windows: at the frames of `frames` (video_id, frame_idx: the face stage's frames) where given,
    else at `n_frames` frames planned from the header as the face stage would."""
    audio_dir = audio_dir_for(cache_dir, cfg)
    audio_dir.mkdir(parents=True, exist_ok=True)
    if not (audio_dir / CONFIG_FILE).exists():
        atomic_write_json(result_dict(cfg), audio_dir / CONFIG_FILE)
    by_video, rows, kept = _frames_by_video(frames), [], {}
    for row in tqdm(list(videos.itertuples(index=False)), desc="audio", unit="video", disable=not progress):
        marker = ensure_audio(row.video_id, Path(str(row.root)) / str(row.path), cfg, audio_dir)
        n_windows = 0
        if marker["status"] == "ok":
            wanted = by_video.get(str(row.video_id)) if frames is not None else planned_frames(marker, n_frames)
            _, kept[row.video_id] = windows_of(marker, read_samples(audio_dir, row.video_id), wanted or [], cfg)
            n_windows = len(kept[row.video_id])
        rows.append({**{k: marker[k] for k in ("video_id", "status", "message", "duration_s")}, "n_windows": n_windows})
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS)).astype(TABLE_COLUMNS)
    log.info("audio: %s", table["status"].value_counts().to_dict())
    return AudioResult(table, audio_dir, kept)


def collect_windows(result: AudioResult, cfg: AudioConfig) -> tuple[np.ndarray, pd.DataFrame]:
    """(windows (N, L) float32, index rows WINDOW_INDEX_COLUMNS) of every `ok` video of `result`."""
    windows, index = [], []
    for video_id, frame_idx in result.frame_idx.items():
        marker = read_marker(result.audio_dir, video_id)
        w, idx = windows_of(marker, read_samples(result.audio_dir, video_id), frame_idx, cfg)
        windows.append(w)
        index.append(pd.DataFrame({"video_id": video_id, "window_idx": np.arange(len(idx)), "frame_idx": idx}))
    if not windows:
        return np.zeros((0, cfg.window_samples), np.float32), pd.DataFrame(columns=WINDOW_INDEX_COLUMNS)
    return np.concatenate(windows), pd.concat(index, ignore_index=True)


# ---- log-mel --------------------------------------------------------------------------------------

def _hz_to_mel(hz):
    return HTK_MEL_SCALE * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / HTK_MEL_BREAK)


def _mel_to_hz(mel):
    return HTK_MEL_BREAK * (10.0 ** (np.asarray(mel, dtype=np.float64) / HTK_MEL_SCALE) - 1.0)


@functools.lru_cache(maxsize=8)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) triangular filters evenly spaced on the HTK mel scale, each of unit
    area (so a band's value is a mean power, comparable across bands of different widths)."""
    freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_mels + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    tri = np.maximum(0.0, np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)))
    area = tri.sum(axis=1, keepdims=True)
    return torch.from_numpy(tri / np.where(area > 0, area, 1.0)).float()


def log_mel(windows, cfg: AudioConfig) -> torch.Tensor:
    """(n, L) waveforms -> (n, n_mels, t) float32 log mel power, t = 1 + L // hop (centred STFT)."""
    x = torch.as_tensor(np.asarray(windows, dtype=np.float32) if not torch.is_tensor(windows) else windows).float()
    if x.ndim != 2:
        raise ValueError(f"log_mel wants (n, samples) windows, got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        return torch.zeros(0, cfg.n_mels, 1 + x.shape[1] // cfg.hop_length)
    spec = torch.stft(x, cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
                      window=torch.hann_window(cfg.win_length), center=True, return_complex=True)
    fb = mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, float(cfg.f_min), float(cfg.top_hz))
    return torch.log(torch.einsum("mf,nft->nmt", fb, spec.abs().square()) + LOG_EPS).float()
