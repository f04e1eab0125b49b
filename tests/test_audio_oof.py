"""The sound corpus and oof.py's audio stage on the smallest generated corpus: determinism, fake
kinds, silent videos with status `no_audio`, fold discipline, resuming, and NaN audio features
that survive into the stack's video features and its level-1 models."""

from __future__ import annotations

import dataclasses
import json

import av
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from sklearn.metrics import roc_auc_score

import base_learners.audio_oof as AO
import base_learners.lipsync_corr as LC
import base_learners.lipsync_oof as LO
from base_learners.audio import AudioTrainConfig, window_preds
from base_learners.lipsync import (
    LipSyncStageConfig,
    LipSyncTrainConfig,
    fit_lipsync,
    load_lipsync_net,
    mouth_patch,
    predict_lipsync_logits,
    scored_rows,
)
from base_learners.lipsync import train_predict_fold as train_lipsync_fold
from base_learners.lipsync_corr import MOUTH_LANDMARKS, RIDGE_ALPHAS, mouth_opening
from base_learners.lipsync_sync import AUDIO_ENVELOPE, IN_SYNC, OUT_OF_SYNC, TARGET_CORR, TARGET_SYNC, around_instant, per_video_centred, sync_pairs
from features.aggregate import aggregate
from features.audio import AudioConfig
from features.common import ConfigError, result_dict, to_dict
from features.contract import FRAME_PREDS_COLUMNS, REFIT_FOLD, UNIT_FILES, frames_table
from features.corpus.folds import FoldConfig, make_folds
from features.corpus.layouts import read_videos
from features.faces.config import FaceConfig
from features.faces.extract import extract_faces
from features.synth import SynthConfig, generate_corpus
from features.synth.config import FACE_SWAP, FAKE_KINDS, SoundConfig
from features.synth.corpus import SOUND_TABLE
from meta.learners import build_meta
from pipelines.config import build_config
from pipelines.oof import OOFConfig, check_lipsync_faces
from pipelines.scoring.package import PackagingError, spec_from_oof

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
             "audio.features.n_mels=32", "audio.train.epochs=2", "audio.train.channels=[4,8]",
             "audio.lipsync.enabled=true", "audio.lipsync.train.mouth_size=16", "audio.lipsync.train.epochs=2",
             "audio.lipsync.train.mouth_channels=[4]", "audio.lipsync.train.audio_channels=[4]")
    run = tiny_oof([corpus], tmp_path / "work", uri, audio)
    status = pd.read_parquet(run.output_dir / f"{AO.STATUS_TABLE}.parquet")
    videos = pd.read_parquet(run.output_dir / "videos.parquet")
    assert set(status["video_id"]) == set(videos["video_id"]) and "no_audio" in set(status["status"])
    assert set(run.frame_preds["learner"]) == {"meso4", "audio_cnn", "lipsync"}
    units = pd.read_parquet(run.output_dir / "units.parquet")
    assert (units["learner"] == "lipsync").sum() == 2 and (units["learner"] == "audio_cnn").sum() == 2  # k=2
    assert "lipsync" in run.timings
    res = tiny_stack(run, tmp_path / "stack", uri, ("sweep.subsets={no_audio: [meso4]}",))
    vf = res.video_features.set_index("video_id")
    silent = status.loc[status["status"] == "no_audio", "video_id"]
    assert vf.loc[silent, ["audio_cnn__mean", "lipsync__mean"]].isna().all().all() and len(vf) == len(videos)
    assert {"all", "audio_cnn", "lipsync", "meso4"} <= {r.spec.subset for r in res.results}  # all, and each alone
    assert res.detector_uri, res.detector_note  # packaged, whichever sound learners the best stack uses
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
    assert oof_cfg.audio.lipsync.enabled
    learners = sorted([*oof_cfg.learners, oof_cfg.audio.learner, oof_cfg.audio.lipsync.learner])
    subsets = {s.subset: s.learners for s in make_specs(sweep, learners)}
    assert set(subsets["all"]) == set(learners)
    assert set(subsets["no_audio"]) == set(oof_cfg.learners)  # neither sound learner
    assert set(subsets["no_lipsync"]) == set(oof_cfg.learners) | {oof_cfg.audio.learner}


