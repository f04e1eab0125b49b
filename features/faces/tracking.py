"""Link per-frame face boxes into tracks, so `face_idx` names the same person through a video.

Greedy IoU matching is enough here: frames are sampled (a few per second), faces in talking-head
videos move little between samples, and two people rarely overlap. Each frame's boxes are matched to
the last box of every track seen so far (a face missed in some frames resumes its track), best IoU
first, one box per track per frame; boxes left over start new tracks. Track ids are then renumbered
by size (frames covered), then mean probability, then first appearance: face_idx 0 is the main face.
"""

from __future__ import annotations

import numpy as np


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes `a` (n, 4) and `b` (m, 4), x0 y0 x1 y1 -> (n, m)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ix0 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy0 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix1 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def greedy_pairs(iou: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """(row, col) pairs taken best IoU first, each row and column at most once, IoU >= threshold."""
    pairs, used_r, used_c = [], set(), set()
    flat = np.argsort(-iou, axis=None, kind="stable")
    for r, c in zip(*np.unravel_index(flat, iou.shape)):
        if iou[r, c] < threshold:
            break
        if r not in used_r and c not in used_c:
            pairs.append((int(r), int(c)))
            used_r.add(r)
            used_c.add(c)
    return pairs


def link_tracks(frame_idx, boxes, probs, iou_threshold: float) -> np.ndarray:
    """Track id per detection (0 = main track). Detections may come in any order of frames."""
    frame_idx = np.asarray(frame_idx)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    probs = np.asarray(probs, dtype=np.float64)
    raw = np.full(len(frame_idx), -1, dtype=np.int64)
    last_box: list[np.ndarray] = []  # per raw track: its most recent box
    for frame in np.unique(frame_idx):
        rows = np.flatnonzero(frame_idx == frame)
        if last_box:
            pairs = greedy_pairs(iou_matrix(boxes[rows], np.stack(last_box)), iou_threshold)
        else:
            pairs = []
        for r, track in pairs:
            raw[rows[r]] = track
            last_box[track] = boxes[rows[r]]
        for r in range(len(rows)):
            if raw[rows[r]] < 0:
                raw[rows[r]] = len(last_box)
                last_box.append(boxes[rows[r]])
    return _renumber(raw, frame_idx, probs)


def _renumber(raw: np.ndarray, frame_idx: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Order tracks by size desc, mean prob desc, first frame asc; return the new ids."""
    keys = []
    for track in np.unique(raw):
        member = raw == track
        keys.append((-int(member.sum()), -float(probs[member].mean()), int(frame_idx[member].min()), track))
    new_id = {track: i for i, (*_, track) in enumerate(sorted(keys))}
    return np.array([new_id[t] for t in raw], dtype=np.int64)
