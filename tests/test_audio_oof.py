"""The sound corpus and oof.py's audio stage on the smallest generated corpus: determinism, fake
kinds, silent videos with status `no_audio`, fold discipline, resuming, and NaN audio features
that survive into the stack's video features and its level-1 models."""

from __future__ import annotations

import json

import av
import numpy as np
import pandas as pd
import pytest

import base_learners.audio_oof as AO
from base_learners.audio import AudioTrainConfig
from features.aggregate import aggregate
from features.audio import AudioConfig
from features.common import result_dict
from features.corpus.folds import FoldConfig, make_folds
from features.corpus.layouts import read_videos
from features.synth import SynthConfig, generate_corpus
from features.synth.config import FACE_SWAP, FAKE_KINDS, SoundConfig
from features.synth.corpus import SOUND_TABLE
from meta.learners import build_meta
from pipelines.oof import OOFConfig

SEED = 6  # with these settings: one silent train group, the test group speaks (tiny plan, checked below)
SOUND = SoundConfig(enabled=True, silent_share=0.25)
CFG = SynthConfig.tiny(seed=SEED, n_originals=4, n_test_originals=1, n_frames=20, fakes_per_original=(2, 2), sound=SOUND)
STAGE = AO.AudioStageConfig(enabled=True, features=AudioConfig(window_s=0.5, min_duration_s=0.5, n_mels=32),
                            train=AudioTrainConfig(epochs=2, batch_size=8, channels=(4, 8)))
N_FRAMES = 4  # windows per video


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return generate_corpus(tmp_path_factory.mktemp("sound") / "c", CFG, progress=False)


@pytest.fixture(scope="module")
def tables(corpus):
    videos = read_videos([str(corpus)], "auto")
    return videos, make_folds(videos, FoldConfig(k=3))


@pytest.fixture(scope="module")
def stage(tables, tmp_path_factory):
    videos, folds = tables
    work = tmp_path_factory.mktemp("work")
    return work, AO.run_audio_stage(videos, folds, STAGE, work, N_FRAMES, progress=False)


def video_packets(path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(c.streams.video[0]) if p.dts is not None]


def test_sound_off_changes_no_key():
    assert "sound" not in result_dict(SynthConfig()) and "audio" not in result_dict(OOFConfig())
    assert "sound" in result_dict(CFG) and "audio" in result_dict(OOFConfig(audio=STAGE))


def test_sound_corpus_is_deterministic_and_records_kinds(corpus, tmp_path):
    again = generate_corpus(tmp_path / "again", CFG.replace(workers=2), progress=False)  # forked workers too
    for path in sorted(corpus.glob("*.mp4")):
        assert (again / path.name).read_bytes() == path.read_bytes(), path.name
    sounds = pd.read_parquet(corpus / SOUND_TABLE)
    assert sounds.equals(pd.read_parquet(again / SOUND_TABLE))
    meta = json.loads((corpus / "metadata.json").read_text())
    assert set(sounds["video_id"]) == set(meta)
    fakes = sounds[sounds["fake_kind"] != ""]
    assert set(fakes["fake_kind"]) <= set(FAKE_KINDS) and len(set(fakes["fake_kind"])) > 1
    for row in fakes.itertuples():
        entry = meta[row.video_id]
        assert entry.get("fake_kind", row.fake_kind) == row.fake_kind  # train entries carry it
        assert "fake_kind" not in entry or entry["split"] == "train"  # test entries stay bare
    silent = sounds[~sounds["has_audio"]]
    assert len(silent) and set(silent["fake_kind"]) <= {"", FACE_SWAP}  # silence is no label cue


def test_audio_fakes_keep_the_originals_pixels(corpus):
    meta = json.loads((corpus / "metadata.json").read_text())
    sounds = pd.read_parquet(corpus / SOUND_TABLE).set_index("video_id")
    for name, kind in sounds["fake_kind"].items():
        original = meta[name].get("original")
        if kind and kind != FACE_SWAP and original:
            assert video_packets(corpus / name) == video_packets(corpus / original), (name, kind)


def test_statuses_account_for_every_video(stage, tables, corpus):
    _, result = stage
    videos, _ = tables
    status = result.status.set_index("video_id")
    assert set(status.index) == set(videos["video_id"])
    has_audio = pd.read_parquet(corpus / SOUND_TABLE).set_index("video_id")["has_audio"]
    expected = has_audio.map({True: "ok", False: "no_audio"})
    assert (status["status"] == expected.reindex(status.index)).all()
    assert set(result.preds["video_id"]) == set(status.index[status["status"] == "ok"])
    assert (status.loc[status["status"] == "ok", "n_windows"] == N_FRAMES).all()


def test_units_train_only_on_other_folds(stage, tables):
    _, result = stage
    videos, folds = tables
    fold_of = folds.set_index("video_id")["fold"]
    assert len(result.units) == fold_of.nunique()
    for info in result.units:
        trained = fold_of.reindex(info["train_video_ids"])
        assert trained.notna().all() and (trained != info["fold"]).all()
    oof = result.preds[result.preds["fold"].notna()]
    assert (oof["fold"].astype(int).to_numpy() == fold_of.reindex(oof["video_id"]).astype(int).to_numpy()).all()
    test = result.preds[result.preds["fold"].isna()]
    assert len(test) and fold_of.reindex(test["video_id"]).isna().all()


