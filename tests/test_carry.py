"""Boxes carried between detections (FaceConfig.detect_every) against fresh detections, on the
generator's moving faces: the promise the face stage makes when it skips MTCNN on a frame."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from features.faces.config import FaceConfig
from features.faces.decode import read_frames
from features.faces.detect import build_detector, detect_faces
from features.faces.tracking import iou_matrix

CARRY_MEAN_IOU = 0.8  # stated: carried boxes overlap the fresh detection this much on average
CARRY_MIN_IOU = 0.5  # and never less
N_VIDEOS = 6
TRUE_FACE_IOU = 0.4  # a box overlapping a true face this much is that face (as bench.faces counts hits)


def test_carried_boxes_stay_close_to_fresh_detections(synth_faces):
    corpus, videos, _, _ = synth_faces
    cfg = FaceConfig(n_frames=12, crop_size=64, workers=1, det_prob=0.7)
    every, carry = cfg, replace(cfg, detect_every=3)
    detector = build_detector(cfg)
    truth = pd.read_parquet(corpus / "ground_truth.parquet")
    truth = {k: g[["x0", "y0", "x1", "y1"]].to_numpy() for k, g in truth[truth["in_frame"]].groupby(["video_id", "frame_idx"])}
    ious, carried, frames_seen = [], 0, 0
    for row in videos.head(N_VIDEOS).itertuples():
        decoded = read_frames(Path(row.root) / row.path, cfg.n_frames)
        fresh = detect_faces(detector, decoded.images, every)
        skipped = detect_faces(detector, decoded.images, carry)
        frames_seen += len(decoded.images)
        for idx, f, c in zip(decoded.frame_idx, fresh, skipped):
            if not c.carried:
                continue
            carried += 1
            if len(f.probs):  # against the fresh detection of the same frame
                assert len(c.probs) == len(f.probs)  # carrying neither adds nor drops a face
                ious += iou_matrix(f.boxes, c.boxes).max(axis=1).tolist()
            else:  # MTCNN missed this frame; the carried box must still be a true face
                assert (iou_matrix(c.boxes, truth[(row.video_id, idx)]).max(axis=1) >= TRUE_FACE_IOU).all()
    assert ious, "no carried frame had a fresh detection to compare with"
    assert carried >= frames_seen // 3  # most non-keyframes were carried, not re-detected
    assert np.mean(ious) >= CARRY_MEAN_IOU and min(ious) >= CARRY_MIN_IOU, (np.mean(ious), min(ious))


def test_a_face_that_appears_between_keyframes_is_detected_not_carried():
    """No face in the keyframes' detections, one in between: carrying must not hide it."""

    class Stub:
        min_face_size = 20

        def detect(self, batch):
            out_b, out_p = [], []
            for im in batch:
                face = im[0, 0, 0] == 255
                out_b.append(np.array([[10.0, 10.0, 40.0, 40.0]]) if face else None)
                out_p.append(np.array([0.99]) if face else None)
            return out_b, out_p

    frames = [np.zeros((64, 64, 3), np.uint8) for _ in range(7)]
    frames[2][0, 0] = 255  # a face only in frame 2, between keyframes 0 and 3
    cfg = FaceConfig(detect_every=3, detect_scale=1.0, min_face_size=20, det_prob=0.5)
    dets = detect_faces(Stub(), frames, cfg)
    assert [len(d.probs) for d in dets] == [0, 0, 1, 0, 0, 0, 0]
    assert not any(d.carried for d in dets)