# ---- the lip-sync learner (base_learners.lipsync, base_learners.lipsync_oof) ----------------------

LIPS_TRAIN = LipSyncTrainConfig(mouth_size=16, epochs=2, batch_size=8, mouth_channels=(4,), audio_channels=(4,),
                                embed_dim=8)
LIPS_STAGE = dataclasses.replace(STAGE, lipsync=LipSyncStageConfig(enabled=True, train=LIPS_TRAIN))
FACES = FaceConfig(n_frames=N_FRAMES, min_face_size=60, det_prob=0.7, thresholds=(0.6, 0.7, 0.6), crop_size=48, workers=1)


@pytest.fixture(scope="module")
def lips(tables, stage):
    """The face stage on the tiny corpus (one frame's face dropped: a frame without a face), then the
    lip-sync stage in the audio stage's workdir (its decoded soundtracks reused)."""
    videos, folds = tables
    work, audio = stage
    faces = extract_faces(videos, FACES, work / "faces", progress=False)
    frames = frames_table(faces.faces, videos, folds)
    speaking = frames[frames["video_id"].isin(set(audio.status.loc[audio.status["status"] == "ok", "video_id"]))]
    dropped = speaking.iloc[0][["video_id", "frame_idx"]]
    frames = frames[~((frames["video_id"] == dropped["video_id"]) & (frames["frame_idx"] == dropped["frame_idx"]))]
    result = LO.run_lipsync_stage(videos, folds, frames, faces.crops_dir, LIPS_STAGE, work, progress=False)
    return work, frames, faces.crops_dir, dropped, result


def test_lipsync_net_contract():
    cfg = LIPS_TRAIN
    crop = np.random.default_rng(0).integers(0, 255, (48, 48, 3), dtype=np.uint8)
    patch = mouth_patch(crop, cfg)
    assert patch.shape == cfg.mouth_shape == (1, 8, 16) and patch.dtype == np.float32 and 0 <= patch.min() <= patch.max() <= 1
    assert mouth_patch(crop, dataclasses.replace(cfg, grey=False)).shape == (3, 8, 16)
    with pytest.raises(ValueError, match="mouth_box"):
        LipSyncTrainConfig(mouth_box=(0.9, 0.5, 0.0, 1.0))
    n, mouths, mel = 12, torch.rand(12, *cfg.mouth_shape), torch.randn(12, 32, 26)
    y = np.arange(n) % 2
    model, history = fit_lipsync(mouths, mel, y, cfg)
    again, _ = fit_lipsync(mouths, mel, y, cfg)
    logits = predict_lipsync_logits(model, mouths, mel, batch_size=5)
    assert logits.shape == (n,) and np.isfinite(logits).all() and len(history) == cfg.epochs
    np.testing.assert_array_equal(logits, predict_lipsync_logits(again, mouths, mel, batch_size=5))  # same seed
    assert "logit_offset" in dict(model.named_buffers())
    with pytest.raises(ValueError, match="LipSyncNet wants"):
        model(mouths, mel[:, :, :10])
    with pytest.raises(ValueError, match="both the training and the predicted"):
        index = pd.DataFrame({"video_id": ["a", "a", "b"], "window_idx": [0, 1, 0], "frame_idx": [0, 5, 0]})
        train_lipsync_fold(mouths[:3], mel[:3], index, pd.Series({"a": 0.0, "b": 1.0}), ["a", "b"], ["a"], 0, cfg)


def test_lipsync_config_needs_audio_and_rejects_unknown_keys():
    assert "lipsync" not in result_dict(STAGE) and "lipsync" in result_dict(LIPS_STAGE)  # off: no key changes
    with pytest.raises(ConfigError, match="needs audio.enabled"):
        build_config(OOFConfig, "oof", "demo", ["audio.lipsync.enabled=true"])
    with pytest.raises(ConfigError, match="unknown key"):
        build_config(OOFConfig, "oof", "audio", ["audio.lipsync.train.wings=2"])
    cfg = build_config(OOFConfig, "oof", "audio", [])
    assert cfg.audio.lipsync.enabled and cfg.audio.lipsync.learner == "lipsync"


