"""Cross-dataset evaluation: train on one corpus, score every video of another as test videos;
the stack reports test figures per test corpus and per method, in its summary, CSV and MLflow. A
face set on one side and videos on the other mix when the face set's face settings are known
(stated or estimated): the videos are cropped with its margin."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from face_set_data import write_face_set
from mlflow.tracking import MlflowClient
from tiny_runs import tiny_oof, tiny_stack

import mlflow
from features.common import ConfigError
from features.corpus.layouts import read_videos, with_test_corpora
from features.corpus.readers import CorpusError
from features.faces.config import FaceConfig
from features.faces.extract import extract_faces
from features.faces.face_sets import SETTINGS_FILE
from features.synth import SynthConfig, generate_corpus
from pipelines import stack
from pipelines.stacking.breakdown import BY_CORPUS, BY_METHOD, breakdown_table, format_breakdown


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cross")
    a, b = tmp / "train_corpus", tmp / "other_corpus"
    generate_corpus(a, SynthConfig.tiny(n_originals=6, n_test_originals=0), progress=False)
    generate_corpus(b, SynthConfig.tiny(n_originals=2, n_test_originals=0, seed=11), progress=False)
    return a, b


def test_test_corpora_join_as_test_videos_only(corpora):
    a, b = corpora
    train, test = read_videos([a]), read_videos([b])
    both = with_test_corpora(train, test)
    is_test = both["video_id"].isin(test["video_id"])
    assert (both.loc[is_test, "split"] == "test").all() and both.loc[is_test, "label"].notna().all()
    assert set(both.loc[is_test, "group"]).isdisjoint(both.loc[~is_test, "group"])
    with pytest.raises(CorpusError, match="both the training and the test corpora"):
        with_test_corpora(train, train)


def test_cross_dataset_run_reports_per_corpus(corpora, tmp_path):
    a, b = corpora
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = tiny_oof([a], tmp_path / "w", uri, ("faces.n_frames=4", "faces.workers=1"), test_data=[b])
    videos = pd.read_parquet(run.output_dir / "videos.parquet")
    n_test = int((videos["part"] == b.name).sum())
    res = tiny_stack(run, tmp_path / "s", uri, ("nested=false",))
    assert len(res.submission) == n_test
    table = pd.read_csv(tmp_path / "s" / "test_breakdown.csv")
    mine = table[(table["by"] == BY_CORPUS) & (table["config"] == res.best.spec.name)]
    assert list(mine["value"]) == [b.name] and int(mine["n"].iloc[0]) == n_test
    assert mine["log_loss"].iloc[0] == pytest.approx(res.test_scores["test_log_loss"])
    mlflow.set_tracking_uri(uri)
    metrics = MlflowClient().get_run(res.sweep_run_id).data.metrics
    assert metrics[f"test_corpus_{b.name}_log_loss"] == pytest.approx(mine["log_loss"].iloc[0])
    assert "per corpus and method" in stack.summary(res, stack.StackConfig(nested=False), 1.0)


def test_breakdown_per_method():
    videos = pd.DataFrame({"video_id": [f"v{i}" for i in range(8)], "part": ["ff"] * 8,
                           "method": ["youtube", "Deepfakes", "youtube", "Deepfakes", "youtube", "FaceSwap",
                                      "youtube", "FaceSwap"]})
    y = np.array([0, 1, 0, 1, 0, 1, 0, np.nan])
    p = np.array([0.1, 0.9, 0.2, 0.6, 0.3, 0.4, 0.2, 0.5])
    table = breakdown_table(videos, videos["video_id"], y, {"stack": p})
    methods = table[table["by"] == BY_METHOD].set_index("value")
    assert methods.loc["FaceSwap", "n"] == 1 and methods.loc["youtube", "n"] == 4  # unlabelled row left out
    assert methods.loc["Deepfakes", "log_loss"] == pytest.approx(-np.mean(np.log([0.9, 0.6])))
    assert "FaceSwap" in format_breakdown(table)


# ---- face images on one side, videos on the other (issue 26 item 4)


@pytest.fixture(scope="module")
def face_sets(synth_faces, corpora, tmp_path_factory):
    """(face set of the 6-original corpus, face set of the 2-original one): first crops of each
    video at FaceConfig's default margin, in the Kaggle "deepfake-faces" form."""
    tmp = tmp_path_factory.mktemp("cross_faces")
    corpus, videos, faces, _ = synth_faces  # the same corpus as corpora()[0], generated elsewhere
    _, b = corpora
    b_videos = read_videos([b])
    b_faces = extract_faces(b_videos, FaceConfig(n_frames=2, crop_size=64, workers=1, det_prob=0.7), tmp / "cache",
                            progress=False)
    return (write_face_set(tmp / "a_faces", corpus, videos, faces),
            write_face_set(tmp / "b_faces", b, b_videos, b_faces))


