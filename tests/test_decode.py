"""Frame sampling: even spacing, true frame indices, header counts that lie, rotation, bad files.

Videos are written here with OpenCV (mp4v in .mp4, MJPG in .avi). Each frame's brightness encodes
its index (binary blocks), so a test can check that frame k of the output really is frame k of the stream. OpenCV
cannot write rotation metadata, so the rotation test patches the display matrix in the mp4's `tkhd`
box (what phones write) and checks the frames come out as OpenCV's FFmpeg backend displays them.
"""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from features.faces.decode import DecodeError, read_frames, sample_indices, upright

SIZE = (64, 48)  # width, height
BITS = 6  # frame index written as 6 black/white blocks of BLOCK px in the bottom band
BLOCK = SIZE[0] // 8


def write_video(path: Path, n: int, fourcc: str = "mp4v", size=SIZE, marker: bool = False) -> Path:
    """n frames carrying their index; `marker` paints a red top-left block (orientation)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 25, size)
    for k in range(n):
        frame = np.full((size[1], size[0], 3), 128, np.uint8)
        for bit in range(BITS):
            frame[-BLOCK:, bit * BLOCK : (bit + 1) * BLOCK] = 255 if (k >> bit) & 1 else 0
        if marker:
            frame[: size[1] // 4, : size[0] // 4] = (0, 0, 255)
        writer.write(frame)
    writer.release()
    return path


def frame_number(image: np.ndarray) -> int:
    """The frame index written by write_video (unrotated frames)."""
    band = image[-BLOCK:].mean(axis=(0, 2))
    return sum(1 << bit for bit in range(BITS) if band[bit * BLOCK : (bit + 1) * BLOCK].mean() > 128)


def _boxes(data: bytes, start: int, end: int):
    i = start
    while i + 8 <= end:
        size, kind = struct.unpack(">I4s", data[i : i + 8])
        if size < 8:
            return
        yield i, kind
        if kind in (b"moov", b"trak"):
            yield from _boxes(data, i + 8, i + size)
        i += size


MATRICES = {90: (0, 1, -1, 0), 180: (-1, 0, 0, -1), 270: (0, -1, 1, 0)}  # a b c d of the tkhd matrix


def set_mp4_rotation(src: Path, dst: Path, degrees: int) -> Path:
    """Copy of `src` whose video track carries a display rotation (clockwise degrees)."""
    data = bytearray(src.read_bytes())
    a, b, c, d = MATRICES[degrees]
    found = 0
    for i, kind in _boxes(data, 0, len(data)):
        if kind == b"tkhd":
            offset = i + (48 if data[i + 8] == 0 else 60)  # matrix offset for box version 0 / 1
            struct.pack_into(">9i", data, offset, a << 16, b << 16, 0, c << 16, d << 16, 0, 0, 0, 1 << 30)
            found += 1
    assert found, "no tkhd box found"
    dst.write_bytes(bytes(data))
    return dst


def test_sample_indices_even_and_complete():
    assert sample_indices(100, 5) == [0, 25, 50, 74, 99]
    assert sample_indices(3, 8) == [0, 1, 2]  # short video: every frame
    assert sample_indices(0, 8) == []
    idx = sample_indices(300, 32)
    assert len(idx) == 32 and idx[0] == 0 and idx[-1] == 299 and np.all(np.diff(idx) > 0)


def test_frames_are_the_indexed_ones(tmp_path):
    path = write_video(tmp_path / "v.mp4", 40)
    frames = read_frames(path, 6)
    assert frames.frame_idx == sample_indices(40, 6)
    assert [frame_number(im) for im in frames.images] == frames.frame_idx
    assert frames.n_stream == 40 and frames.images[0].shape == (SIZE[1], SIZE[0], 3)
    assert frames.notes == []


def test_short_video_keeps_all_frames(tmp_path):
    frames = read_frames(write_video(tmp_path / "short.mp4", 3), 8)
    assert frames.frame_idx == [0, 1, 2]


def test_header_without_frame_count_is_counted(tmp_path):
    path = write_video(tmp_path / "v.avi", 30, fourcc="MJPG")
    data = bytearray(path.read_bytes())
    for tag, offset in ((b"avih", 16), (b"strh", 32)):  # dwTotalFrames / dwLength := 0
        struct.pack_into("<I", data, data.find(tag) + 8 + offset, 0)
    path.write_bytes(bytes(data))
    assert cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FRAME_COUNT) == 0  # the case under test
    frames = read_frames(path, 4)
    assert frames.frame_idx == sample_indices(30, 4)
    assert [frame_number(im) for im in frames.images] == frames.frame_idx
    assert any("counted" in note for note in frames.notes)


def test_truncated_stream_is_resampled_over_true_length(tmp_path):
    full = write_video(tmp_path / "full.avi", 40, fourcc="MJPG")
    cut = tmp_path / "cut.avi"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])  # header still says 40 frames
    frames = read_frames(cut, 5)
    assert 0 < frames.n_stream < 40
    assert frames.frame_idx == sample_indices(frames.n_stream, 5)
    assert [frame_number(im) for im in frames.images] == frames.frame_idx
    assert any("re-sampled" in note for note in frames.notes)


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_rotation_metadata_gives_upright_frames(tmp_path, degrees):
    raw = write_video(tmp_path / "raw.mp4", 4, marker=True)
    path = set_mp4_rotation(raw, tmp_path / f"rot{degrees}.mp4", degrees)
    frames = read_frames(path, 2)
    stored = read_frames(raw, 2).images[0]
    assert frames.rotation == degrees
    np.testing.assert_array_equal(frames.images[0], upright(stored, degrees))
    # and upright() (our fallback when a backend cannot auto-rotate) agrees with FFmpeg's display
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    assert cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0)
    meta = int(cap.get(cv2.CAP_PROP_ORIENTATION_META))
    ok, unrotated = cap.read()
    ok2, displayed = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG).read()
    assert ok and ok2 and unrotated.shape[:2] == (SIZE[1], SIZE[0])
    np.testing.assert_array_equal(upright(unrotated, meta), displayed)
    red = np.argwhere(frames.images[0][..., 0] > 200).mean(axis=0)  # RGB: red marker moved
    corner = {90: (0, 1), 180: (1, 1), 270: (1, 0)}[degrees]  # (bottom?, right?) after rotation
    h, w = frames.images[0].shape[:2]
    assert ((red[0] > h / 2), (red[1] > w / 2)) == tuple(map(bool, corner))


def test_bad_files_raise_with_the_file_named(tmp_path):
    good = write_video(tmp_path / "good.mp4", 20)
    (tmp_path / "zero.mp4").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("this is not a video\n" * 20)
    (tmp_path / "half.mp4").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    for name, words in (("zero.mp4", "zero-byte"), ("text.mp4", "cannot open"), ("half.mp4", "cannot open")):
        with pytest.raises(DecodeError, match=words) as err:
            read_frames(tmp_path / name, 4)
        assert name in str(err.value)
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        read_frames(tmp_path / "nope.mp4", 4)


# ---- the reference-frame decoder (decoder: pyav_ref)

def write_h264(path: Path, n: int, size=SIZE) -> Path:
    """n index-carrying frames as H.264 with B-frames (x264's defaults), through PyAV."""
    import av

    frames = [im for im in read_frames(write_video(path.with_suffix(".src.mp4"), n, size=size), n).images]
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "10"}
        for im in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(im, format="rgb24")))
        out.mux(stream.encode())
    return path