def test_lipsync_rows_statuses_and_every_video_kept(lips, stage, tables):
    _, frames, _, dropped, result = lips
    videos, folds = tables
    status = stage[1].status.set_index("video_id")["status"]
    preds = result.preds
    assert list(preds.columns) == FRAME_PREDS_COLUMNS and (preds["face_idx"] == 0).all()
    assert set(preds["learner"]) == {"lipsync"}
    assert set(preds["video_id"]) <= set(status.index[status == "ok"])  # a silent video has no rows
    assert not preds.duplicated(["video_id", "frame_idx"]).any()
    faced = frames.loc[frames["face_idx"] == 0, ["video_id", "frame_idx"]]
    assert len(preds.merge(faced, on=["video_id", "frame_idx"])) == len(preds)  # only frames with a face
    mine = preds[preds["video_id"] == dropped["video_id"]]
    assert len(mine) and dropped["frame_idx"] not in set(mine["frame_idx"])  # the faceless frame: no row
    face_status = pd.DataFrame({"video_id": videos["video_id"], "status": "ok", "message": ""})
    vf = aggregate(AO.with_audio_preds(stage[1].preds, preds), face_status, videos, folds).set_index("video_id")
    assert len(vf) == len(videos)  # every video stays
    silent = status.index[status == "no_audio"]
    assert len(silent) and vf.loc[silent, "lipsync__mean"].isna().all()
    assert vf.loc[status.index[status == "ok"], "lipsync__mean"].notna().all()


def test_lipsync_units_train_only_on_other_folds_and_resume(lips, tables, monkeypatch):
    work, frames, crops_dir, _, first = lips
    videos, folds = tables
    fold_of = folds.set_index("video_id")["fold"]
    assert len(first.units) == fold_of.nunique()
    for info in first.units:
        trained = fold_of.reindex(info["train_video_ids"])
        assert trained.notna().all() and (trained != info["fold"]).all()  # no held-out video trains it
    oof = first.preds[first.preds["fold"].notna()]
    assert (oof["fold"].astype(int).to_numpy() == fold_of.reindex(oof["video_id"]).astype(int).to_numpy()).all()
    test = first.preds[first.preds["fold"].isna()]
    assert len(test) and fold_of.reindex(test["video_id"]).isna().all()

    def boom(*args, **kwargs):
        raise AssertionError("a finished lipsync unit was trained again")

    monkeypatch.setattr(LO, "train_predict_fold", boom)
    again = LO.run_lipsync_stage(videos, folds, frames, crops_dir, LIPS_STAGE, work, progress=False)
    assert all(u["cached"] for u in again.units)
    pd.testing.assert_frame_equal(again.preds, first.preds)


def test_packaging_takes_the_lipsync_learners_fold_models(tmp_path):
    """Its folds go to the AudioSpec (the soundtrack learner's empty when the ensemble leaves it out);
    a refit detector is refused, as oof.py trains no refit model of a sound learner."""
    config = to_dict(OOFConfig(audio=LIPS_STAGE))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    for k in (0, 1):
        (tmp_path / f"u{k}").mkdir()
        (tmp_path / f"u{k}" / UNIT_FILES[0]).write_bytes(b"weights")
    units = pd.DataFrame({"learner": ["lipsync", "lipsync"], "fold": [0, 1], "key": ["k", "k"], "dir": ["u0", "u1"]})
    spec, dirs = spec_from_oof(tmp_path, units, ["lipsync"], {}, [], {}, "fold_models")
    assert spec.audio.lipsync_folds == [0, 1] and spec.audio.folds == [] and spec.learners == {}
    assert spec.sound_learners() == ["lipsync"] == spec.score_learners() and ("lipsync", 1) in dirs
    with pytest.raises(PackagingError, match="fold models only"):
        spec_from_oof(tmp_path, units.assign(fold=REFIT_FOLD), ["lipsync"], {}, [], {}, "refit")


