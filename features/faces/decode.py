"""Frame sampling with OpenCV: N frames evenly spaced over a video, upright, RGB.

Why it looks like this:

* **Sequential grab/retrieve, no seeking.** `grab()` demuxes and decodes a frame but skips the
  colour conversion; `retrieve()` converts only the frames we keep. Seeking (`CAP_PROP_POS_FRAMES`)
  is slow and inexact for inter-coded streams (it snaps to key frames on some builds), which would
  make `frame_idx` lie.
* **Frame counts are not trusted blindly.** `CAP_PROP_FRAME_COUNT` comes from the container header
  (or duration x fps) and is 0/negative for some streams and wrong for truncated or variable-frame-
  rate files. We plan the sample from the header count and count the frames we actually decode. If
  the two disagree, a second pass samples again over the true count; if the header gives no count,
  a cheap counting pass (grab only) comes first. The alternative, decoding everything and
  subsampling in memory, needs every frame converted and held (300 x 1080p RGB = 1.9 GB) to save a
  second pass that only broken files pay for.
* **Spacing is by decoded frame index, not timestamp.** Timestamps of VFR/odd streams are unreliable
  in OpenCV; `frame_idx` is the index in the decoded stream, which every later table uses.
* **Rotation.** Phone videos carry a display-matrix rotation. We ask OpenCV to apply it
  (`CAP_PROP_ORIENTATION_AUTO`); where the backend cannot, we rotate ourselves by
  `CAP_PROP_ORIENTATION_META`. Either way frames come out upright and every box refers to the
  upright frame.
* **Bad input is an exception with a message** (`DecodeError` / `FileNotFoundError`), which the
  caller turns into a per-video status; nothing here returns silently empty.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from features.common import Registry

REF_MIN_FRAMES_PER_SAMPLE = 2  # pyav_ref only where the stream has at least this many frames per sample
ROTATIONS = {  # CAP_PROP_ORIENTATION_META degrees (clockwise display rotation) -> cv2.rotate code
    90: cv2.ROTATE_90_CLOCKWISE,
    180: cv2.ROTATE_180,
    270: cv2.ROTATE_90_COUNTERCLOCKWISE,
}
FULL_TURN = 360


class DecodeError(RuntimeError):
    """A file that exists but cannot be decoded (not a video, truncated, corrupt, empty)."""


@dataclass
class Frames:
    """Sampled frames of one video: RGB uint8 upright images and their index in the stream."""

    images: list[np.ndarray]
    frame_idx: list[int]
    n_stream: int  # frames decodable in the whole stream
    rotation: int = 0  # degrees applied (by OpenCV or by us) to make frames upright
    notes: list[str] = field(default_factory=list)  # anomalies worth a line in the status message
    clip: list[int] | None = None  # per image, the sampled position (clip) it belongs to; None: its own

    def clip_of(self) -> list[int]:
        """Each image's clip: its sampling position (clip_len consecutive frames share one)."""
        return list(range(len(self.images))) if self.clip is None else list(self.clip)


def sample_indices(n_stream: int, n: int) -> list[int]:
    """`n` indices evenly spaced over `0..n_stream-1` (first and last included); all if fewer."""
    if n_stream <= 0 or n <= 0:
        return []
    if n_stream <= n:
        return list(range(n_stream))
    return np.unique(np.round(np.linspace(0, n_stream - 1, n)).astype(int)).tolist()


