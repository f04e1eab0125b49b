"""The face settings that made a face set's crops: stated by the user, or estimated from the images.

Why: a face set (features.corpus.face_csv) ships crops, not videos, so the margin around the face
and the crops' pixel size were chosen by whoever cut them. A detector trained on those crops can
only judge a video if the video's faces are cropped the same way, and a run that mixes face images
with videos (cross-dataset, `oof.py --data FACES --test-data VIDEOS` or the reverse) can only
compare like with like if its videos are cropped the same way. So a face-image run resolves
`FaceSetSettings` once (`resolve_face_set`), and everything that crops a video for it uses that
margin: the mixed run's face stage, and the packaged detector (pipelines.scoring), which records
the settings in detector.json and says so when it scores.

Two ways to know them (`face_images` in oof.py's config):
  - stated: `face_images.margin` (FaceConfig.margin's meaning: the crop's side is the face box's
    longer side times 1 + 2 * margin) and optionally `face_images.crop_size` (the images' side in
    pixels);
  - estimated (`face_images.estimate`, on by default when nothing is stated): MTCNN finds the face
    inside each of a seeded sample of crops, with the same detector and thresholds the video face
    stage uses, so the estimate answers exactly what scoring needs: how large this project's box of
    that face is against the crop. Each crop gives margin = (crop side / box's longer side - 1) / 2;
    the estimate is their median, reported with the quartiles and how many crops had a face.

A mixed run's two face stages write two cache folders; `merge_face_results` links both into one
folder (named by both keys) so level 0 reads every crop through one CropSource, unchanged.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from features.common import ConfigError, atomic_write_json, config_hash
from features.corpus.face_csv import IMAGE_EXTENSIONS, MEDIA_FACES
from features.faces import cache
from features.faces.config import MIN_MARGIN, FaceConfig
from features.faces.extract import FaceResult, collect_results

log = logging.getLogger(__name__)

STATED, ESTIMATED, FROM_VIDEOS = "stated", "estimated", "face stage"  # FaceSetSettings.how
SETTINGS_FILE = "face_settings.json"  # in an oof run's output folder: what packaging reads back
MIN_FACE_SHARE = 0.2  # the smallest face searched in a crop, as a share of its short side
PAD_SHARE = 0.25  # border added around a crop before detection: MTCNN misses faces that touch the edge
MIN_FOUND_SHARE = 0.5  # an estimate needs a face in at least this share of the sampled crops
DETECT_SIDE = 160  # crops larger than this are shrunk before detection: the margin is a ratio, and
# MTCNN's pyramid on a 224 px crop costs ~4x the time for the same box (measured ~1 s a crop under load)
SMALLEST_MARGIN = -0.4  # tighter than this is no face crop (FaceConfig needs margin > MIN_MARGIN, -0.5)
QUARTILES = (25, 50, 75)
MERGED_PREFIX = "merged-"  # a mixed run's combined face cache folder: merged-<hash of both folders>


@dataclass(frozen=True)
class FaceImagesConfig:
    """How a face set's crops were made (oof.py `face_images.*`); see the module docstring.
    Frozen: it is an added field's default (features.common.added_field)."""

    margin: float | None = None  # stated margin (FaceConfig.margin's meaning); None: not stated
    crop_size: int | None = None  # stated side of the face images in pixels; None: measured
    estimate: bool = True  # without a stated margin, estimate it from a sample of the images
    sample: int = 64  # face images the estimate detects faces in
    seed: int = 0
    det_prob: float = 0.7  # a face found in a crop counts from this MTCNN probability on

    def __post_init__(self) -> None:
        checks = {f"margin > {MIN_MARGIN}": self.margin is None or self.margin > MIN_MARGIN,
                  "crop_size >= 1": self.crop_size is None or self.crop_size >= 1,
                  "sample >= 1": self.sample >= 1, "0 <= det_prob <= 1": 0 <= self.det_prob <= 1}
        failed = [name for name, ok in checks.items() if not ok]
        if failed:
            raise ConfigError(f"face_images: {', '.join(failed)} violated in {self}")


@dataclass(frozen=True)
class FaceSetSettings:
    """The face settings a face set's crops were made with, and how they are known."""

    margin: float
    how: str  # STATED | ESTIMATED
    crop_size: int | None = None  # the images' side in pixels (stated, or the sample's median)
    n_sampled: int = 0  # estimate: crops looked at
    n_found: int = 0  # estimate: crops with a face
    margin_q25: float | None = None  # estimate: the spread of the per-crop margins
    margin_q75: float | None = None
    measured_margin: float | None = None  # estimate: the median before clamping at SMALLEST_MARGIN

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """One line for logs and predict.py's output."""
        size = f", face images {self.crop_size} px" if self.crop_size else ""
        if self.how == ESTIMATED:
            clamped = "" if self.measured_margin in (None, self.margin) else (
                f", measured {self.measured_margin:.3f}: the crops are tighter than the face box, so videos are "
                f"cropped at the smallest margin")
            return (f"margin {self.margin:.3f} estimated from {self.n_found} of {self.n_sampled} face images "
                    f"(quartiles {self.margin_q25:.3f}-{self.margin_q75:.3f}{clamped}){size}")
        return f"margin {self.margin:.3f} ({self.how}){size}"