@pytest.mark.parametrize("lips_stage", [LIPS_STAGE, "sync", "corr"])
def test_the_detector_builds_lipsync_nets_for_the_input_the_stage_pairs(lips, tables, lips_stage):
    """input_shape (what the packaged detector builds its fold nets for) is the shape of the log-mel
    paired_samples gives, with the whole window or only the span around the instant."""
    work, frames, crops_dir, _, _ = lips
    videos, folds = tables
    cfg = {"sync": SYNC_STAGE, "corr": CORR_STAGE}.get(lips_stage, lips_stage)
    samples = LO.paired_samples(videos, folds, frames, crops_dir, cfg, work)
    assert len(samples.table) and tuple(samples.mel.shape[1:]) == LO.input_shape(cfg)
    silent = videos[~videos["video_id"].isin(set(samples.table["video_id"]))].head(1)
    none = LO.predict_unseen(silent, frames, crops_dir, cfg, {}, work / "unseen")  # no sound: no rows
    assert none.empty and list(none.columns) == FRAME_PREDS_COLUMNS


# ---- the lip-sync learner's self-supervised target (base_learners.lipsync_sync) -------------------

SYNC_TRAIN = dataclasses.replace(LIPS_TRAIN, target=TARGET_SYNC, audio_input=AUDIO_ENVELOPE, audio_span_s=0.1,
                                 per_video_centred=True)
SYNC_STAGE = dataclasses.replace(STAGE, lipsync=LipSyncStageConfig(enabled=True, train=SYNC_TRAIN))


def test_sync_negatives_are_misaligned_and_deterministic():
    vids = np.repeat(["a", "b", "c"], 6)
    centres = np.tile(np.linspace(0.25, 1.05, 6), 3)
    rows = np.arange(12)  # videos a and b: c is not a training video
    pairs = sync_pairs(vids, centres, rows, min_gap_s=0.3, negatives=2, seed=3)
    again = sync_pairs(vids, centres, rows, min_gap_s=0.3, negatives=2, seed=3)
    for field_ in ("mouth_rows", "window_rows", "target"):
        np.testing.assert_array_equal(getattr(pairs, field_), getattr(again, field_))
    assert not np.array_equal(pairs.window_rows, sync_pairs(vids, centres, rows, 0.3, 2, seed=4).window_rows)
    pos, neg = pairs.target == IN_SYNC, pairs.target == OUT_OF_SYNC
    assert pos.sum() == neg.sum() == 2 * len(rows)  # every mouth here has a window 0.3 s away
    assert (pairs.mouth_rows[pos] == pairs.window_rows[pos]).all()
    m, w = pairs.mouth_rows[neg], pairs.window_rows[neg]
    assert (m != w).all() and (vids[m] == vids[w]).all() and set(w) <= set(rows)
    assert (np.abs(centres[m] - centres[w]) >= 0.3).all()
    close = sync_pairs(vids, np.tile(np.linspace(0.25, 0.45, 6), 3), rows, 0.3, 2, seed=3)
    assert len(close.target) == 0  # no window far enough away, no other video allowed: no pair
    cross = sync_pairs(vids, centres, rows, 0.3, 2, cross_share=1.0, seed=3)
    m, w = cross.mouth_rows[cross.target == OUT_OF_SYNC], cross.window_rows[cross.target == OUT_OF_SYNC]
    assert (vids[m] != vids[w]).all() and set(w) <= set(rows)
    with pytest.raises(ValueError, match="target must be one of"):
        LipSyncTrainConfig(target="fake")
    assert "target" not in result_dict(LIPS_TRAIN) and result_dict(SYNC_TRAIN)["target"] == TARGET_SYNC  # in the key


def rerun_lipsync(lips, tables, stage):
    """The lip-sync stage with other settings on the `lips` fixture's faces and audio cache."""
    work, frames, crops_dir, _, _ = lips
    videos, folds = tables
    return LO.run_lipsync_stage(videos, folds, frames, crops_dir, stage, work, progress=False)


