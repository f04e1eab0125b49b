"""benchmarks.merge_oof: joins oof runs only when they describe the same videos, folds and faces."""

from __future__ import annotations

import pandas as pd
import pytest

from benchmarks.merge_oof import MergeError, main, merge


def write_run(folder, learner, labels=(0, 1, 1), folds=(0, 1, 1)):
    folder.mkdir(parents=True)
    ids = [f"v{i}" for i in range(len(labels))]
    pd.DataFrame({"video_id": ids, "label": labels, "group": ["g0", "g1", "g1"], "split": "train"}).to_parquet(
        folder / "videos.parquet")
    pd.DataFrame({"video_id": ids, "fold": folds}).to_parquet(folder / "folds.parquet")
    pd.DataFrame({"video_id": ids, "status": "ok", "message": ""}).to_parquet(folder / "face_status.parquet")
    pd.DataFrame({"video_id": ids, "frame_idx": 0, "face_idx": 0, "learner": learner, "fold": folds,
                  "logit": 0.0, "prob": 0.5}).to_parquet(folder / "frame_preds.parquet")
    return folder


def test_merge_joins_learners_of_runs_on_the_same_folds(tmp_path):
    a, b = write_run(tmp_path / "a", "meso"), write_run(tmp_path / "b", "dlib")
    merged = merge([a, b], tmp_path / "c")
    assert sorted(merged["frame_preds"]["learner"].unique()) == ["dlib", "meso"]
    assert pd.read_parquet(tmp_path / "c" / "frame_preds.parquet").shape[0] == 6
    assert not (tmp_path / "c" / "units.parquet").exists()  # two face caches: no detector to package


@pytest.mark.parametrize("kwargs, learner, message", [
    ({"folds": (1, 0, 1)}, "dlib", "folds"), ({"labels": (1, 1, 1)}, "dlib", "videos"), ({}, "meso", "earlier run")])
def test_merge_refuses_runs_that_differ(tmp_path, kwargs, learner, message):
    a, b = write_run(tmp_path / "a", "meso"), write_run(tmp_path / "b", learner, **kwargs)
    with pytest.raises(MergeError, match=message):
        merge([a, b], tmp_path / "c")
    assert main(["--oof-dir", str(a), str(b), "--out", str(tmp_path / "c")]) == 2


def test_merge_keeps_only_the_named_learners(tmp_path, capsys):
    a, b = write_run(tmp_path / "a", "meso"), write_run(tmp_path / "b", "dlib")
    merged = merge([a, b], tmp_path / "c", keep=["dlib"])
    assert merged["frame_preds"]["learner"].unique().tolist() == ["dlib"]
    assert merge([a], tmp_path / "d", keep=["meso"])["frame_preds"].shape[0] == 3  # one run, filtered
    assert main(["--oof-dir", str(a), str(b), "--out", str(tmp_path / "e"), "--learners", "dlib", "mesonet"]) == 2
    assert "['mesonet'] are in none of the runs; they hold ['dlib', 'meso']" in capsys.readouterr().err
