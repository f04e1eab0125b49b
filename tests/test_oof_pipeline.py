"""`pipelines/oof.py` end to end on a tiny generated corpus: tables, completeness, MLflow structure.

One corpus, one face extraction and one training run are shared by the module (they dominate the
cost); a second run checks that every unit is then loaded, not trained.
"""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

import mlflow
from features.contract import FRAME_PREDS_COLUMNS
from features.synth import SynthConfig, generate_corpus
from mlflow import MlflowClient
from pipelines.oof import OOF_EXPERIMENT, STAGE_TAG, TABLES, UNIT_STAGE, main, parse_config, run

TINY = [
    "--set", "folds.k=2",
    "--set", "select=[meso4, efficientnet]",
    "--set", "learners.meso4.input_size=32",
    "--set", "learners.efficientnet.input_size=32",
    "--set", "faces.n_frames=4", "--set", "faces.crop_size=48", "--set", "faces.workers=1",
    "--set", "train.epochs=2", "--set", "train.batch_size=16", "--set", "train.num_threads=1",
    "--set", "train.device=cpu",
    "--set", "train_overrides={efficientnet: {epochs: 1}}",
    "--set", "progress=false",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    generate_corpus(root, SynthConfig.tiny(n_originals=3), progress=False)
    return root


@pytest.fixture(scope="module")
def argv(corpus, tmp_path_factory):
    return ["--data", str(corpus), "--workdir", str(tmp_path_factory.mktemp("work"))] + TINY


@pytest.fixture(scope="module")
def oof_run(argv, tmp_path_factory):
    mlflow_dir = tmp_path_factory.mktemp("mlflow")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        cfg, _ = parse_config(argv)
        result = run(cfg, profile="tiny", mlflow_dir=mlflow_dir)
    return cfg, result, mlflow.get_tracking_uri()


def test_config_from_cli_and_overrides(oof_run):
    cfg, _, _ = oof_run
    assert cfg.folds.k == 2 and cfg.faces.n_frames == 4 and cfg.select == ["meso4", "efficientnet"]
    assert cfg.train_overrides == {"efficientnet": {"epochs": 1}} and cfg.train.epochs == 2


@pytest.mark.parametrize("bad, message", [
    ("trian.epochs=1", "unknown key"),
    ("train.epocs=1", "valid"),
    ("select=[nope]", "unknown learner"),
])
def test_bad_overrides_stop_with_a_clear_error(bad, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_config(["--set", bad])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_tables_account_for_every_video(oof_run):
    _, result, _ = oof_run
    out = result.output_dir
    tables = {name: pd.read_parquet(out / f"{name}.parquet") for name in TABLES}
    videos, status, fp = tables["videos"], tables["face_status"], tables["frame_preds"]
    assert list(fp.columns) == FRAME_PREDS_COLUMNS
    assert set(status["video_id"]) == set(videos["video_id"]) == set(tables["folds"]["video_id"])
    assert set(fp["learner"]) == {"meso4", "efficientnet"}
    faces = tables["faces"]
    for learner, rows in fp.groupby("learner"):  # one row per face per learner: OOF or fold-averaged test
        assert len(rows) == len(faces) and not rows.duplicated(["video_id", "frame_idx", "face_idx"]).any()
    no_face = set(status.loc[status["status"] != "ok", "video_id"])
    assert not no_face & set(fp["video_id"])
    fold_of = tables["folds"].set_index("video_id")["fold"]
    assert (fp["fold"].isna() == fp["video_id"].map(fold_of).isna().to_numpy()).all()
    assert (out / "config.yaml").exists() and (out / "summary.csv").exists()


def test_throughput_is_measured_per_learner(oof_run):
    """Training and prediction faces/s per learner: from the units' own timings, on the device used."""
    _, result, _ = oof_run
    speed = pd.read_csv(result.output_dir / "throughput.csv")
    assert sorted(speed["learner"]) == ["efficientnet", "meso4"] and set(speed["device"]) == {"cpu"}
    assert (speed[["train_faces_per_s", "predict_faces_per_s"]] > 0).all().all()
    for unit in result.units:  # each rate is the unit's samples over its own seconds
        history, rates = unit.info["history"], unit.info["throughput"]
        seen = sum(h["train_samples"] for h in history)
        assert seen == len(history) * (unit.info["n_train"] // 16) * 16  # full batches of 16
        assert rates["train_faces_per_s"] == pytest.approx(seen / sum(h["train_seconds"] for h in history))


def test_mlflow_parent_and_nested_runs(oof_run):
    cfg, result, uri = oof_run
    client = MlflowClient(uri)
    parent = client.get_run(result.run_id)
    assert parent.data.tags[STAGE_TAG] == "oof" and parent.data.tags["fakestack.profile"] == "tiny"
    assert "fakestack.git_commit" in parent.data.tags and parent.info.status == "FINISHED"
    assert parent.data.params["folds.k"] == "2"
    for learner in ("meso4", "efficientnet"):
        assert f"{learner}.oof_video_log_loss" in parent.data.metrics
    assert "prior.oof_video_log_loss" in parent.data.metrics
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    artifacts |= {a.path for a in client.list_artifacts(result.run_id, "tables")}
    assert {"config.yaml", "summary.csv", "throughput.csv", "tables/frame_preds.parquet",
            "tables/folds.parquet"} <= artifacts
    assert parent.inputs.dataset_inputs and parent.inputs.dataset_inputs[0].dataset.name.startswith("corpus-")

    exp = client.get_experiment_by_name(OOF_EXPERIMENT)
    nested = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{result.run_id}'")
    assert sorted((r.data.tags["learner"], r.data.tags["fold"]) for r in nested) == sorted(
        (learner, str(k)) for learner in ("meso4", "efficientnet") for k in range(2))
    epochs = {"meso4": 2, "efficientnet": 1}
    for r in nested:
        assert r.data.tags[STAGE_TAG] == UNIT_STAGE and r.data.tags["cached"] == "false"
        history = client.get_metric_history(r.info.run_id, "train_loss")
        assert sorted(m.step for m in history) == list(range(epochs[r.data.tags["learner"]]))
        assert {"fold_frame_log_loss", "fold_video_log_loss", "fold_frame_auc", "fold_video_auc"} <= set(r.data.metrics)
        assert r.data.params["train.epochs"] == str(epochs[r.data.tags["learner"]])
        assert r.data.metrics["train_faces_per_s"] > 0 and r.data.metrics["predict_faces_per_s"] > 0


def test_main_rerun_loads_every_unit_and_logs_them_as_cached(oof_run, argv, tmp_path, monkeypatch):
    _, first, _ = oof_run
    monkeypatch.chdir(tmp_path)  # a non-default tracking URI keeps MLflow's artifacts under the cwd
    uri = f"sqlite:///{tmp_path / 'rerun.db'}"
    again = main(argv + ["--tracking-uri", uri])
    assert again.units and all(r.cached for r in again.units)
    pd.testing.assert_frame_equal(again.frame_preds, first.frame_preds, check_exact=True)
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(OOF_EXPERIMENT)
    nested = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{again.run_id}'")
    assert len(nested) == len(again.units) and all(r.data.tags["cached"] == "true" for r in nested)
    assert all(client.get_metric_history(r.info.run_id, "train_loss") for r in nested)
    assert dataclasses.asdict(again.units[0].unit) == dataclasses.asdict(first.units[0].unit)


def test_a_missing_corpus_folder_ends_with_one_message_and_exit_2(tmp_path, capsys):
    argv = ["--data", str(tmp_path / "missing"), "--workdir", str(tmp_path / "work"),
            "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--set", "progress=false"]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "oof.py: error:" in err and str(tmp_path / "missing") in err and "Traceback" not in err


def test_units_table_points_at_every_checkpoint(oof_run):
    cfg, result, _ = oof_run
    units = pd.read_parquet(result.output_dir / "units.parquet")
    assert sorted(zip(units["learner"], units["fold"])) == sorted(
        (name, k) for name in cfg.select for k in range(cfg.folds.k))
    for row in units.itertuples(index=False):
        assert (result.output_dir / row.dir / "model.pt").is_file()
    assert pd.read_parquet(result.output_dir / "refit_preds.parquet").empty  # refit is off by default


def test_unreachable_pretrained_weights_stop_before_any_work(tmp_path, monkeypatch, capsys):
    import timm.models._builder as timm_builder

    def offline(*args, **kwargs):
        raise OSError("no route to the hub (offline)")

    for fn in ("load_state_dict_from_hf", "load_state_dict_from_url", "download_cached_file"):
        monkeypatch.setattr(timm_builder, fn, offline)
    argv = ["--workdir", str(tmp_path / "work"), "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
            "--set", "select=[efficientnet]", "--set", "learners.efficientnet.pretrained=true",
            "--set", "progress=false"]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "pretrained: false" in err and "weights_path" in err and "Traceback" not in err
    assert not (tmp_path / "work").exists()  # not even the embedded corpus was generated
