"""Where a face set's fakes differ from their originals: `python -m benchmarks.swap_diff --data DIR`.

Why: a self-blended learner (base_learners.sbi) learns the traces a blend leaves inside the face, the
boundary above all. If a face set's crops cut the swapped region away, or most of its boundary, no such
learner can see it there, however it is trained. A fake and the original it was made from show the
same scene, so the mean |fake - original| over many pairs maps where the manipulation sits in the crop:
high where the face was replaced, down to a floor elsewhere (the two videos' crops come from two
detections and two encodings, so they never match exactly; blurring averages over that misalignment).

    python -m benchmarks.swap_diff --data ../shared/data/dfdc-faces-dev --out diff.png

Reads a face-image set (`metadata.csv` with `videoname,label,original`, features.corpus.face_csv),
pairs up to `--pairs` fakes (drawn with `--seed`) with their original's crop (a video's folder of
frames: its first frame), prints the mean
difference in the central square and in the border band with every fake accounted for (used, or why
not), and writes the mean map as a grey PNG scaled to its maximum.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from features.corpus.face_csv import read_face_csv
from features.corpus.readers import FAKE, STATUS_OK, listing
from features.faces.images import image_files
from pipelines.config import exit_on_user_error, setup_logging

log = logging.getLogger(__name__)

DIFF_BLUR_SIGMA = 4.0  # px of a 224 px crop: about the misalignment of two detections of one face
CENTRE_FRAC = 0.2  # side of the central square, a fraction of the crop side
BORDER_FRAC = 0.1  # width of the border band, a fraction of the crop side
DEFAULT_PAIRS = 1500
PIXEL_MAX = 255
USED, NO_IMAGE, NO_ORIGINAL, UNREADABLE, SIZE_DIFFERS = (
    "used", "no image", "original not in the set or without image", "unreadable image", "sizes differ")


@dataclass
class SwapDiff:
    """The mean blurred |fake - original| map of the pairs used, its centre and border means (grey
    levels), and how many of the drawn fakes went where (USED or the reason they could not)."""

    mean_map: np.ndarray | None
    centre: float
    border: float
    counts: dict[str, int] = field(default_factory=dict)


def pairs(videos: pd.DataFrame) -> pd.DataFrame:
    """Each fake with its image path (empty when it has none) and its original's (`original_path`,
    empty when the original is not in the set or has no image)."""
    fakes = videos[videos["label"] == FAKE]
    usable = videos[videos["status"] == STATUS_OK]
    ok = pd.Series([str(Path(r) / p) for r, p in zip(usable["root"], usable["path"])], index=usable["video_id"])
    return pd.DataFrame({"video_id": fakes["video_id"], "path": fakes["video_id"].map(ok).fillna(""),
                         "original_path": fakes["original"].map(ok).fillna("")}).reset_index(drop=True)


def grey(path: str) -> np.ndarray | None:
    """The image as grey levels (a video's folder of frames: its first in name order); None if unreadable."""
    if Path(path).is_dir():
        frames = image_files(Path(path))
        path = str(frames[0]) if frames else path
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    return None if image is None else image.astype(np.float32).mean(axis=2)


def centre_and_border(mean_map: np.ndarray) -> tuple[float, float]:
    """Mean of the central square (CENTRE_FRAC of the side) and of the border band (BORDER_FRAC)."""
    side = min(mean_map.shape)
    half, band = max(1, round(side * CENTRE_FRAC / 2)), max(1, round(side * BORDER_FRAC))
    cy, cx = mean_map.shape[0] // 2, mean_map.shape[1] // 2
    inner = np.zeros(mean_map.shape, dtype=bool)
    inner[band:-band, band:-band] = True
    return float(mean_map[cy - half:cy + half, cx - half:cx + half].mean()), float(mean_map[~inner].mean())


def swap_difference(videos: pd.DataFrame, n_pairs: int = DEFAULT_PAIRS, seed: int = 0) -> SwapDiff:
    table = pairs(videos)
    drawn = table.sample(min(n_pairs, len(table)), random_state=seed) if len(table) else table
    counts = dict.fromkeys((USED, NO_IMAGE, NO_ORIGINAL, UNREADABLE, SIZE_DIFFERS), 0)
    total, shape, unreadable = None, None, []
    for rec in drawn.itertuples():
        if not rec.path:
            counts[NO_IMAGE] += 1
            continue
        if not rec.original_path:
            counts[NO_ORIGINAL] += 1
            continue
        fake, real = grey(rec.path), grey(rec.original_path)
        if fake is None or real is None:
            unreadable.append(rec.path if fake is None else rec.original_path)
            counts[UNREADABLE] += 1
            continue
        if fake.shape != real.shape or (shape is not None and fake.shape != shape):
            counts[SIZE_DIFFERS] += 1
            continue
        diff = cv2.GaussianBlur(np.abs(fake - real), (0, 0), DIFF_BLUR_SIGMA)
        total, shape = (diff if total is None else total + diff), fake.shape
        counts[USED] += 1
    if unreadable:
        log.warning("%d image(s) cannot be read: %s", len(unreadable), listing(unreadable))
    if total is None:
        return SwapDiff(None, float("nan"), float("nan"), counts)
    mean_map = total / counts[USED]
    return SwapDiff(mean_map, *centre_and_border(mean_map), counts)


def report(result: SwapDiff) -> str:
    accounted = ", ".join(f"{k}: {v}" for k, v in result.counts.items())
    if result.mean_map is None:
        return f"no pair of a fake and its original could be compared ({accounted})"
    return (f"mean |fake - original| (grey levels, blurred {DIFF_BLUR_SIGMA:g} px) over {result.counts[USED]} "
            f"pairs: central {CENTRE_FRAC:g} of the side {result.centre:.1f}, outer {BORDER_FRAC:g} band "
            f"{result.border:.1f}, ratio {result.centre / result.border:.2f} ({accounted})")


def main(argv=None) -> SwapDiff:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="a face-image set (metadata.csv + images)")
    parser.add_argument("--pairs", type=int, default=DEFAULT_PAIRS, help="fakes drawn")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the mean map here (PNG)")
    args = parser.parse_args(argv)
    if args.pairs < 1:
        parser.error(f"--pairs must be at least 1; got {args.pairs}")
    setup_logging()
    with exit_on_user_error("benchmarks.swap_diff"):
        result = swap_difference(read_face_csv([args.data], on_missing="status"), args.pairs, args.seed)
    print(report(result))
    if args.out is not None and result.mean_map is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(args.out), np.clip(result.mean_map / (result.mean_map.max() or 1.0) * PIXEL_MAX, 0, PIXEL_MAX)
                    .astype(np.uint8))
        print(f"map: {args.out}")
    return result


if __name__ == "__main__":
    main()
