"""Real-resolution benchmark videos: the embedded corpus's content at DFDC's size and codec.

    python -m features.synth.hd OUT            # ~12 videos, 1920x1080 and 1080x1920, 10 s at 30 fps

DFDC videos are 1920x1080 (some portrait), 300 frames, H.264 at a few Mbit/s. Rendering the
procedural scenes at that size would take minutes a video on 2 cores, so each video is rendered by
the embedded generator at 1/`upscale` of the size (the same scenes, fakes and artifacts), then
upscaled, given fresh full-resolution camera noise (so 1080p frames carry pixel-level texture, as
a sensor's do, not the smoothness of an upscale), and encoded with libx264 (PyAV) at `bitrate_kbps`;
`writer: opencv` encodes MPEG-4 part 2 (`mp4v`) with OpenCV instead, for machines without PyAV (its
decoding cost is not H.264's, and the bitrate is the encoder's own).
Metadata, test labels and fake parameters are copied; the ground-truth face boxes are scaled to
the full-resolution frames. Like the embedded corpus it is keyed by its config and resumable per
video, and `metadata.json` is written last.
"""

from __future__ import annotations

import argparse
import json
import shutil
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from features.common import atomic_write_json, atomic_write_parquet, atomic_write_with, config_hash, to_dict
from features.synth.config import SynthConfig
from features.synth.corpus import generate_corpus

HD_CONFIG_FILE = "hd_config.json"
SMALL_DIR = ".rendered"  # the generator's small videos, kept for resumption
COPIED = ("test_labels.csv", "fake_params.parquet")
BOX_COLUMNS = ["x0", "y0", "x1", "y1"]
SEED_STRIDE = 100_003  # noise seed of video i: seed * SEED_STRIDE + i
WRITERS = ("pyav", "opencv")
OPENCV_FOURCC = "mp4v"  # what OpenCV's bundled FFmpeg can write (no libx264 in its wheels)


@dataclass(frozen=True)
class HDConfig:
    seed: int = 7
    n_originals: int = 2  # each with 4-5 fakes: ~12 videos
    width: int = 1920
    height: int = 1080
    upscale: int = 5  # rendered at 384x216, upscaled 5x
    seconds: int = 10
    fps: int = 30
    portrait_share: float = 0.5  # of originals (DFDC has some portrait videos)
    bitrate_kbps: int = 4000  # DFDC's files are a few Mbit/s
    noise_sigma: float = 2.0  # full-resolution sensor noise (8-bit levels)
    preset: str = "veryfast"  # x264 speed preset: encoding cost, not content
    encode_threads: int = 1
    workers: int = 2  # videos encoded at once (does not change the output)
    writer: str = "pyav"  # pyav (H.264, as DFDC) | opencv (mp4v; no PyAV needed)

    def __post_init__(self) -> None:
        if self.writer not in WRITERS:
            raise ValueError(f"HDConfig.writer {self.writer!r} is not one of {WRITERS}")

    def synth(self) -> SynthConfig:
        w, h = self.width // self.upscale, self.height // self.upscale
        return SynthConfig(seed=self.seed, n_originals=self.n_originals, n_test_originals=0,
                           n_frames=self.seconds * self.fps, fps_choices=(self.fps,),
                           landscape_sizes=((w, h),), portrait_sizes=((h, w),), portrait_share=self.portrait_share,
                           workers=self.workers)


def full_size(small: Path, cfg: HDConfig) -> tuple[int, int]:
    """(width, height) of the full-resolution video of a rendered one, keeping its orientation."""
    cap = cv2.VideoCapture(str(small))
    w, h = cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)
    cap.release()
    if not w or not h:
        raise RuntimeError(f"{small}: cannot read a rendered video")
    return (cfg.width, cfg.height) if w >= h else (cfg.height, cfg.width)


def _frames(cap: cv2.VideoCapture, size: tuple[int, int], cfg: HDConfig, rng: np.random.Generator):
    """The rendered frames upscaled to `size` with full-resolution sensor noise, BGR uint8."""
    while True:
        ok, bgr = cap.read()
        if not ok:
            return
        big = cv2.resize(bgr, size, interpolation=cv2.INTER_CUBIC).astype(np.float32)
        big += rng.standard_normal(big.shape, dtype=np.float32) * np.float32(cfg.noise_sigma)
        yield np.clip(big, 0, 255).astype(np.uint8)