def settings_from_dict(data: dict | None) -> FaceSetSettings | None:
    return FaceSetSettings(**data) if data else None


def margin_of(box, height: int, width: int) -> float:
    """The margin a crop of `height` x `width` has around a face `box` inside it (crop_face's rule
    inverted: side = longer box side * (1 + 2 * margin))."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return (max(height, width) / max(x1 - x0, y1 - y0) - 1.0) / 2.0


def _image_files(videos: pd.DataFrame) -> list[Path]:
    """The first face image of each face-image row (a folder per video: its first image by name)."""
    out = []
    for root, rel in zip(videos["root"], videos["path"]):
        path = Path(str(root)) / str(rel)
        if path.is_dir():
            files = sorted(f for f in path.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file())
            path = files[0] if files else None
        if path is not None and path.is_file():
            out.append(path)
    return out


def _crop_detector_config(faces: FaceConfig, cfg: FaceImagesConfig, side: int) -> FaceConfig:
    """The face stage's detector settings, for a crop: no downscale, a minimum face relative to the
    crop, one face, on the CPU in this process."""
    return replace(faces, detect_scale=1.0, detect_max_side=None, retry_full_res=False, detect_every=1,
                   min_face_size=max(1, int(side * MIN_FACE_SHARE)), max_faces=1, det_prob=cfg.det_prob,
                   workers=1, device="cpu")


def crop_margins(images: list[np.ndarray], faces: FaceConfig, cfg: FaceImagesConfig) -> np.ndarray:
    """Per RGB crop, the margin around the face MTCNN finds in it (NaN where it finds none)."""
    from features.faces.detect import build_detector, detect_faces  # MTCNN: imported where it runs

    out = np.full(len(images), np.nan)
    detectors: dict[int, object] = {}
    for i, rgb in enumerate(images):
        shrink = DETECT_SIDE / max(rgb.shape[:2])
        if shrink < 1:
            rgb = cv2.resize(rgb, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA)
        h, w = rgb.shape[:2]
        pad = int(round(max(h, w) * PAD_SHARE))
        padded = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
        dcfg = _crop_detector_config(faces, cfg, min(h, w))
        if dcfg.min_face_size not in detectors:
            detectors[dcfg.min_face_size] = build_detector(dcfg)
        found = detect_faces(detectors[dcfg.min_face_size], [padded], dcfg)[0]
        if len(found.boxes):
            out[i] = margin_of(found.boxes[0] - pad, h, w)
    return out


def estimate_face_settings(videos: pd.DataFrame, faces: FaceConfig, cfg: FaceImagesConfig
                           ) -> tuple[FaceSetSettings | None, str]:
    """The margin (and image size) of the face-image rows of `videos`, estimated on a seeded sample
    of their images; (None, why) when too few crops show a face MTCNN finds."""
    files = _image_files(videos)
    if not files:
        return None, "no readable face image to estimate the margin from"
    rng = np.random.default_rng(cfg.seed)
    pick = sorted(rng.choice(len(files), size=min(cfg.sample, len(files)), replace=False))
    images, sides = [], []
    for k in pick:
        bgr = cv2.imread(str(files[k]), cv2.IMREAD_COLOR)
        if bgr is not None:
            images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            sides.append(max(bgr.shape[:2]))
    margins = crop_margins(images, faces, cfg)
    found = margins[np.isfinite(margins)]
    if len(found) < max(1, MIN_FOUND_SHARE * len(images)):
        return None, (f"MTCNN found a face in {len(found)} of {len(images)} sampled face images; state the "
                      "margin instead (face_images.margin)")
    q25, median, q75 = (float(v) for v in np.percentile(found, QUARTILES))
    if median < SMALLEST_MARGIN:
        log.warning("face set crops are tighter than the face box MTCNN finds (median margin %.3f): videos are "
                    "cropped at margin %.1f, a little wider than the training crops", median, SMALLEST_MARGIN)
    size = cfg.crop_size or int(np.median(sides))
    return FaceSetSettings(margin=round(max(median, SMALLEST_MARGIN), 4), how=ESTIMATED, crop_size=size,
                           n_sampled=len(images), n_found=len(found), margin_q25=round(q25, 4),
                           margin_q75=round(q75, 4), measured_margin=round(median, 4)), ""


def resolve_face_set(videos: pd.DataFrame, faces: FaceConfig, cfg: FaceImagesConfig
                     ) -> tuple[FaceSetSettings | None, str]:
    """The face settings of a run's face images: stated, else estimated (when allowed), else
    (None, why). A run without face images has none to resolve: (None, "")."""
    if "media" not in videos.columns or not (videos["media"] == MEDIA_FACES).any():
        return None, ""
    if cfg.margin is not None:
        return FaceSetSettings(margin=float(cfg.margin), how=STATED, crop_size=cfg.crop_size), ""
    if not cfg.estimate:
        return None, "face settings unknown (face_images.margin not stated, face_images.estimate off)"
    ok = videos[(videos["media"] == MEDIA_FACES) & videos.get("status", pd.Series("ok", index=videos.index))
                .fillna("ok").eq("ok")]
    settings, why = estimate_face_settings(ok, faces, cfg)
    if settings is not None:
        log.info("face set: %s", settings.describe())
    else:
        log.warning("face set: %s", why)
    return settings, why


def cropping_config(faces: FaceConfig, settings: FaceSetSettings | None) -> FaceConfig:
    """The face stage's settings with the face set's margin, so video crops match its crops; a
    face set whose images are smaller than the crops the learners read gets a warning (their video
    crops are sharper than the training crops were)."""
    if settings is None:
        return faces
    if settings.crop_size and settings.crop_size < faces.crop_size:
        log.warning("face set images are %d px, the learners read %d px crops: video crops will be sharper than "
                    "the upsampled training crops", settings.crop_size, faces.crop_size)
    return replace(faces, margin=settings.margin)


def write_settings(settings: FaceSetSettings | None, folder: Path) -> None:
    """The resolved settings beside an oof run's tables (absent: none known)."""
    path = Path(folder) / SETTINGS_FILE
    if settings is None:
        path.unlink(missing_ok=True)
    else:
        atomic_write_json(settings.to_dict(), path)


