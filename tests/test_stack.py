"""pipelines/stack.py end to end on a hand-made oof output (no CNN, no video decoding).

The oof tables are built here: 60 labelled videos in groups of three (an original and two fakes)
over 3 grouped folds, 10 test videos (one without a face), three learners whose frame logits
carry the label with different noise, and a test_labels.csv answer file in the corpus root.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from scipy.special import expit

import mlflow
from features.common import from_dict
from meta import nested
from meta.selection import CalibrationFamily, EnsembleSpec, build_ensemble
from meta.toy import toy_video_features
from pipelines import stack
from pipelines.stacking import report
from pipelines.tracking import OOF_EXPERIMENT, STACK_EXPERIMENT, setup_tracking

LEARNERS = {"alpha": 1.5, "beta": 0.8, "gamma": 0.3}  # name -> logit separation of the label
N_GROUPS, N_TEST_GROUPS, GROUP_SIZE, K = 20, 5, 3, 3
N_FRAMES = 6
NO_FACE_VIDEO = "test_v000.mp4"
STATUS_COLUMNS = ["video_id", "status", "message", "n_frames", "n_faces"]
SMALL_SWEEP = {  # every meta-learner, two calibrations, LOO subsets raw only: fast, still complete
    "metas": ["lgbm", "logreg", "caruana"], "calibrations": ["none", "platt"],
    "loo_calibrations": ["none"], "meta_params": {"lgbm": {"n_estimators": 30, "min_child_samples": 5}},
}


def _videos(root, n_groups_train) -> pd.DataFrame:
    rows = []
    for split, n_groups, offset in (("train", n_groups_train, 0), ("test", N_TEST_GROUPS, n_groups_train)):
        for g in range(n_groups):
            for j in range(GROUP_SIZE if split == "train" else 2):
                vid = f"{'test_' if split == 'test' else ''}v{(g * GROUP_SIZE + j):03d}.mp4"
                original = None if j == 0 else rows[-j]["video_id"]
                rows.append({"video_id": vid, "path": f"{split}/{vid}", "root": str(root),
                             "label": int(j > 0), "original": original, "split": split,
                             "part": split, "group": offset + g})
    videos = pd.DataFrame(rows)
    test_labels = videos.loc[videos["split"] == "test", ["video_id", "label"]]
    test_labels = test_labels.rename(columns={"video_id": "filename"})
    test_labels.to_csv(root / "test_labels.csv", index=False)
    videos["label"] = pd.array(np.where(videos["split"] == "test", pd.NA, videos["label"]), dtype="Int8")
    videos["original"] = videos["original"].astype("string")
    return videos


def make_oof_dir(tmp, seed: int = 0, n_groups: int = N_GROUPS, learners: dict | None = None):
    """Write videos/folds/faces/face_status/frame_preds parquet like pipelines/oof.py does."""
    rng = np.random.default_rng(seed)
    learners = LEARNERS if learners is None else learners
    root, out = tmp / "corpus", tmp / "oof"
    root.mkdir(parents=True)
    out.mkdir(parents=True)
    videos = _videos(root, n_groups)
    truth = pd.read_csv(root / "test_labels.csv").set_index("filename")["label"]
    label = videos["label"].astype("float").fillna(videos["video_id"].map(truth)).to_numpy(int)
    fold = pd.array(np.where(videos["split"] == "train", videos["group"] % K, pd.NA), dtype="Int64")
    folds = pd.DataFrame({"video_id": videos["video_id"], "fold": fold})
    faces, preds, status = [], [], []
    for i, vid in enumerate(videos["video_id"]):
        if vid == NO_FACE_VIDEO:
            status.append((vid, "no_face", "no face in any sampled frame", N_FRAMES, 0))
            continue
        n_faces = 1 + (i % 7 == 0)  # a few videos with a second face track
        frame = np.repeat(np.arange(N_FRAMES), n_faces)
        face = np.tile(np.arange(n_faces), N_FRAMES)
        faces.append(pd.DataFrame({"video_id": vid, "frame_idx": frame, "face_idx": face,
                                   "x0": 10.0, "y0": 10.0, "x1": 50.0, "y1": 50.0,
                                   "det_prob": rng.uniform(0.9, 1.0, len(frame)),
                                   "crop_idx": np.arange(len(frame))}))
        status.append((vid, "ok", "", N_FRAMES, len(frame)))
        for name, strength in learners.items():
            logit = (2 * label[i] - 1) * strength + rng.normal(0, 1.5) + rng.normal(0, 1.0, len(frame))
            preds.append(pd.DataFrame({"video_id": vid, "frame_idx": frame, "face_idx": face,
                                       "learner": name, "fold": fold[i], "logit": logit,
                                       "prob": expit(logit)}))
    tables = {"videos": videos, "folds": folds, "faces": pd.concat(faces, ignore_index=True),
              "face_status": pd.DataFrame(status, columns=STATUS_COLUMNS),
              "frame_preds": pd.concat(preds, ignore_index=True)}
    tables["frame_preds"]["fold"] = tables["frame_preds"]["fold"].astype("Int64")
    for name, table in tables.items():
        table.to_parquet(out / f"{name}.parquet", index=False)
    return out, tables


def _cfg(tmp, oof_dir=None, uri=None, **kw) -> stack.StackConfig:
    data = {"oof_dir": str(oof_dir) if oof_dir else None, "sweep": SMALL_SWEEP, "n_jobs": 1,
            "tracking_uri": uri or _uri(tmp), "output_dir": str(tmp / "out"), **kw}
    return from_dict(stack.StackConfig, data)


def _uri(tmp) -> str:
    return f"sqlite:///{(tmp / 'mlruns' / 'mlflow.db').as_posix()}"


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    """One sweep for the module; its tracking store is shared (creating one takes seconds)."""
    tmp = tmp_path_factory.mktemp("stack")
    oof_dir, tables = make_oof_dir(tmp)
    cfg = _cfg(tmp, oof_dir)
    result = stack.run(cfg, progress=True)
    return tmp, tables, cfg, result


@pytest.mark.parametrize("meta", ["lgbm", "logreg", "caruana"])
def test_calibration_family_equals_separately_fitted_ensembles(meta):
    vf = toy_video_features(n_videos=90, no_face_every=15, seed=1)
    X, y, groups = vf, vf["label"].to_numpy(int), vf["group"].to_numpy()
    spec = EnsembleSpec(meta, "none", "cv", ("good", "weak", "noise"), "all")
    sweep = from_dict(stack.SweepConfig, {"meta_params": {"lgbm": {"n_estimators": 20, "min_child_samples": 5}}})
    cals = ("none", "platt", "isotonic", "temperature")
    family = CalibrationFamily(build_ensemble(spec, sweep, 3, 0), cals).fit(X, y, groups=groups)
    for cal in cals:
        alone = build_ensemble(spec, sweep, 3, 0).set_params(calibration=cal).fit(X, y, groups=groups)
        assert family.members_[cal].clip_bounds_ == alone.clip_bounds_
        got, want = family.members_[cal].predict_stages(X), alone.predict_stages(X)
        for stage in want:
            np.testing.assert_allclose(got[stage], want[stage], rtol=0, atol=1e-12)


def test_submission_holds_every_test_video_once(done):
    tmp, tables, _, result = done
    sub = pd.read_csv(result.output_dir / "submission.csv")
    assert list(sub.columns) == ["filename", "label"]
    test_ids = tables["folds"].loc[tables["folds"]["fold"].isna(), "video_id"]
    assert sorted(sub["filename"]) == sorted(test_ids)
    assert sub["filename"].is_unique
    assert ((sub["label"] > 0) & (sub["label"] < 1)).all()


def test_no_face_video_gets_the_training_prior_and_says_so(done):
    _, tables, _, result = done
    diag = pd.read_csv(result.output_dir / "diagnostics.csv").set_index("video_id")
    prior = tables["videos"]["label"].dropna().astype(float).mean()
    row = diag.loc[NO_FACE_VIDEO]
    assert row["status"] == "no_face" and bool(row["imputed"]) and row["n_faces"] == 0
    assert "prior" in row["message"]
    assert row["prob"] == pytest.approx(np.clip(prior, *result.best.ensemble.clip_bounds_ or (0, 1)))
    assert not diag.drop(index=NO_FACE_VIDEO)["imputed"].any()
    sub = pd.read_csv(result.output_dir / "submission.csv").set_index("filename")
    assert sub.loc[NO_FACE_VIDEO, "label"] == pytest.approx(row["prob"])


def test_comparison_table_has_baselines_and_every_stage(done):
    _, _, _, result = done
    table = pd.read_csv(result.output_dir / "comparison.csv")
    for col in ("log_loss", "balanced_log_loss", "auc", "accuracy", "brier", "ece", "test_log_loss"):
        assert col in table.columns
    configs = set(table["config"])
    assert {f"single:{l}" for l in LEARNERS} | {"average[all]"} <= configs
    for meta in SMALL_SWEEP["metas"]:  # raw once per meta-learner, then each calibration's stages
        stages = {cal: sorted(table.loc[table["config"] == f"{meta}+{cal}+clip_cv[all]", "stage"])
                  for cal in SMALL_SWEEP["calibrations"]}
        assert stages == {"none": ["clipped", "raw"], "platt": ["calibrated", "clipped"]}
    assert not table.duplicated(["config", "stage"]).any()
    assert table["log_loss"].is_monotonic_increasing
    assert len(table) == len(result.table)
    b = report.baselines(table)
    singles = table[table["config"].str.startswith("single:")]
    assert b["single_log_loss"] == singles["log_loss"].min()
    assert b["stack_log_loss"] == pytest.approx(result.best.metrics["cv_log_loss"])  # final stage
    assert b["stack_config"] == result.best.spec.name
    assert b["stack_over_single"] == pytest.approx(b["stack_log_loss"] / b["single_log_loss"])
    assert b["average_log_loss"] == table.loc[table["config"] == "average[all]", "log_loss"].item()
    assert "x best single" in report.format_baselines(b)
    assert "average_log_loss" not in report.baselines(table[table["config"] != "average[all]"])
    assert report.baselines(table[table["meta"] == "single"]) == {}


def test_mlflow_runs_one_per_configuration(done):
    tmp, _, cfg, result = done
    mlflow.set_tracking_uri(cfg.tracking_uri)
    client = MlflowClient()
    exp = client.get_experiment_by_name(STACK_EXPERIMENT)
    runs = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{result.sweep_run_id}'")
    assert len(runs) == len(result.results) == len(result.run_ids)
    metric_sets = set()
    for r in runs:
        tags = r.data.tags
        assert tags["fakestack.stage"] == "stack" and tags["fakestack.oof_run_id"] == "none"
        for key in ("fakestack.learners", "fakestack.meta", "fakestack.calibration", "fakestack.clip"):
            assert tags[key]
        arts = {a.path for a in client.list_artifacts(r.info.run_id, "plots")}
        assert {"plots/reliability.png", "plots/roc.png"} <= arts
        if tags["fakestack.meta"] == "lgbm":
            assert "feature_importance.csv" in {a.path for a in client.list_artifacts(r.info.run_id)}
        if tags["fakestack.kind"] == "config":
            metric_sets.add(frozenset(r.data.metrics))
    assert len(metric_sets) == 1
    same_names = next(iter(metric_sets))
    assert {"cv_log_loss", "raw_cv_log_loss", "calibrated_cv_log_loss", "test_log_loss"} <= same_names
    assert (tmp / "mlruns" / "artifacts").is_dir()  # artifacts stay under the test's folder
    parent = {a.path for a in client.list_artifacts(result.sweep_run_id)}
    assert {"submission.csv", "diagnostics.csv", "comparison.csv", "video_features.parquet",
            "config.yaml"} <= parent
    sweep = client.get_run(result.sweep_run_id).data.metrics
    assert sweep["stack_over_single"] == pytest.approx(report.baselines(result.table)["stack_over_single"])
    assert "stack_over_average" in sweep


def test_logged_model_loads_and_matches_the_ensemble(done):
    _, _, cfg, result = done
    mlflow.set_tracking_uri(cfg.tracking_uri)
    model = mlflow.pyfunc.load_model(result.model_uri)
    vf = result.video_features
    got = np.asarray(model.predict(vf), dtype=float).ravel()
    want = result.best.ensemble.predict_proba(vf)[:, 1]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    test = vf["fold"].isna().to_numpy()
    sub = pd.read_csv(result.output_dir / "submission.csv")
    np.testing.assert_allclose(got[test], sub["label"].to_numpy(), atol=1e-12)


def test_test_split_scored_beside_cv(done):
    _, _, _, result = done
    assert np.isfinite(result.test_scores["test_log_loss"])
    assert np.isfinite(result.best.metrics["cv_log_loss"])
    # the best is the lowest final-stage CV log loss among all configurations
    assert result.best.metrics["cv_log_loss"] == min(r.metrics["cv_log_loss"] for r in result.results)


def test_main_applies_overrides_and_rejects_unknown_keys(done, tmp_path, capsys):
    oof_dir, _ = make_oof_dir(tmp_path)
    uri = done[2].tracking_uri
    base = ["--oof-dir", str(oof_dir), "--tracking-uri", uri]
    res = stack.main(base + ["--set", "sweep.metas=[logreg]", "--set", "sweep.calibrations=[none]",
                             "--set", "sweep.leave_one_out=false", "--set", "n_jobs=1", "--set", "plots=false",
                             "--set", f"output_dir={tmp_path / 'out'}"])
    assert {r.spec.meta for r in res.results} == {"single", "average", "logreg"}
    assert (tmp_path / "out" / "submission.csv").exists()
    capsys.readouterr()
    for bad, message in ((["--set", "sweep.no_such_key=1"], "no_such_key.*valid"),
                         (["--set", "test_time=later"], "test_time 'later' is not one of")):
        with pytest.raises(SystemExit) as exit_info:  # a user's mistake: one message, exit status 2
            stack.main(base + bad)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert re.search(message, err) and "Traceback" not in err
    with pytest.raises(SystemExit):
        stack.main(["--oof-dir", str(tmp_path / "nowhere"), "--tracking-uri", uri])


def test_reads_the_latest_oof_run_from_mlflow(done, tmp_path):
    oof_dir, _ = make_oof_dir(tmp_path)
    sweep = {"metas": ["caruana"], "calibrations": ["none"], "leave_one_out": False}
    cfg = _cfg(tmp_path, None, done[2].tracking_uri, sweep=sweep,
               plots=False)
    setup_tracking(OOF_EXPERIMENT, cfg.tracking_uri, stack.mlflow_dir_for(cfg.tracking_uri))
    with mlflow.start_run(tags={"fakestack.stage": "oof"}) as run:
        for name in stack.TABLES:  # units and refit_preds are optional: this hand-made oof output has neither
            if (oof_dir / f"{name}.parquet").exists():
                mlflow.log_artifact(str(oof_dir / f"{name}.parquet"), artifact_path="tables")
    res = stack.run(cfg, progress=False)
    assert res.oof_run_id == run.info.run_id
    child = MlflowClient().get_run(next(iter(res.run_ids.values())))
    assert child.data.tags["fakestack.oof_run_id"] == run.info.run_id
    assert len(res.submission) == N_TEST_GROUPS * 2


def test_nested_selection_is_in_the_table_summary_and_mlflow(done, capsys):
    _, _, cfg, result = done
    row = result.table[result.table["config"] == nested.NESTED_CONFIG]
    assert len(row) == 1 and row["meta"].iloc[0] == nested.NESTED_META
    assert row["log_loss"].iloc[0] == pytest.approx(result.nested.metrics["log_loss"])
    names = {r.spec.name for r in result.results}
    assert set(result.nested.picks) == {0, 1, 2} and set(result.nested.picks.values()) <= names
    assert report.baselines(result.table)["stack_config"] != nested.NESTED_CONFIG  # never "the best stack"
    mlflow.set_tracking_uri(cfg.tracking_uri)
    metrics = MlflowClient().get_run(result.sweep_run_id).data.metrics
    assert metrics["nested_cv_log_loss"] == pytest.approx(result.nested.metrics["log_loss"])
    assert "honest headline" in stack.summary(result, cfg, 1.0)


def test_nested_selection_never_looks_at_the_fold_it_scores():
    """Flipping every label of fold 0 changes nothing of fold 0's nested probabilities: the
    configuration that scores fold 0 was picked and fitted on the other folds alone."""
    vf = toy_video_features(n_videos=90, seed=3)
    specs = stack.make_specs(from_dict(stack.SweepConfig, {"metas": ["logreg"], "calibrations": ["none", "platt"],
                                                            "leave_one_out": False}), stack.learners_in(vf))
    sweep = from_dict(stack.SweepConfig, {"metas": ["logreg"], "calibrations": ["none", "platt"]})
    first = nested.nested_selection(specs, sweep, vf, inner_k=2, seed=0)
    flipped = vf.assign(label=np.where(vf["fold"] == 0, 1 - vf["label"], vf["label"]))
    second = nested.nested_selection(specs, sweep, flipped, inner_k=2, seed=0)
    fold0 = (vf["fold"] == 0).to_numpy()
    np.testing.assert_array_equal(first.prob[fold0], second.prob[fold0])
    assert first.picks[0] == second.picks[0] and not np.array_equal(first.prob[~fold0], second.prob[~fold0])
