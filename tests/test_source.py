"""The lazy crop source (features.faces.source): the face cache read per crop instead of stacked.

Two promises: every row reads back exactly the crop the cache holds for it (both formats, any
row order, sub-sources, across a pickle), and level-0 units trained and predicted from it give the
same tables, bit for bit on CPU, as from the crops stacked in memory.
"""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pandas as pd
import pytest
from unit_data import CROPS_KEY, LEARNERS, SIZE, TRAIN, make_crops, make_tables, write_cache

from base_learners.oof import run_oof
from base_learners.registry import build_learner
from base_learners.train import predict_logits
from features.contract import frames_table
from features.faces import cache
from features.faces.extract import load_crops
from features.faces.source import CropSource


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    """frames (crop_idx reversed within each video, so rows and file order differ), their crops in
    memory, and a cache of them per format."""
    faces, videos, folds = make_tables()
    faces["crop_idx"] = faces.groupby("video_id")["crop_idx"].transform(lambda s: s[::-1].to_numpy())
    frames = frames_table(faces, videos, folds)
    crops = make_crops(frames)
    dirs = {}
    for fmt in cache.CROP_STORES.names():
        dirs[fmt] = tmp_path_factory.mktemp(f"cache-{fmt}")
        write_cache(dirs[fmt], frames, crops, fmt)
    return frames, crops, dirs


@pytest.mark.parametrize("fmt", ["npy", "jpg"])
def test_every_row_reads_back_the_crop_the_cache_holds(cached, fmt):
    frames, crops, dirs = cached
    source = CropSource.from_table(frames, dirs[fmt])
    assert len(source) == len(frames) and source.shape == crops.shape and source.dtype == np.uint8
    for row, (video_id, idx) in enumerate(zip(frames["video_id"], frames["crop_idx"])):
        np.testing.assert_array_equal(source[row], load_crops(dirs[fmt], video_id)[idx])
    if fmt == "npy":  # lossless: the crops as they went in
        np.testing.assert_array_equal(np.asarray(source), crops)


def test_sub_sources_keep_rows_and_survive_a_pickle(cached):
    frames, crops, dirs = cached
    source = CropSource.from_table(frames, dirs["npy"])
    rows = np.array([7, 0, 7, len(frames) - 1])
    mask = (frames["fold"] == 1).fillna(False).to_numpy()
    for sub, want in [(source[rows], crops[rows]), (source[mask], crops[mask]), (source[3:9], crops[3:9]),
                      (source[rows][1:], crops[rows][1:])]:
        np.testing.assert_array_equal(np.asarray(sub), want)
    again = pickle.loads(pickle.dumps(source[rows]))
    np.testing.assert_array_equal(np.asarray(again), crops[rows])
    assert len(pickle.dumps(source)) < crops.nbytes / 10  # rows travel, not pixels


def test_a_cache_that_does_not_fit_the_table_is_refused_naming_the_file(cached, tmp_path):
    frames, crops, dirs = cached
    too_far = frames.assign(crop_idx=frames["crop_idx"] + 1)
    with pytest.raises(ValueError, match=r"v00\.mp4\.npy: 3 crops, the faces table wants crop 3"):
        CropSource.from_table(too_far, dirs["npy"])
    other = tmp_path / "other"
    write_cache(other, frames, crops)
    np.save(other / "v01.mp4.npy", np.zeros((3, SIZE + 1, SIZE + 1, 3), np.uint8))
    with pytest.raises(ValueError, match=r"v01\.mp4\.npy: crops of shape \(3, 33, 33, 3\)"):
        CropSource.from_table(frames, other)
    cache.marker_path(other, "v02.mp4").unlink()
    with pytest.raises(FileNotFoundError, match="no finished face extraction for video 'v02.mp4'"):
        CropSource.from_table(frames[frames["video_id"] == "v02.mp4"], other)


def test_units_from_the_lazy_source_match_the_in_memory_array(cached, tmp_path):
    """Same units, same settings: the source (also pickled to a pool of 2 workers) gives the very
    frame_preds the stacked array gives."""
    frames, crops, dirs = cached
    source = CropSource.from_table(frames, dirs["npy"])
    in_memory = run_oof(frames, crops, LEARNERS, {"meso4": TRAIN}, tmp_path / "a", CROPS_KEY, progress=False)
    lazy = run_oof(frames, source, LEARNERS, {"meso4": TRAIN}, tmp_path / "b", CROPS_KEY, progress=False,
                   workers=2)
    assert not any(r.cached for r in lazy.units)
    pd.testing.assert_frame_equal(lazy.frame_preds, in_memory.frame_preds)


def test_prediction_through_dataloader_workers_reads_the_same_crops(cached):
    frames, crops, dirs = cached
    source = CropSource.from_table(frames, dirs["npy"])
    model = build_learner(LEARNERS["meso4"])
    cfg = dataclasses.replace(TRAIN, num_workers=2, predict_batch_size=16)
    np.testing.assert_array_equal(predict_logits(model, source, cfg), predict_logits(model, crops, TRAIN))