def _link(src: Path, dst: Path) -> None:
    """`dst` becomes `src`'s content: a hard link where the file system allows, else a copy; a
    folder (jpg crops) file by file. Replaced atomically file by file."""
    if src.is_dir():
        dst.mkdir(parents=True, exist_ok=True)
        for f in src.iterdir():
            _link(f, dst / f.name)
        return
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:  # another file system, or links not allowed: copy
        shutil.copy2(src, tmp)
    os.replace(tmp, dst)


def merge_face_results(parts: list[FaceResult], video_ids: list[str], cache_dir: Path | str,
                       fmt: str) -> FaceResult:
    """One face cache folder holding every part's videos (their crops, faces, landmarks, markers
    linked in, the marker last), named by the parts' folders; the FaceResult in `video_ids`' order."""
    configs = [cache.read_config(p.crops_dir) for p in parts]
    sizes = {int(c["crop_size"]) for c in configs}
    formats = {c["crop_format"] for c in configs}
    if len(sizes) != 1 or len(formats) != 1:
        raise ConfigError(f"face caches to merge differ in crop size or format: {sizes}, {formats}")
    names = sorted(p.crops_dir.name for p in parts)
    merged = Path(cache_dir) / f"{MERGED_PREFIX}{config_hash(names)}"
    merged.mkdir(parents=True, exist_ok=True)
    fields = {"crop_size": sizes.pop(), "crop_format": formats.pop(), "parts": names}
    points = {int(c.get("landmarks", 0)) for c in configs}
    if len(points) == 1 and points != {0}:
        fields["landmarks"] = points.pop()
    cache.write_config(merged, fields)
    store = cache.CROP_STORES.get(fmt)
    missing = {}
    for part in parts:
        for vid in part.status["video_id"].astype(str):
            marker = cache.read_marker(part.crops_dir, vid)
            if marker is None:  # missing_file: never cached
                missing[vid] = part.status.set_index("video_id").loc[vid].to_dict() | {"video_id": vid}
                continue
            if cache.read_marker(merged, vid) == marker:
                continue
            cache.marker_path(merged, vid).unlink(missing_ok=True)
            for src, dst in ((store.path(part.crops_dir, vid), store.path(merged, vid)),
                             (cache.faces_path(part.crops_dir, vid), cache.faces_path(merged, vid)),
                             (cache.landmarks_path(part.crops_dir, vid), cache.landmarks_path(merged, vid))):
                if src.exists():
                    _link(src, dst)
                elif dst.is_file():  # this video's earlier result had faces, the current one has none
                    dst.unlink()
            _link(cache.marker_path(part.crops_dir, vid), cache.marker_path(merged, vid))
    return collect_results(list(video_ids), missing, merged)