@pytest.fixture(scope="module")
def lips_sync(lips, tables):
    return rerun_lipsync(lips, tables, SYNC_STAGE)


def test_sync_units_train_only_on_real_videos_of_other_folds(lips_sync, lips, tables):
    videos, folds = tables
    label = videos.set_index("video_id")["label"]
    fold_of = folds.set_index("video_id")["fold"]
    assert len(lips_sync.units) == fold_of.nunique()
    assert {u["key"] for u in lips_sync.units}.isdisjoint({u["key"] for u in lips[4].units})  # target in the key
    for info in lips_sync.units:
        trained = info["train_video_ids"]
        assert trained and fold_of.reindex(trained).notna().all() and (fold_of.reindex(trained) != info["fold"]).all()
        assert (label.reindex(trained) == 0).all()  # no fake, no held-out, no test video
        assert info["n_train"] == sum(lips_sync.n_samples.get(v, 0) for v in trained)  # their samples only
    preds = lips_sync.preds
    assert list(preds.columns) == FRAME_PREDS_COLUMNS and np.isfinite(preds["logit"]).all()
    oof = preds[preds["fold"].notna()]
    assert (oof["fold"].astype(int).to_numpy() == fold_of.reindex(oof["video_id"]).astype(int).to_numpy()).all()
    assert set(preds[["video_id", "frame_idx"]].itertuples(index=False)) == set(
        lips[4].preds[["video_id", "frame_idx"]].itertuples(index=False))  # the same aligned frames as `label`


def test_sync_target_refuses_missing_centres():
    mouths, mel = torch.rand(4, *SYNC_TRAIN.mouth_shape), torch.randn(4, 32, 26)
    index = pd.DataFrame({"video_id": ["a", "a", "b", "b"], "window_idx": [0, 1, 0, 1], "frame_idx": [0, 9, 0, 9]})
    with pytest.raises(ValueError, match="window centre"):
        train_lipsync_fold(mouths, mel, index, pd.Series({"a": 0.0, "b": 1.0}), ["a"], ["b"], 0, SYNC_TRAIN)


def test_window_centres_sit_inside_the_track(lips, tables):
    work, frames, crops_dir, _, _ = lips
    samples = LO.paired_samples(*tables, frames, crops_dir, LIPS_STAGE, work)  # whole windows
    half = STAGE.features.window_s / 2
    centres = pd.Series(samples.centre_s, index=samples.table.index)
    assert np.isfinite(centres).all() and (centres >= half - 1e-9).all()  # shifted in at the start
    for _, rows in samples.table.groupby("video_id"):
        assert centres[rows.sort_values("frame_idx").index].is_monotonic_increasing  # later frame, later window


def test_audio_around_the_instant_and_per_video_centring():
    mel = torch.arange(2 * 3 * 11, dtype=torch.float32).reshape(2, 3, 11)  # column c holds c (+ offsets)
    out = around_instant(mel, np.array([0.0, -0.05]), hop_s=0.01, span_s=0.04)  # instants at columns 5 and 0
    assert out.shape == (2, 3, 5)
    np.testing.assert_array_equal(out[0, 0].numpy(), [3, 4, 5, 6, 7])
    np.testing.assert_array_equal(out[1, 0].numpy() - mel[1, 0, 0].numpy(), [0, 0, 0, 1, 2])  # edge repeated
    x = torch.tensor([[1.0], [3.0], [10.0]])
    np.testing.assert_array_equal(per_video_centred(x, np.array(["a", "a", "b"])).numpy().ravel(), [-1, 1, 0])


# ---- the correlation target (base_learners.lipsync_corr) ------------------------------------------

CORR_TRAIN = dataclasses.replace(LIPS_TRAIN, target=TARGET_CORR, audio_span_s=0.1)
CORR_STAGE = dataclasses.replace(STAGE, lipsync=LipSyncStageConfig(enabled=True, train=CORR_TRAIN))