def _video_cache_margins(work) -> list[float]:
    """The margins the run's video face caches were cropped with (imported and merged ones have none)."""
    configs = [json.loads(p.read_text()) for p in (work / "faces").glob("*/config.json")]
    return [c["margin"] for c in configs if "margin" in c and c.get("source") != "face_images"]


def test_face_images_and_videos_mix_only_with_known_face_settings(corpora, face_sets, tmp_path):
    faces_a, _ = face_sets
    with pytest.raises(CorpusError, match="face_images.margin"):
        with_test_corpora(read_videos([faces_a]), read_videos([corpora[1]]))
    both = with_test_corpora(read_videos([faces_a]), read_videos([corpora[1]]), mixed_media=True)
    assert set(both["media"]) == {"face_images", "video"}
    with pytest.raises(ConfigError, match="face images and videos in one run"):
        tiny_oof([faces_a], tmp_path / "w", f"sqlite:///{tmp_path / 'mlflow.db'}", ("face_images.estimate=false",),
                 test_data=[corpora[1]])


@pytest.mark.slow
def test_face_set_train_video_test(corpora, face_sets, tmp_path):
    """Train on a face set, test on a video corpus: the test videos are cropped with the face set's
    estimated margin, both caches merge into one, and the stack scores the test corpus."""
    faces_a, _ = face_sets
    b = corpora[1]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = tiny_oof([faces_a], tmp_path / "w", uri, ("faces.n_frames=2", "faces.workers=1"), test_data=[b])
    settings = json.loads((run.output_dir / SETTINGS_FILE).read_text())
    assert settings["how"] == "estimated" and _video_cache_margins(tmp_path / "w") == [settings["margin"]]
    videos = pd.read_parquet(run.output_dir / "videos.parquet")
    status = pd.read_parquet(run.output_dir / "face_status.parquet").merge(videos[["video_id", "split", "media"]],
                                                                          on="video_id")
    is_test = status["split"] == "test"
    assert (status.loc[is_test, "media"] == "video").all() and (status.loc[is_test, "status"] == "ok").any()
    assert run.frame_preds["video_id"].isin(status.loc[is_test, "video_id"]).any()
    res = tiny_stack(run, tmp_path / "s", uri, ("nested=false",))
    assert len(res.submission) == int(is_test.sum()) and np.isfinite(res.test_scores["test_log_loss"])
    assert res.detector_uri, res.detector_note  # and the detector crops videos with that margin too


@pytest.mark.slow
def test_video_train_face_set_test(corpora, face_sets, tmp_path):
    """Train on videos, test on a face set whose margin is stated: the training videos are cropped
    with it, and the packaged detector records it."""
    a = corpora[0]
    _, faces_b = face_sets
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = tiny_oof([a], tmp_path / "w", uri, ("faces.n_frames=2", "faces.workers=1", "face_images.margin=0.3"),
                   test_data=[faces_b])
    assert _video_cache_margins(tmp_path / "w") == [0.3]
    videos = pd.read_parquet(run.output_dir / "videos.parquet")
    n_test = int((videos["split"] == "test").sum())
    assert (videos.loc[videos["split"] == "test", "media"] == "face_images").all()
    res = tiny_stack(run, tmp_path / "s", uri, ("nested=false",))
    assert len(res.submission) == n_test and np.isfinite(res.test_scores["test_log_loss"])
    mlflow.set_tracking_uri(uri)
    local = mlflow.artifacts.download_artifacts(res.detector_uri, dst_path=str(tmp_path / "model"))
    spec = json.loads(next(Path(local).rglob("detector.json")).read_text())
    assert spec["faces"]["margin"] == 0.3 and spec["face_settings"]["how"] == "stated"
