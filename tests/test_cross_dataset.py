"""Cross-dataset evaluation: train on one corpus, score every video of another as test videos;
the stack reports test figures per test corpus and per method, in its summary, CSV and MLflow."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from tiny_runs import tiny_oof, tiny_stack

import mlflow
from features.corpus.layouts import read_videos, with_test_corpora
from features.corpus.readers import CorpusError
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