def clip_indices(n_stream: int, n: int, clip_len: int) -> tuple[list[int], list[int]]:
    """(frame indices, clip of each): `n` clips of `clip_len` consecutive frames, their starts evenly
    spaced over the stream (first clip at frame 0, last one ending on the last frame).

    Clips never overlap: a stream too short for `n` of them gets as many as fit (at least one, cut
    to the stream's length). With clip_len 1 this is `sample_indices`, each frame its own clip.
    """
    if clip_len <= 1:
        idx = sample_indices(n_stream, n)
        return idx, list(range(len(idx)))
    if n_stream <= 0 or n <= 0:
        return [], []
    n_clips = max(1, min(n, n_stream // clip_len))
    starts = sample_indices(max(n_stream - clip_len + 1, 1), n_clips)  # starts >= clip_len apart
    idx = [s + t for s in starts for t in range(clip_len) if s + t < n_stream]
    return idx, [i // clip_len for i in range(len(idx))]


def upright(frame: np.ndarray, rotation: int) -> np.ndarray:
    """Rotate a stored frame by its metadata rotation (degrees clockwise) so it displays upright."""
    rotation = int(round(rotation)) % FULL_TURN
    if rotation == 0:
        return frame
    if rotation not in ROTATIONS:
        raise DecodeError(f"unsupported rotation metadata {rotation} degrees (not a multiple of 90)")
    return cv2.rotate(frame, ROTATIONS[rotation])


def _open(path: Path, threads: int) -> cv2.VideoCapture:
    params = [cv2.CAP_PROP_N_THREADS, threads] if threads > 0 else []
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, params)
    if not cap.isOpened():
        cap.release()
        raise DecodeError(f"{path}: OpenCV/FFmpeg cannot open it (not a video, or truncated/corrupt)")
    return cap


def _manual_rotation(cap: cv2.VideoCapture) -> tuple[int, int]:
    """(rotation we must apply ourselves, rotation the frames end up with)."""
    meta = int(round(cap.get(cv2.CAP_PROP_ORIENTATION_META) or 0)) % FULL_TURN
    cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
    auto = cap.get(cv2.CAP_PROP_ORIENTATION_AUTO) > 0
    return (0 if auto else meta), meta


def _count_frames(path: Path, threads: int) -> int:
    cap = _open(path, threads)
    try:
        n = 0
        while cap.grab():
            n += 1
        return n
    finally:
        cap.release()


def _decode_pass(path: Path, keep: list[int], threads: int) -> tuple[list, list[int], int, int]:
    """One sequential pass: grab every frame, retrieve those in `keep`. Returns images, their
    indices, the number of frames the stream really had (up to a frame that will not convert),
    and the rotation applied."""
    cap = _open(path, threads)
    try:
        manual, rotation = _manual_rotation(cap)
        wanted = set(keep)
        images, idx, n = [], [], 0
        while cap.grab():
            if n in wanted:
                ok, bgr = cap.retrieve()
                if not ok or bgr is None:
                    break  # a frame that grabs but will not convert: treat as end of stream
                images.append(cv2.cvtColor(upright(bgr, manual), cv2.COLOR_BGR2RGB))
                idx.append(n)
            n += 1
        return images, idx, n, rotation
    finally:
        cap.release()


def read_frames(path: Path | str, n_frames: int, threads: int = 0, decoder: str = "opencv",
                clip_len: int = 1) -> Frames:
    """Sample `n_frames` evenly spaced, upright RGB frames (all of them if the video is shorter),
    with the decoder named `decoder` (DECODERS); with `clip_len` > 1, `n_frames` clips of that
    many consecutive frames each (`clip_indices`; the opencv decoder only, as every frame of a
    clip must be decoded).

    Raises FileNotFoundError for a missing file and DecodeError for anything that is not a
    decodable video; see the module docstring for how frame counts are verified.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise DecodeError(f"{path}: zero-byte file")
    if clip_len > 1:
        if decoder not in CLIP_DECODERS:
            raise ValueError(f"clip_len {clip_len} needs a decoder that gives consecutive frames "
                             f"({', '.join(CLIP_DECODERS)}), not {decoder!r}")
        return _read_opencv(path, n_frames, threads, clip_len)
    return DECODERS.get(decoder)(path, n_frames, threads)


def _read_opencv(path: Path, n_frames: int, threads: int, clip_len: int = 1) -> Frames:
    cap = _open(path, threads)
    header = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    cap.release()
    notes = []
    if header <= 0:
        header = _count_frames(path, threads)
        notes.append("no frame count in header: counted frames in a first pass")
    keep, clip = clip_indices(header, n_frames, clip_len)
    images, idx, n_stream, rotation = _decode_pass(path, keep, threads)
    if n_stream != header and n_stream > 0:
        notes.append(f"header said {header} frames, stream has {n_stream}: re-sampled")
        keep, clip = clip_indices(n_stream, n_frames, clip_len)
        images, idx, n_stream, rotation = _decode_pass(path, keep, threads)
    if not images:
        raise DecodeError(f"{path}: opened but no frame could be decoded (header: {header} frames)")
    clip_of = dict(zip(keep, clip))
    return Frames(images, idx, n_stream, rotation, notes, [clip_of[i] for i in idx] if clip_len > 1 else None)


def _read_reference_frames(path: Path, n_frames: int, threads: int) -> Frames:
    """Sampling at reference frames (PyAV): the decoder skips frames no other frame refers to.

    H.264 as DFDC and phones write it has many non-reference B-frames (219 of 300 in x264's
    `veryfast` output, 75 of them references); decoding only I, P and reference B frames took 1.16 s
    instead of 1.95 s per 1080p video on one core. Each of the `n_frames` evenly spaced targets
    takes the first reference frame at or after it (so frames stay distinct and in order, at most a
    few frames late), `frame_idx` being the frame's position in the stream from its timestamp. A
    stream without a frame count or frame rate in its header falls back to the OpenCV decoder,
    which counts. Rotation metadata is applied as the OpenCV path does.
    """
    av = _pyav()
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as err:
        raise DecodeError(f"{path}: PyAV/FFmpeg cannot open it ({err})") from None
    with container:
        if not container.streams.video:
            raise DecodeError(f"{path}: no video stream")
        stream = container.streams.video[0]
        header, rate = int(stream.frames or 0), stream.average_rate
        if header < REF_MIN_FRAMES_PER_SAMPLE * n_frames or not rate:  # no count, or too few frames to skip any
            return _read_opencv(path, n_frames, threads)
        stream.thread_type = "NONE" if threads <= 1 else "AUTO"
        stream.codec_context.thread_count = max(threads, 1)
        stream.codec_context.skip_frame = "NONREF"
        targets = sample_indices(header, n_frames)
        start = stream.start_time or 0
        images, idx, last, rotation, notes = [], [], -1, 0, []
        try:
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                last = int(round(float((frame.pts - start) * stream.time_base * rate)))
                if targets and last >= targets[0]:
                    rotation = -int(frame.rotation or 0) % FULL_TURN  # PyAV: counter-clockwise degrees
                    images.append(upright(frame.to_ndarray(format="rgb24"), rotation))
                    idx.append(last)
                    targets = [t for t in targets if t > last]
        except av.error.FFmpegError as err:
            if not images:
                raise DecodeError(f"{path}: no frame could be decoded ({err})") from None
            notes.append(f"decoding stopped after frame {last}: {err}")
    if not images:
        raise DecodeError(f"{path}: opened but no frame could be decoded (header: {header} frames)")
    if targets:
        notes.append(f"stream ended at frame {last} before {len(targets)} sampled frame(s)")
    if len(images) < min(n_frames, header) - len(targets):
        notes.append(f"{len(images)} distinct reference frames for {n_frames} sampled positions")
    return Frames(images, idx, max(header, last + 1), rotation, notes)


def _pyav():
    """PyAV, imported on first use: only this decoder needs it, and a machine without it (a GPU box
    sent the project without PyAV's 35 MB wheel) must still import the pipelines and decode with OpenCV."""
    try:
        import av
    except ImportError as err:
        raise ImportError(f"decoder 'pyav_ref' needs PyAV (pip install av), or set faces.decoder=opencv "
                          f"({err})") from None
    return av


DECODERS: Registry = Registry("decoder")
DECODERS.register("opencv")(_read_opencv)
DECODERS.register("pyav_ref")(_read_reference_frames)
CLIP_DECODERS = ("opencv",)  # decoders that give every frame, so clips of consecutive frames