def test_reference_frames_sampled_at_or_after_each_target_carry_their_true_index(tmp_path):
    path = write_h264(tmp_path / "b.mp4", 60)
    every = read_frames(path, 60)  # OpenCV decodes every frame
    refs = read_frames(path, 10, decoder="pyav_ref")
    assert [frame_number(im) for im in refs.images] == refs.frame_idx  # the index is the frame's own
    assert refs.n_stream == 60 and len(every.images) == 60
    targets = sample_indices(60, 10)
    assert refs.frame_idx == sorted(set(refs.frame_idx)) and refs.frame_idx[0] == 0
    assert all(i >= t for i, t in zip(refs.frame_idx, targets))  # never early
    assert max(i - t for i, t in zip(refs.frame_idx, targets)) <= 4  # x264's B-frame runs are short


def test_reference_decoder_on_streams_without_b_frames_gives_the_opencv_frames(tmp_path):
    path = write_video(tmp_path / "v.mp4", 40)  # mp4v: I and P frames only, all references
    refs, cv = read_frames(path, 6, decoder="pyav_ref"), read_frames(path, 6)
    assert refs.frame_idx == cv.frame_idx and refs.n_stream == cv.n_stream
    assert [frame_number(im) for im in refs.images] == refs.frame_idx


@pytest.mark.parametrize("degrees", [90, 270])
def test_reference_decoder_applies_rotation_as_opencv_does(tmp_path, degrees):
    raw = write_video(tmp_path / "raw.mp4", 4, marker=True)
    path = set_mp4_rotation(raw, tmp_path / f"rot{degrees}.mp4", degrees)
    refs, cv = read_frames(path, 2, decoder="pyav_ref"), read_frames(path, 2)
    assert refs.rotation == cv.rotation == degrees
    assert np.abs(refs.images[0].astype(int) - cv.images[0]).mean() < 2  # same picture (YUV->RGB rounding)


def test_reference_decoder_names_a_bad_file(tmp_path):
    (tmp_path / "text.mp4").write_text("this is not a video\n" * 20)
    with pytest.raises(DecodeError, match="text.mp4"):
        read_frames(tmp_path / "text.mp4", 4, decoder="pyav_ref")