def talking(n_videos: int, n_frames: int, seed: int = 0, listener: bool = False):
    """(mouths, log-mel, index, labels): each video's mouth opens (its lower rows darken) with its
    loudness, over a face of its own; every third video is a lip-sync fake, its sound another draw.
    With `listener` each frame also holds a second face whose mouth moves on its own, and in every
    other video the speaker is that frame's face_idx 1 (index gains face_idx)."""
    rng = np.random.default_rng(seed)
    shape = CORR_TRAIN.mouth_shape
    opening = np.zeros(shape)
    opening[:, shape[1] // 2:, :] = -0.4
    mouths, mels, rows, labels = [], [], [], {}
    for v in range(n_videos):
        vid, fake = f"v{v:02d}", v % 3 == 0
        said = rng.random(n_frames)
        heard = rng.random(n_frames) if fake else said
        moving = [said, rng.random(n_frames)] if listener else [said]
        if listener and v % 2:
            moving.reverse()  # the speaker is face 1
        for face, track in enumerate(moving):
            face_rgb = rng.random(shape)
            mouths.append(face_rgb + track[:, None, None, None] * opening + 0.02 * rng.standard_normal((n_frames, *shape)))
            mels.append(np.broadcast_to(np.log(heard + 0.05)[:, None, None], (n_frames, 32, 11)))
            rows += [(vid, i, 5 * i, face) for i in range(n_frames)]
        labels[vid] = float(fake)
    index = pd.DataFrame(rows, columns=["video_id", "window_idx", "frame_idx", "face_idx"])
    index = index if listener else index.drop(columns="face_idx")
    return (torch.tensor(np.concatenate(mouths), dtype=torch.float32), torch.tensor(np.concatenate(mels), dtype=torch.float32),
            index, pd.Series(labels))


def test_corr_map_learns_from_reals_only_and_ranks_lip_sync_fakes(tmp_path):
    mouths, mel, index, labels = talking(36, 6)
    vids = sorted(labels.index)
    train, held = vids[:24], vids[24:]
    model, rows, history = train_lipsync_fold(mouths, mel, index, labels, train, held, 0, CORR_TRAIN)
    assert list(rows.columns) == list(window_preds(index.head(1), np.zeros(1), 0, "lipsync").columns)
    assert set(rows["video_id"]) == set(held) and (rows.groupby("video_id")["logit"].nunique() == 1).all()
    per_video = rows.groupby("video_id")["logit"].first()
    assert roc_auc_score(labels.reindex(per_video.index), per_video) == 1.0  # lip-sync fakes above every real
    chosen = history[-1]
    assert chosen["mean_r_real"] > 0.9 > 0.5 > chosen["mean_r_fake"] and chosen["slope"] < 0
    assert [h["alpha"] for h in history[:-1]] == list(RIDGE_ALPHAS) and chosen["n_real_videos"] == 16
    # the map is fitted on the training reals alone: other mouths for the fakes and the held-out
    # videos leave it as it was (only the calibration reads the fakes)
    other = mouths.clone()
    moved = np.flatnonzero(~index["video_id"].isin([v for v in train if labels[v] == 0]))
    other[moved] = torch.rand(len(moved), *CORR_TRAIN.mouth_shape)
    again, _, _ = train_lipsync_fold(other, mel, index, labels, train, held, 0, CORR_TRAIN)
    assert torch.equal(again.coef, model.coef) and torch.equal(again.intercept, model.intercept)
    # deterministic, and a unit's checkpoint is data (weights_only) that scores as the fitted model
    torch.save(model.state_dict(), tmp_path / "model.pt")
    loaded = load_lipsync_net(tmp_path / "model.pt", 32, 11, CORR_TRAIN)
    at = np.flatnonzero(index["video_id"].isin(held))
    np.testing.assert_array_equal(predict_lipsync_logits(loaded, mouths[at], mel[at], video_ids=index["video_id"].to_numpy()[at]),
                                  rows["logit"].to_numpy())
    # a video with too few frames has no correlation: no rows, not a made-up verdict
    two = np.flatnonzero(index["video_id"].isin(held[:1]) & (index["window_idx"] < 2))
    none = scored_rows(model, mouths[two], mel[two], index.iloc[two], 0, "lipsync", 8)
    assert none.empty


def test_corr_target_needs_a_span_some_reals_and_video_ids():
    with pytest.raises(ValueError, match="audio_span_s > 0"):
        LipSyncTrainConfig(target=TARGET_CORR)
    mouths, mel, index, labels = talking(6, 6)
    with pytest.raises(ValueError, match="in 2 or more groups, got 1 in 1"):
        train_lipsync_fold(mouths, mel, index, labels, ["v00", "v01"], ["v02"], 0, CORR_TRAIN)
    model, _, _ = train_lipsync_fold(mouths, mel, index, labels, ["v00", "v01", "v02", "v03"], ["v04"], 0, CORR_TRAIN)
    with pytest.raises(ValueError, match="scores whole videos"):
        predict_lipsync_logits(model, mouths, mel)
    assert result_dict(CORR_TRAIN)["target"] == TARGET_CORR  # in the unit key


@pytest.fixture(scope="module")
def lips_corr(lips, tables):
    return rerun_lipsync(lips, tables, CORR_STAGE)


def test_corr_units_keep_fold_discipline_and_give_a_video_one_verdict(lips_corr, lips, tables):
    videos, folds = tables
    fold_of = folds.set_index("video_id")["fold"]
    assert len(lips_corr.units) == fold_of.nunique()
    for info in lips_corr.units:
        trained = fold_of.reindex(info["train_video_ids"])
        assert trained.notna().all() and (trained != info["fold"]).all()
    preds = lips_corr.preds
    assert list(preds.columns) == FRAME_PREDS_COLUMNS and np.isfinite(preds["logit"]).all()
    assert (preds.groupby("video_id")["logit"].nunique() == 1).all()
    assert set(preds["video_id"]) <= set(lips[4].preds["video_id"])  # only videos with paired frames


def test_mouth_opening_from_landmarks_is_the_inner_gap_over_the_width():
    points = np.zeros((2, 68, 2), np.float32)
    points[:, 60], points[:, 64] = (10, 50), (30, 50)  # inner corners 20 px apart
    for upper, lower in zip((61, 62, 63), (67, 66, 65)):
        points[0, upper], points[0, lower] = (20, 48), (20, 52)  # a 4 px gap
        points[1, upper], points[1, lower] = (20, 50), (20, 50)  # closed
    np.testing.assert_allclose(mouth_opening(points), [0.2, 0.0])
    np.testing.assert_allclose(mouth_opening(points * 3), [0.2, 0.0], atol=1e-6)  # scale-free
    with pytest.raises(ValueError, match="68, 2"):
        mouth_opening(np.zeros((1, 5, 2)))
    with pytest.raises(ValueError, match="target corr only"):
        LipSyncTrainConfig(mouth_input=MOUTH_LANDMARKS)
    with pytest.raises(ValueError, match="mouth_input must be one of"):
        LipSyncTrainConfig(target=TARGET_CORR, audio_span_s=0.1, mouth_input="lips")
    cfg = build_config(OOFConfig, "oof", "audio", [])  # the profile's lip-sync learner reads landmarks
    assert cfg.audio.lipsync.train.mouth_input == MOUTH_LANDMARKS and cfg.faces.landmarks == 68
    check_lipsync_faces(cfg)
    with pytest.raises(ConfigError, match="needs faces.landmarks=68"):
        check_lipsync_faces(build_config(OOFConfig, "oof", "audio", ["faces.landmarks=5"]))


CORR_LANDMARKS = dataclasses.replace(STAGE, lipsync=LipSyncStageConfig(
    enabled=True, train=dataclasses.replace(CORR_TRAIN, mouth_input=MOUTH_LANDMARKS)))


def test_corr_reads_mouth_openings_from_the_face_caches_landmarks(lips, tables):
    """With 68-point landmarks in the face cache the samples are mouth openings, one number a
    frame, on the frames the pixel path pairs; a cache without landmarks is refused, naming it."""
    work, frames, crops_dir, _, _ = lips
    videos, folds = tables
    with pytest.raises(ValueError, match="needs the face stage's 68-point landmarks"):
        LO.paired_samples(videos, folds, frames, crops_dir, CORR_LANDMARKS, work)
    faces = extract_faces(videos, dataclasses.replace(FACES, landmarks=68), work / "faces68", progress=False)
    marks = frames_table(faces.faces, videos, folds)
    samples = LO.paired_samples(videos, folds, marks, faces.crops_dir, CORR_LANDMARKS, work)
    assert tuple(samples.mouths.shape[1:]) == (1, 1, 1) and len(samples.table)
    assert torch.isfinite(samples.mouths).all() and (samples.mouths >= 0).all() and samples.mouths.std() > 0
    result = LO.run_lipsync_stage(videos, folds, marks, faces.crops_dir, CORR_LANDMARKS, work, progress=False)
    assert np.isfinite(result.preds["logit"]).all() and (result.preds.groupby("video_id")["logit"].nunique() == 1).all()
    assert {u["key"] for u in result.units}.isdisjoint(u["key"] for u in lips[4].units)


def test_corr_never_scores_a_training_video_by_a_map_fitted_on_its_own_group(monkeypatch):
    """A face swap keeps its original's mouth and sound: the cross-fitted r that calibrates the
    unit must come from maps fitted on other groups' reals only."""
    mouths, mel, index, labels = talking(24, 6)
    mouths = mouths + 1e-3 * torch.arange(len(mouths), dtype=torch.float32).reshape(-1, 1, 1, 1)  # each row told apart
    vids = sorted(labels.index)
    groups = pd.Series({v: f"g{i // 3}" for i, v in enumerate(vids)})  # a fake (v % 3 == 0) with two reals
    row_group = index["video_id"].map(groups).to_numpy()
    calls = []

    class Spy(LC.Ridge):
        def fit(self, X, y):
            self.fitted = set(np.round(X[:, 0], 9))
            return super().fit(X, y)

        def predict(self, X):
            calls.append((self.fitted, set(np.round(X[:, 0], 9))))
            return super().predict(X)

    monkeypatch.setattr(LC, "Ridge", Spy)
    x = LC.mouth_features(mouths, index["video_id"].to_numpy())
    group_of = dict(zip(np.round(x[:, 0], 9), row_group))
    LC.fit_corr(mouths, mel, index["video_id"].to_numpy(), labels, np.arange(len(index)), CORR_TRAIN.mouth_shape, groups)
    assert len(calls) == len(LC.RIDGE_ALPHAS) * LC.INNER_SPLITS
    assert all({group_of[k] for k in fit}.isdisjoint(group_of[k] for k in scored) for fit, scored in calls)


def test_corr_finds_the_speaker_among_the_faces():
    """Two faces a frame, one speaking: the video's r is its most-in-sync face's, so reals whose
    speaker is face 1 score as reals; one row a frame."""
    mouths, mel, index, labels = talking(36, 8, seed=1, listener=True)
    vids = sorted(labels.index)
    train, held = vids[:24], vids[24:]
    model, rows, history = train_lipsync_fold(mouths, mel, index, labels, train, held, 0, CORR_TRAIN)
    assert not rows.duplicated(["video_id", "frame_idx"]).any() and len(rows) == 8 * len(held)
    per_video = rows.groupby("video_id")["logit"].first()
    assert roc_auc_score(labels.reindex(per_video.index), per_video) == 1.0
    assert history[-1]["mean_r_real"] > 0.9  # the speaker's r, whichever face speaks
    one_track = index.drop(columns="face_idx")  # both faces as one track: the listener drowns the speaker
    blind, _, blind_history = train_lipsync_fold(mouths, mel, one_track, labels, train, held, 0, CORR_TRAIN)
    assert blind_history[-1]["mean_r_real"] < 0.9
