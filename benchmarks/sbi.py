"""What self-blending makes: `python -m benchmarks.sbi` writes a grid of real faces, their blends and masks.

    python -m benchmarks.sbi                          # the embedded corpus's real faces (face box ellipse)
    python -m benchmarks.sbi --landmarks 68           # the same faces, masks from dlib's 68-landmark hull
    python -m benchmarks.sbi --faces ../shared/data/dfdc-faces-dev/faces_224 --n 8
    python -m benchmarks.sbi --small docs/sbi.png     # also a copy of at most 100 KB (the README's)

Rows: the real crop, its self-blend (base_learners.sbi, the recipe of SBIConfig or `--set`), the
mask (white: the source fully pasted), and the difference |blend - real| amplified, where the blend
boundary and the source's colour and sharpness change show. With `--faces` the images of a folder
are the faces (a `metadata.csv` beside it, the Kaggle face-set layout, keeps the REAL ones), placed
in the crop with the face box of `faces.margin` as any imported face set. Otherwise a tiny embedded
corpus is generated and put through the face stage under the workdir (reused on a rerun).

Item 4 of issue 28 (the SBI learner alone and in the stack, with group-bootstrap intervals and its
error correlations) is one command on the `sbi` profile, whose learners are the same family trained
on labels and self-blended:

    python -m benchmarks.real --profile sbi --data ../shared/data/dfdc-faces-dev
    python pipelines/oof.py --profile sbi --data A --test-data B && python pipelines/stack.py --profile sbi
"""

from __future__ import annotations

import argparse
import io
import logging
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image

from base_learners.augment import resize
from base_learners.sbi import BlendedCrops, FaceRegions, SBIConfig, assumed_box, face_regions
from features.common import from_dict
from features.corpus.layouts import read_videos
from features.faces.config import FaceConfig
from features.faces.extract import extract_faces
from features.faces.source import CropSource
from features.synth import SynthConfig, generate_corpus
from features.synth.corpus import corpus_key
from pipelines.config import WORK_DIR, apply_override, setup_logging

log = logging.getLogger(__name__)
BENCH_DIR = "bench_sbi"  # under the workdir
DEFAULT_FACES = 8
TILE = 112  # px of a tile in the grid
CROP_SIZE = 128  # px of the embedded corpus's crops here (the demo's 64 px show little)
DIFF_GAIN = 4.0  # |blend - real| is small: amplified to be seen
LABEL_WIDTH = 70  # px of the row names' column
SMALL_BYTES = 100_000  # the README's copy
SMALL_COLOURS = 256  # palette of the small copy (dithered)
SMALL_SHRINK = 0.85  # each try of the small copy is this much narrower than the last
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
ROWS = ("real", "blend", "mask", "|diff|x4")
TINY_CORPUS = dict(n_originals=8, n_test_originals=0, n_frames=8)


def embedded_faces(workdir: Path, n: int, landmarks: int) -> tuple[np.ndarray, pd.DataFrame, CropSource]:
    """Up to `n` real faces of a tiny embedded corpus, one per real video first: (crops, rows, source)."""
    synth = SynthConfig.tiny(**TINY_CORPUS)
    root = generate_corpus(workdir / "corpus" / corpus_key(synth), synth, progress=False)
    videos = read_videos([root])
    videos = videos[videos["label"] == 0].reset_index(drop=True)  # only reals are blended
    fcfg = FaceConfig(n_frames=2, crop_size=CROP_SIZE, min_face_size=60, workers=1, landmarks=landmarks)
    result = extract_faces(videos, fcfg, workdir / "faces", progress=False)
    rows = result.faces.assign(rank=result.faces.groupby("video_id").cumcount())
    rows = rows.sort_values(["rank", "video_id"]).head(n)
    source = CropSource.from_table(rows, result.crops_dir)
    return np.asarray(source), rows.reset_index(drop=True), source


def folder_faces(folder: Path, n: int, size: int) -> np.ndarray:
    """The first `n` face images of a folder (its metadata.csv's REAL ones, when there is one), resized."""
    files = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS)
    meta = folder.parent / "metadata.csv"
    if meta.exists():
        table = pd.read_csv(meta)
        real = {Path(str(v)).stem for v in table.loc[table["label"].astype(str) == "REAL", "videoname"]}
        files = [f for f in files if f.stem in real]
    if not files:
        raise SystemExit(f"no (real) face images in {folder}")
    crops = [resize(cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB), size) for f in files[:n]]
    return np.stack(crops)


