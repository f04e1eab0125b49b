"""Out-of-fold units (base_learners.oof) on a small synthetic face table: no corpus, no MTCNN.

The crops carry a learnable signal (fakes get a bright red square), so the models are real models
trained by the real `fit`; only the face stage is replaced by a table built here.
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from unit_data import CROPS_KEY, LEARNERS, TRAIN, kill_during_second_unit, make_crops, make_tables

from base_learners.oof import OOFIntegrityError, check_oof, merge_train_config, plan_units, run_oof, unit_seed
from base_learners.registry import load_unit_model
from base_learners.train import predict_logits
from features.contract import FACE_KEY, frames_table


@pytest.fixture(scope="module")
def data():
    faces, videos, folds = make_tables()
    frames = frames_table(faces, videos, folds)
    return frames, make_crops(frames)


@pytest.fixture(scope="module")
def first_run(data, tmp_path_factory):
    frames, crops = data
    units_dir = tmp_path_factory.mktemp("units")
    result = run_oof(frames, crops, LEARNERS, {"meso4": TRAIN}, units_dir, CROPS_KEY, progress=False)
    return units_dir, result


def test_every_labelled_face_predicted_once_by_a_model_that_never_saw_it(data, first_run):
    frames, _ = data
    _, result = first_run
    fp = result.frame_preds
    oof = fp[fp["fold"].notna()]
    labelled = frames[frames["fold"].notna()]
    assert len(oof) == len(labelled)
    assert not oof.duplicated(FACE_KEY).any()
    merged = oof.merge(labelled, on=FACE_KEY, suffixes=("", "_true"), validate="one_to_one")
    assert (merged["fold"] == merged["fold_true"]).all()
    fold_of = dict(zip(frames["video_id"], frames["fold"]))
    for r in result.units:
        trained = set(r.info["train_video_ids"])
        predicted = set(oof.loc[oof["fold"] == r.unit.fold, "video_id"])
        assert trained and predicted and not trained & predicted
        assert all(fold_of[v] != r.unit.fold for v in trained)  # training folds exclude fold k
        assert all(pd.notna(fold_of[v]) for v in trained)  # test videos are never trained on
    assert np.allclose(fp["prob"], 1 / (1 + np.exp(-fp["logit"])))


def test_check_oof_raises_on_missing_duplicated_or_leaked_rows(data, first_run):
    frames, _ = data
    _, result = first_run
    fp = result.frame_preds
    check_oof(fp, frames, result.units)  # the real table passes
    oof_idx = fp.index[fp["fold"].notna()]
    broken = {
        "missing": fp.drop(index=oof_idx[0]),
        "duplicated": pd.concat([fp, fp.loc[[oof_idx[0]]]]),
        "wrong fold": fp.assign(fold=fp["fold"].where(fp.index != oof_idx[0], 1 - fp.loc[oof_idx[0], "fold"])),
        "missing test row": fp.drop(index=fp.index[fp["fold"].isna()][0]),
    }
    for what, table in broken.items():
        with pytest.raises(OOFIntegrityError):
            check_oof(table, frames, result.units)
    first = result.units[0]
    held_out = list(fp.loc[fp["fold"] == first.unit.fold, "video_id"][:1])
    leaky_unit = dataclasses.replace(first, info={**first.info, "train_video_ids": first.info["train_video_ids"] + held_out})
    with pytest.raises(OOFIntegrityError, match="trained on"):
        check_oof(fp, frames, [leaky_unit] + result.units[1:])


def test_test_rows_are_the_mean_logit_of_the_fold_models(data, first_run):
    frames, crops = data
    _, result = first_run
    test_rows = np.flatnonzero(frames["fold"].isna().to_numpy())
    per_model = []
    for r in result.units:
        model = load_unit_model(r.unit.dir, LEARNERS["meso4"])
        logits = predict_logits(model, crops[test_rows], TRAIN)
        stored = r.preds[r.preds["role"] == "test"]["logit"].to_numpy()
        np.testing.assert_allclose(logits, stored, rtol=1e-5, atol=1e-5)  # the checkpoint is the model
        per_model.append(logits.astype(np.float64))
    assert len(per_model) == 2 and not np.allclose(per_model[0], per_model[1])
    fp = result.frame_preds
    test = fp[fp["fold"].isna()].merge(frames.loc[test_rows, FACE_KEY].reset_index(drop=True)
                                       .assign(row=range(len(test_rows))), on=FACE_KEY).sort_values("row")
    np.testing.assert_allclose(test["logit"].to_numpy(), np.mean(per_model, axis=0), rtol=1e-5, atol=1e-5)


class _CountEpochs:
    def __init__(self):
        self.epochs = 0

    def on_epoch(self, epoch, metrics):
        self.epochs += 1

    def on_done(self, result):
        pass


def test_rerun_trains_nothing_and_gives_the_same_table(data, first_run):
    frames, crops = data
    units_dir, first = first_run
    mtimes = {p: p.stat().st_mtime_ns for p in units_dir.rglob("*") if p.is_file()}
    counter = _CountEpochs()

    @contextmanager
    def scope(unit):
        yield counter

    again = run_oof(frames, crops, LEARNERS, {"meso4": TRAIN}, units_dir, CROPS_KEY, unit_scope=scope, progress=False)
    assert counter.epochs == 0 and all(r.cached for r in again.units)
    assert {p: p.stat().st_mtime_ns for p in units_dir.rglob("*") if p.is_file()} == mtimes
    pd.testing.assert_frame_equal(again.frame_preds, first.frame_preds, check_exact=True)


def test_unit_pool_gives_the_same_table_as_one_process(data, first_run, tmp_path):
    """Two worker processes train the units bit-identically to the sequential run (one torch thread
    each), write the same unit folders, and report every unit to its hooks once, after the fact."""
    frames, crops = data
    units_dir, first = first_run
    seen = []

    @contextmanager
    def scope(unit):
        seen.append(unit)
        yield _CountEpochs()

    pooled = run_oof(frames, crops, LEARNERS, {"meso4": TRAIN}, tmp_path, CROPS_KEY, unit_scope=scope,
                     progress=False, workers=2)
    pd.testing.assert_frame_equal(pooled.frame_preds, first.frame_preds, check_exact=True)
    assert not any(r.cached for r in pooled.units)
    assert sorted(u.fold for u in seen) == [0, 1]
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.pt")) == \
        sorted(p.relative_to(units_dir) for p in units_dir.rglob("*.pt"))


def test_changed_inputs_or_config_change_the_unit_keys(data):
    frames, _ = data
    base = plan_units(frames, LEARNERS, {"meso4": TRAIN}, Path("u"), CROPS_KEY)
    lr = plan_units(frames, LEARNERS, {"meso4": merge_train_config(TRAIN, {"lr": 0.5}, "t")}, Path("u"), CROPS_KEY)
    relabel = frames.assign(label=frames["label"].where(frames.index != 0, 1 - frames.loc[0, "label"]))
    lab = plan_units(relabel, LEARNERS, {"meso4": TRAIN}, Path("u"), CROPS_KEY)
    crops = plan_units(frames, LEARNERS, {"meso4": TRAIN}, Path("u"), "other-crops")
    keys = [{u.key for u in units} for units in (base, lr, lab, crops)]
    assert all(not keys[0] & other for other in keys[1:])
    assert len({u.seed for u in base}) == len(base) and base[0].seed == unit_seed(TRAIN.seed, "meso4", 0)


def test_merge_train_config_rejects_unknown_keys():
    merged = merge_train_config(TRAIN, {"lr": 0.01, "augment": {"p_flip": 0.0}}, "train_overrides.meso4")
    assert merged.lr == 0.01 and merged.augment.p_flip == 0.0 and merged.epochs == TRAIN.epochs
    with pytest.raises(ValueError, match="valid"):
        merge_train_config(TRAIN, {"learning_rate": 0.1}, "train_overrides.meso4")


def run_units(units_dir: Path, scope) -> None:
    """The run the kill test interrupts (run in a subprocess by `kill_during_second_unit`)."""
    faces, videos, folds = make_tables()
    frames = frames_table(faces, videos, folds)
    run_oof(frames, make_crops(frames), LEARNERS, {"meso4": TRAIN}, units_dir, CROPS_KEY, unit_scope=scope, progress=False)


def test_resume_after_kill_matches_an_uninterrupted_run(data, first_run, tmp_path):
    frames, crops = data
    _, uninterrupted = first_run
    units_dir = tmp_path / "units"
    done = kill_during_second_unit("test_oof", units_dir, tmp_path)
    assert len(done) == 1  # exactly the first unit finished before the kill
    resumed = run_oof(frames, crops, LEARNERS, {"meso4": TRAIN}, units_dir, CROPS_KEY, progress=False)
    assert [r.cached for r in resumed.units] == [True, False]
    pd.testing.assert_frame_equal(resumed.frame_preds, uninterrupted.frame_preds, check_exact=True)
