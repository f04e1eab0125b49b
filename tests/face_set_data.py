"""Shared helper of the face-set tests (not a test module): a face set in the Kaggle "deepfake-faces"
form (metadata.csv and faces_224/<stem>.jpg) written from the crops of a generated corpus's face
cache, so its crops have the face settings that cache was made with (a known margin)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2

from features.corpus.face_csv import CSV_NAME
from features.faces.extract import load_crops

HEADER = "videoname,original_width,original_height,label,original\n"
IMAGE_DIR = "faces_224"


def write_face_set(root: Path, corpus: Path, videos, faces) -> Path:
    """The first crop of each video of `faces` (a FaceResult of `corpus`) as a face set at `root`."""
    meta = json.loads((Path(corpus) / "metadata.json").read_text())
    (root / IMAGE_DIR).mkdir(parents=True)
    lines = [HEADER]
    for vid in videos["video_id"]:
        crops = load_crops(faces.crops_dir, vid)
        if not len(crops):
            continue
        cv2.imwrite(str(root / IMAGE_DIR / vid.replace(".mp4", ".jpg")), cv2.cvtColor(crops[0], cv2.COLOR_RGB2BGR))
        side = crops.shape[1]
        lines.append(f"{vid},{side},{side},{meta[vid]['label']},{meta[vid].get('original') or ''}\n")
    (root / CSV_NAME).write_text("".join(lines))
    return root