def test_rerun_loads_every_unit(stage, tables, monkeypatch):
    work, first = stage
    videos, folds = tables

    def boom(*args, **kwargs):
        raise AssertionError("a finished audio unit was trained again")

    monkeypatch.setattr(AO, "train_predict_fold", boom)
    again = AO.run_audio_stage(videos, folds, STAGE, work, N_FRAMES, progress=False)
    assert all(u["cached"] for u in again.units)
    pd.testing.assert_frame_equal(again.preds, first.preds)


def test_nan_audio_features_survive_into_the_stack(stage, tables):
    _, result = stage
    videos, folds = tables
    rng = np.random.default_rng(0)
    face = pd.DataFrame({"video_id": videos["video_id"].astype(str), "frame_idx": 0, "face_idx": 0,
                         "learner": "meso4", "fold": folds.set_index("video_id")["fold"].reindex(videos["video_id"]).to_numpy()})
    face["logit"] = rng.normal(size=len(face)) + 2.0 * videos["label"].fillna(0).astype(float).to_numpy()
    face["prob"] = 1.0 / (1.0 + np.exp(-face["logit"]))
    preds = AO.with_audio_preds(face.astype({"fold": "Int64"}), result.preds)
    status = pd.DataFrame({"video_id": videos["video_id"], "status": "ok", "message": ""})
    vf = aggregate(preds, status, videos, folds)
    assert len(vf) == len(videos)
    silent = result.status.loc[result.status["status"] == "no_audio", "video_id"]
    rows = vf.set_index("video_id").loc[silent]
    assert rows["audio_cnn__mean"].isna().all() and rows["meso4__mean"].notna().all()
    train = vf[vf["fold"].notna()].reset_index(drop=True)
    y = train["label"].astype(int).to_numpy()
    for meta in ("logreg", "lgbm", "caruana"):
        model = build_meta(meta).fit(train, y, groups=train["group"].to_numpy())
        p = model.predict_proba(train)[:, 1]
        assert np.isfinite(p).all(), meta


@pytest.mark.slow
def test_oof_and_stack_carry_the_audio_learner(corpus, tmp_path):
    """The whole of oof.py with `audio.enabled` and stack.py with a `no_audio` subset, smallest settings."""
    from tests.tiny_runs import tiny_oof, tiny_stack

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    audio = ("audio.enabled=true", "audio.features.window_s=0.5", "audio.features.min_duration_s=0.5",
             "audio.features.n_mels=32", "audio.train.epochs=2", "audio.train.channels=[4,8]")
    run = tiny_oof([corpus], tmp_path / "work", uri, audio)
    status = pd.read_parquet(run.output_dir / f"{AO.STATUS_TABLE}.parquet")
    videos = pd.read_parquet(run.output_dir / "videos.parquet")
    assert set(status["video_id"]) == set(videos["video_id"]) and "no_audio" in set(status["status"])
    assert set(run.frame_preds["learner"]) == {"meso4", "audio_cnn"}
    res = tiny_stack(run, tmp_path / "stack", uri)
    vf = res.video_features.set_index("video_id")
    silent = status.loc[status["status"] == "no_audio", "video_id"]
    assert vf.loc[silent, "audio_cnn__mean"].isna().all() and len(vf) == len(videos)
    assert {"all", "audio_cnn", "meso4"} <= {r.spec.subset for r in res.results}  # with audio, and each alone
    assert np.isfinite(res.submission.iloc[:, -1].astype(float)).all()
    from argparse import Namespace

    from benchmarks import audio as bench

    table = bench.report(Namespace(oof_dir=str(run.output_dir), replicates=20, seed=0), res)
    kinds = pd.read_parquet(corpus / SOUND_TABLE).query("fake_kind != ''")
    train_kinds = set(kinds.loc[kinds["video_id"].isin(videos.loc[videos["label"] == 1, "video_id"]), "fake_kind"])
    assert set(table["rows"]) == {"all"} | train_kinds  # one block per kind among the labelled fakes
    assert {"audio_cnn", "meso4", bench.WITH_AUDIO} <= set(table["config"])


def test_the_audio_profile_sweeps_a_stack_without_audio():
    from meta.selection import make_specs
    from pipelines import stack
    from pipelines.config import build_config

    oof_cfg = build_config(OOFConfig, "oof", "audio", [])
    assert oof_cfg.audio.enabled and oof_cfg.synth.sound.enabled
    sweep = build_config(stack.StackConfig, "stack", "audio", []).sweep
    learners = sorted([*oof_cfg.learners, oof_cfg.audio.learner])
    subsets = {s.subset: s.learners for s in make_specs(sweep, learners)}
    assert set(subsets["all"]) == set(learners)
    assert set(subsets["no_audio"]) == set(oof_cfg.learners)