def _write_opencv(src: Path, tmp: Path, frames, size: tuple[int, int], cfg: HDConfig) -> None:
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*OPENCV_FOURCC), cfg.fps, size)
    try:
        if not writer.isOpened():
            raise RuntimeError(f"{tmp}: OpenCV cannot write {OPENCV_FOURCC} at {size}")
        n = 0
        for frame in frames:
            writer.write(frame)
            n += 1
        if not n:
            raise RuntimeError(f"{src}: no frames")
    finally:
        writer.release()


def encode_hd(src: Path, dst: Path, cfg: HDConfig, seed: int) -> None:
    """`src` upscaled to full resolution, noised, encoded (cfg.writer), written atomically to `dst`."""
    size = full_size(src, cfg)
    cap = cv2.VideoCapture(str(src))
    rng = np.random.default_rng(seed)

    def write(tmp: Path) -> None:
        if cfg.writer == "opencv":
            return _write_opencv(src, tmp, _frames(cap, size, cfg, rng), size, cfg)
        import av  # here, not at the top: only this writer needs PyAV

        with av.open(str(tmp), mode="w", format="mp4") as out:
            stream = None
            for frame in _frames(cap, size, cfg, rng):
                if stream is None:
                    stream = out.add_stream("libx264", rate=Fraction(cfg.fps))
                    stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
                    stream.bit_rate = cfg.bitrate_kbps * 1000
                    stream.options = {"preset": cfg.preset}
                    stream.codec_context.thread_count = cfg.encode_threads
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")):
                    out.mux(packet)
            if stream is None:
                raise RuntimeError(f"{src}: no frames")
            for packet in stream.encode():
                out.mux(packet)

    try:
        atomic_write_with(dst, write)
    finally:
        cap.release()


def _width(path: Path) -> float:
    cap = cv2.VideoCapture(str(path))
    try:
        return cap.get(cv2.CAP_PROP_FRAME_WIDTH)
    finally:
        cap.release()


def generate_hd_corpus(root: Path | str, cfg: HDConfig | None = None, progress: bool = True) -> Path:
    """Write (or finish, or reuse) the real-resolution corpus in `root`; returns `root`."""
    cfg = cfg or HDConfig()
    root = Path(root)
    # `workers` does not change the videos; `writer` left out at its default keeps the folders made
    # before it existed valid
    key = config_hash({k: v for k, v in to_dict(cfg).items()
                       if k != "workers" and not (k == "writer" and v == WRITERS[0])})
    done = root / HD_CONFIG_FILE
    if done.exists():
        if json.loads(done.read_text())["hash"] == key and (root / "metadata.json").exists():
            return root
        if json.loads(done.read_text())["hash"] != key:  # another config's videos: not to be reused
            for stale in [root / "metadata.json", *root.glob("*.mp4")]:
                stale.unlink(missing_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_json({"hash": key, "config": to_dict(cfg)}, done)  # which config the folder's videos are of
    small = generate_corpus(root / SMALL_DIR, cfg.synth(), progress=progress, overwrite=True)  # ours to redo
    meta = json.loads((small / "metadata.json").read_text())
    names = sorted(meta)
    todo = [(small / n, root / n, cfg, cfg.seed * SEED_STRIDE + i) for i, n in enumerate(names)
            if not (root / n).exists()]  # written atomically: an existing file is whole
    with ProcessPoolExecutor(max(1, cfg.workers)) as pool, \
            tqdm(total=len(names), initial=len(names) - len(todo), desc="1080p videos", unit="video",
                 disable=not progress) as bar:
        for fut in as_completed([pool.submit(encode_hd, *t) for t in todo]):
            fut.result()
            bar.update()
    scale = {n: full_size(small / n, cfg)[0] / _width(small / n) for n in names}
    truth = pd.read_parquet(small / "ground_truth.parquet")
    truth[BOX_COLUMNS] = truth[BOX_COLUMNS].mul(truth["video_id"].map(scale), axis=0)
    atomic_write_parquet(truth, root / "ground_truth.parquet")
    for name in COPIED:
        if (small / name).exists():
            shutil.copyfile(small / name, root / name)
    atomic_write_json(meta, root / "metadata.json")  # last: the corpus is complete
    return root


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="corpus folder to write")
    parser.add_argument("--originals", type=int, default=HDConfig.n_originals)
    parser.add_argument("--seed", type=int, default=HDConfig.seed)
    args = parser.parse_args(argv)
    return generate_hd_corpus(args.out, HDConfig(seed=args.seed, n_originals=args.originals))


if __name__ == "__main__":
    main()