def blends(crops: np.ndarray, regions: FaceRegions, cfg: SBIConfig, seed: int) -> tuple[list, list]:
    """(blend, mask) of every crop, as training's first epoch draws them."""
    items = BlendedCrops(crops, regions, cfg, seed)
    made = [items.blend(i) for i in range(len(crops))]
    return [b for b, _ in made], [m for _, m in made]


def grid(crops: np.ndarray, blended: list, masks: list) -> np.ndarray:
    """RGB uint8 grid: one column per face, the rows of ROWS, the row names on the left."""
    def tile(img):
        return cv2.resize(img, (TILE, TILE), interpolation=cv2.INTER_AREA)

    def grey(x):
        return np.repeat(np.clip(x * 255 + 0.5, 0, 255).astype(np.uint8)[..., None], 3, axis=2)

    diffs = [np.clip(np.abs(b.astype(np.float32) - c) * DIFF_GAIN, 0, 255).astype(np.uint8)
             for b, c in zip(blended, crops)]
    rows = [list(crops), blended, [grey(m) for m in masks], diffs]
    out = []
    for name, row in zip(ROWS, rows):
        label = np.full((TILE, LABEL_WIDTH, 3), 255, np.uint8)
        cv2.putText(label, name, (4, TILE // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        out.append(np.concatenate([label, *[tile(x) for x in row]], axis=1))
    return np.concatenate(out, axis=0)


def small_png(rgb: np.ndarray, limit: int = SMALL_BYTES) -> bytes:
    """A palette PNG of the grid of at most `limit` bytes, shrunk until it fits."""
    img = Image.fromarray(rgb)
    while True:
        data = io.BytesIO()
        palette = img.convert("P", palette=Image.Palette.ADAPTIVE, colors=SMALL_COLOURS,
                              dither=Image.Dither.FLOYDSTEINBERG)
        palette.save(data, format="PNG", optimize=True)
        if data.tell() <= limit:
            return data.getvalue()
        img = img.resize((int(img.width * SMALL_SHRINK), int(img.height * SMALL_SHRINK)), Image.LANCZOS)


def sbi_config(sets: list[str]) -> SBIConfig:
    data: dict = {}
    for item in sets:
        apply_override(data, item)
    return from_dict(SBIConfig, data, where="sbi")


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=Path, help="a folder of face images (default: the embedded corpus)")
    parser.add_argument("--n", type=int, default=DEFAULT_FACES, help="faces (columns)")
    parser.add_argument("--landmarks", type=int, default=0, choices=(0, 68), help="embedded corpus: 68 = hull masks")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=WORK_DIR)
    parser.add_argument("--out", type=Path, help="the grid (default: <workdir>/bench_sbi/sbi.png)")
    parser.add_argument("--small", type=Path, help="also a copy of at most 100 KB here (e.g. docs/sbi.png)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="an SBIConfig setting")
    args = parser.parse_args(argv)
    setup_logging()
    cfg = sbi_config(args.set)
    work = args.workdir / BENCH_DIR
    if args.faces:
        crops = folder_faces(args.faces, args.n, CROP_SIZE)
        regions = FaceRegions(assumed_box(FaceConfig.margin if cfg.face_margin is None else cfg.face_margin))
    else:
        crops, rows, source = embedded_faces(work, args.n, args.landmarks)
        regions = face_regions(rows, source, cfg)
    blended, masks = blends(crops, regions, cfg, args.seed)
    picture = grid(crops, blended, masks)
    out = args.out or work / "sbi.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), picture[..., ::-1])
    print(f"{len(crops)} real faces, their blends and masks ({'hull' if regions.landmarks is not None else 'ellipse'}"
          f" masks): {out}")
    if args.small:
        args.small.parent.mkdir(parents=True, exist_ok=True)
        args.small.write_bytes(small_png(picture))
        print(f"small copy ({args.small.stat().st_size // 1000} KB): {args.small}")
    return out


if __name__ == "__main__":
    main()
