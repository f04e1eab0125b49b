"""DeepfakeBench face sets (a dataset JSON of per-video frame folders): the reader, and a whole
oof.py + stack.py run on a tiny set made from generated crops in that form."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest
from tiny_runs import tiny_oof, tiny_stack

import mlflow
from features.corpus.deepfakebench import read_deepfakebench
from features.corpus.folds import FoldConfig, check_folds, make_folds
from features.corpus.layouts import detect_layout, read_videos
from features.corpus.options import CorpusOptions
from features.corpus.readers import CorpusError
from features.faces.extract import load_crops

DATASET = "FaceForensics++"
FRAMES_PER_VIDEO = 3


def _frames(root, rel_folder, n=FRAMES_PER_VIDEO, crops=None):
    folder = root / rel_folder
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        img = crops[i % len(crops)] if crops is not None else rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f"{i:03d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    # the JSON lists them under the preprocessing machine's path, as DeepfakeBench's do
    return [f"/elsewhere/datasets/{rel_folder}/{i:03d}.png" for i in range(n)]


def _entry(label, frames):
    return {"label": label, "frames": frames}


def _bench(root, videos: dict[str, tuple[str, str]]):
    """videos: name -> (label name, split); writes frames and FaceForensics++.json."""
    data: dict = {DATASET: {}}
    for name, (label_name, split) in videos.items():
        kind = "original_sequences/youtube" if "real" in label_name else f"manipulated_sequences/{label_name}"
        frames = _frames(root, f"{DATASET}/{kind}/c23/frames/{name}")
        data[DATASET].setdefault(label_name, {}).setdefault(split, {}).setdefault("c23", {})[name] = \
            _entry(label_name, frames)
    (root / f"{DATASET}.json").write_text(json.dumps(data))
    return root


BASIC = {"000": ("FF-real", "train"), "001": ("FF-real", "train"), "002": ("FF-real", "test"),
         "004": ("FF-real", "train"), "000_001": ("FF-DF", "train"), "001_000": ("FF-DF", "train"),
         "002_003": ("FF-DF", "test"), "004_005": ("FF-DF", "train")}


def test_reader_groups_by_the_identities_in_the_names(tmp_path):
    root = _bench(tmp_path / "dfb", BASIC)
    assert detect_layout(root) == "deepfakebench"
    videos = read_videos([root]).set_index("video_id")
    assert videos.loc["FF-DF/000_001", "label"] == 1 and videos.loc["FF-real/000", "label"] == 0
    assert videos.loc["FF-DF/002_003", "split"] == "test" and videos.loc["FF-DF/000_001", "compression"] == "c23"
    assert videos.loc["FF-DF/000_001", "path"] == f"{DATASET}/manipulated_sequences/FF-DF/c23/frames/000_001"
    g = videos["group"]
    assert g["FF-real/000"] == g["FF-real/001"] == g["FF-DF/000_001"] != g["FF-real/002"] == g["FF-DF/002_003"]
    v = read_videos([root])
    check_folds(v, make_folds(v, FoldConfig(k=2)))


def test_identity_links_cannot_be_dropped_here(tmp_path):
    root = _bench(tmp_path / "dfb", BASIC)
    with pytest.raises(CorpusError, match="would leave no group"):
        read_videos([root], options=CorpusOptions(link_identities=False))


def test_a_video_in_several_splits_keeps_train(tmp_path):
    root = _bench(tmp_path / "dfb", BASIC)
    data = json.loads((root / f"{DATASET}.json").read_text())
    data[DATASET]["FF-real"]["test"]["c23"]["000"] = data[DATASET]["FF-real"]["train"]["c23"]["000"]
    (root / f"{DATASET}.json").write_text(json.dumps(data))
    videos = read_deepfakebench([root]).set_index("video_id")
    assert videos.loc["FF-real/000", "split"] == "train" and len(videos) == len(BASIC)


def test_bad_names_and_missing_frames(tmp_path):
    root = _bench(tmp_path / "dfb", {**BASIC, "clip_a": ("FF-DF", "train")})
    with pytest.raises(CorpusError, match="clip_a: the video name does not say whose faces"):
        read_deepfakebench([root])
    root = _bench(tmp_path / "dfb2", BASIC)
    data = json.loads((root / f"{DATASET}.json").read_text())
    data[DATASET]["FF-real"]["train"]["c23"]["006"] = _entry("FF-real", ["/nowhere/006/000.png"])
    (root / f"{DATASET}.json").write_text(json.dumps(data))
    with pytest.raises(CorpusError, match="1 video file.*006: no frame image found"):
        read_deepfakebench([root])
    kept = read_deepfakebench([root], on_missing="status").set_index("video_id")
    assert kept.loc["FF-real/006", "status"] == "missing_file"


@pytest.fixture(scope="module")
def bench_set(synth_faces, tmp_path_factory):
    """Generated crops in DeepfakeBench's form: original i is `00i`, its fakes `00i_1jj` (a donor
    id that is no original, so each original keeps its own group)."""
    tmp = tmp_path_factory.mktemp("dfbset")
    _, _, res, meta = synth_faces
    originals = sorted(v for v, m in meta.items() if m["label"] == "REAL")
    names = {o: f"{i:03d}" for i, o in enumerate(originals)}
    for j, (v, m) in enumerate(sorted((v, m) for v, m in meta.items() if m["label"] == "FAKE")):
        names[v] = f"{names[m['original']]}_{100 + j:03d}"
    root, data = tmp / "dfb", {DATASET: {}}
    for vid, name in names.items():
        crops = load_crops(res.crops_dir, vid)
        label_name = "FF-real" if meta[vid]["label"] == "REAL" else "FF-DF"
        kind = "original_sequences/youtube" if label_name == "FF-real" else "manipulated_sequences/Deepfakes"
        frames = _frames(root, f"{DATASET}/{kind}/c23/frames/{name}", crops=crops) if len(crops) else ["/x/0.png"]
        data[DATASET].setdefault(label_name, {}).setdefault("train", {}).setdefault("c23", {})[name] = \
            _entry(label_name, frames)
    (root / f"{DATASET}.json").write_text(json.dumps(data))
    return root, len(names)


def test_bench_set_runs_through_oof_and_stack(bench_set, tmp_path):
    root, n_videos = bench_set
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = tiny_oof([root], tmp_path / "work", uri, ("faces.n_frames=2", "on_missing=status"))
    faces = pd.read_parquet(run.output_dir / "faces.parquet")
    assert faces.groupby("video_id")["frame_idx"].nunique().max() == 2  # n_frames of each frame folder
    assert len(pd.read_parquet(run.output_dir / "face_status.parquet")) == n_videos
    res = tiny_stack(run, tmp_path / "s", uri)
    assert len(res.video_features) == n_videos and np.isfinite(res.best.metrics["cv_log_loss"])


def test_cross_dataset_onto_a_face_set_reports_per_method(bench_set, tmp_path):
    """Train on one face set, score another as test videos: per-corpus and per-method figures."""
    root, _ = bench_set
    other = _bench(tmp_path / "other_set", {"010": ("FF-real", "train"), "011": ("FF-real", "train"),
                                            "010_011": ("FF-DF", "train"), "012_013": ("FF-FS", "train")})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = tiny_oof([root], tmp_path / "w", uri, ("faces.n_frames=2", "train.epochs=1", "on_missing=status"),
                   test_data=[other])
    res = tiny_stack(run, tmp_path / "s", uri, ("nested=false",))
    table = res.test_breakdown[res.test_breakdown["config"] == res.best.spec.name]
    assert set(table.loc[table["by"] == "method", "value"]) == {"FF-real", "FF-DF", "FF-FS"}
    assert set(table.loc[table["by"] == "corpus", "value"]) == {"other_set"}
    mlflow.set_tracking_uri(uri)
    metrics = mlflow.MlflowClient().get_run(res.sweep_run_id).data.metrics
    assert "test_method_FF-FS_log_loss" in metrics and "test_corpus_other_set_log_loss" in metrics
