"""Level 1: `python pipelines/stack.py` turns an oof run's frame predictions into a submission.

Reads the tables of an oof run (its MLflow artifacts under `tables/`, or a directory), aggregates
them per video (features.aggregate), scores every ensemble configuration of the sweep by the same
outer CV over the level-0 folds (meta.evaluate; calibration and clipping are fitted inside each
outer training part), logs one MLflow run per configuration, refits the best on every OOF video
and writes the DFDC submission.csv for the test videos, with a diagnostics file saying which
videos got the prior because no face was seen. It also scores the whole selection by nested CV
(the honest headline; meta.nested), writes the test figures per test corpus and
method (test_breakdown.csv) and packages and registers the whole detector
(pipelines.scoring.package) for predict.py and serving.

    python pipelines/stack.py [--oof-run RUN_ID] [--oof-dir DIR] [--profile demo|full]
                              [--set key=value ...] [--tracking-uri URI]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from joblib import Parallel, delayed, parallel_config
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

import mlflow
from features.aggregate import AggregateConfig, aggregate, learners_in
from features.common import ConfigError, atomic_write_parquet, atomic_write_text, runtime_field, to_dict
from features.contract import OPTIONAL_TABLES, TABLES
from features.corpus.face_csv import MEDIA_FACES
from features.corpus.readers import read_labels_file, read_test_labels
from meta.capacity import inner_cv_shortfall
from meta.learners import no_face_mask
from meta.metrics import score
from meta.nested import MIN_FOLDS, NestedResult, can_nest, nested_selection
from meta.nested import comparison_row as nested_comparison_row
from meta.selection import FINAL_STAGE, SpecResult, SweepConfig, evaluate_family, families, make_specs
from pipelines.config import HOME, WORK_DIR, add_config_args, build_config, exit_on_user_error, setup_logging
from pipelines.explain.case import ExplainConfig
from pipelines.explain.sources import explain_costliest
from pipelines.scoring import package
from pipelines.scoring.detector import TEST_TIMES
from pipelines.stacking import breakdown, leaderboard, model, report, runs
from pipelines.tracking import MLFLOW_DIR, OOF_EXPERIMENT, STACK_EXPERIMENT, git_commit, setup_tracking, ui_hint

OUTPUT_DIR_TAG = "fakestack.output_dir"  # the oof run's output folder (its config.yaml, unit folders)
TABLES_ARTIFACT = "tables"
OOF_STAGE = "oof"
OOF_SEARCH_LIMIT = 50  # recent finished oof runs scanned for the latest parent run
SQLITE_PREFIX = "sqlite:///"
EXPLAIN_DIR = "explanations"  # reports of the costliest OOF videos: under output_dir, and as MLflow artifacts
OPTIMISM_NOTE = ("note: the best configuration is chosen by the same outer CV that scores it, so its "
                 "CV figure is optimistic; the nested figure and the test split are the unbiased checks")


class StackInputError(ValueError):
    """The oof tables cannot be stacked (no labelled videos of both classes, no learner columns ...)."""


@dataclass
class StackConfig:
    """The stack stage's settings; profiles and --set override these defaults."""

    oof_run_id: str | None = None  # None (and no oof_dir): the latest finished oof parent run
    oof_dir: str | None = None  # read the tables from this folder instead of MLflow
    aggregate: AggregateConfig = field(default_factory=AggregateConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    inner_k: int = 3  # inner grouped CV (calibration and clip bounds) inside each outer part
    seed: int = 0
    n_jobs: int = runtime_field(2)  # configurations evaluated in parallel (processes); 1 = in this process
    plots: bool = True  # reliability / ROC / importance per configuration
    tracking_uri: str | None = runtime_field(None)  # None: MLFLOW_TRACKING_URI or the local sqlite store
    output_dir: str | None = runtime_field(None)  # None: WORK_DIR/stack
    test_labels: str | None = None  # a filename,label CSV for the test split (besides the corpus's)
    print_rows: int | None = runtime_field(None)  # comparison rows printed (None: all; the CSV has all)
    registry_name: str = "fakestack"  # Model Registry name of the packaged detector ("" : not registered)
    test_time: str = "fold_models"  # the detector's level 0: fold_models | refit (needs oof.py refit=true)
    nested: bool = True  # also score the whole selection by nested CV (the honest headline; ~k x the sweep)
    explain_top: int = 3  # HTML reports of the OOF videos the best configuration lost most log loss on (0: none)
    explain: ExplainConfig = field(default_factory=ExplainConfig)

    def __post_init__(self) -> None:
        if self.test_time not in TEST_TIMES:
            raise ConfigError(f"test_time {self.test_time!r} is not one of {TEST_TIMES}")


@dataclass
class StackResult:
    table: pd.DataFrame  # the comparison table (all configurations x stages)
    best: SpecResult
    results: list[SpecResult]
    video_features: pd.DataFrame
    submission: pd.DataFrame
    diagnostics: pd.DataFrame
    output_dir: Path
    sweep_run_id: str
    run_ids: dict[str, str]  # configuration name -> MLflow run id
    model_uri: str
    oof_run_id: str | None
    test_scores: dict[str, float] = field(default_factory=dict)
    test_breakdown: pd.DataFrame | None = None  # test figures per test corpus and per method
    detector_uri: str | None = None  # the packaged detector (None: could not be packaged, see detector_note)
    detector_version: str | None = None  # its version in the Model Registry
    detector_note: str = ""
    refit_test_scores: dict[str, float] = field(default_factory=dict)  # test split with refit level-0 models
    nested: NestedResult | None = None  # the selection procedure scored by nested CV
    prior_log_loss: float = float("nan")  # the constant training prior's CV log loss
    explanations: list[Path] = field(default_factory=list)  # reports of the costliest OOF videos
    explain_note: str = ""  # why there are none, when explain_top > 0


def mlflow_dir_for(tracking_uri: str | None) -> Path | None:
    """A `sqlite:///<dir>/mlflow.db` URI keeps its artifacts in <dir> (tests: under tmp_path)."""
    if tracking_uri and tracking_uri.startswith(SQLITE_PREFIX) and tracking_uri.endswith("/mlflow.db"):
        return Path(tracking_uri[len(SQLITE_PREFIX):]).parent
    return None


def latest_oof_run(client: MlflowClient) -> str:
    """The id of the newest FINISHED top-level run tagged fakestack.stage=oof."""
    exp = client.get_experiment_by_name(OOF_EXPERIMENT)
    if exp is None:
        raise FileNotFoundError(f"no experiment {OOF_EXPERIMENT!r} in {mlflow.get_tracking_uri()}: run "
                                "pipelines/oof.py first, or pass --oof-run RUN_ID / --oof-dir DIR")
    found = client.search_runs([exp.experiment_id], f"tags.`{runs.STAGE_TAG}` = '{OOF_STAGE}' "
                              "and attributes.status = 'FINISHED'", order_by=["attributes.start_time DESC"],
                              max_results=OOF_SEARCH_LIMIT)
    parents = [r for r in found if "mlflow.parentRunId" not in r.data.tags]
    if not parents:
        raise FileNotFoundError(f"no finished oof run (tag {runs.STAGE_TAG}={OOF_STAGE}) in "
                                f"{mlflow.get_tracking_uri()}; pass --oof-run RUN_ID or --oof-dir DIR")
    return parents[0].info.run_id


def read_tables(folder: Path) -> dict[str, pd.DataFrame]:
    """The oof tables from `folder` (`{name}.parquet`); a missing required one is an error."""
    tables = {}
    for name in TABLES:
        path = folder / f"{name}.parquet"
        if not path.exists():
            if name in OPTIONAL_TABLES:
                tables[name] = None
                continue
            raise FileNotFoundError(f"{path}: missing; an oof output holds {', '.join(TABLES)} as parquet")
        tables[name] = pd.read_parquet(path)
    return tables


def load_tables(cfg: StackConfig, scratch: Path) -> tuple[dict[str, pd.DataFrame], str | None, str]:
    """(tables, oof run id or None, a description of the source)."""
    if cfg.oof_dir and cfg.oof_run_id:
        raise StackInputError("give either oof_dir or oof_run_id, not both")
    if cfg.oof_dir:
        folder = Path(cfg.oof_dir)
        if not folder.is_dir():
            raise FileNotFoundError(f"oof_dir {folder}: not a directory")
        return read_tables(folder), None, str(folder)
    run_id = cfg.oof_run_id or latest_oof_run(MlflowClient())
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=TABLES_ARTIFACT,
                                                dst_path=str(scratch))
    return read_tables(Path(local)), run_id, f"runs:/{run_id}/{TABLES_ARTIFACT}"


def oof_output_dir(cfg: StackConfig, oof_run_id: str | None) -> Path | None:
    """The oof run's output folder (config.yaml, and the unit folders its units table points to)."""
    if cfg.oof_dir:
        return Path(cfg.oof_dir)
    tag = MlflowClient().get_run(oof_run_id).data.tags.get(OUTPUT_DIR_TAG) if oof_run_id else None
    return Path(tag) if tag else None


def detector_provenance(oof_run_id: str | None, stack_run_id: str, best: SpecResult,
                        refit_scores: dict[str, float], test_time: str) -> dict:
    """What the packaged detector records of itself (and its registry version is tagged with): the
    runs, the configuration, and the scores of exactly what is packaged (with refit models, the
    test split as those models score it)."""
    scores = {k: float(v) for k, v in best.metrics.items() if k in ("cv_log_loss", "cv_auc", "test_log_loss",
                                                                     "test_auc")}
    if test_time == "refit":
        scores.update({k.removeprefix("refit_"): float(v) for k, v in refit_scores.items()
                       if k in ("refit_test_log_loss", "refit_test_auc")})
    return {"oof_run_id": oof_run_id or "none", "stack_run_id": stack_run_id, "configuration": best.spec.name,
            "git_commit": git_commit(), "test_time": test_time, **scores}


def package_detector(best: SpecResult, vf: pd.DataFrame, tables: dict, cfg: StackConfig,
                     oof_dir: Path | None, info: dict) -> tuple[str | None, str | None, str]:
    """Log (and register) the whole detector for the best configuration, in the active run.
    Returns (model uri, registry version, note); an oof run that cannot be packaged gives
    (None, None, why), which the summary prints."""
    ensemble = best.ensemble
    try:
        if oof_dir is None:
            raise package.PackagingError("the oof run has no output folder tag")
        face_images = "media" in tables["videos"] and (tables["videos"]["media"] == MEDIA_FACES).any()
        spec, unit_dirs = package.spec_from_oof(
            oof_dir, tables["units"], list(ensemble.meta_.learners_), to_dict(cfg.aggregate),
            model.input_columns(ensemble, vf), info, cfg.test_time, face_images=bool(face_images))
    except package.PackagingError as err:
        return None, None, f"no detector packaged: {err}"
    logged = package.log_detector(spec, ensemble, unit_dirs, cfg.registry_name)
    mlflow.set_tag(runs.DETECTOR_TAG, logged.model_uri)  # predict.py's default: the newest run that has one
    scores = {k: v for k, v in info.items() if isinstance(v, float)}
    version = package.register_scores(logged, cfg.registry_name, scores, info["configuration"]) \
        if cfg.registry_name else None
    return logged.model_uri, version, ""


def refit_test_scores(best: SpecResult, tables: dict, cfg: StackConfig, X_test: pd.DataFrame,
                      y_test: np.ndarray | None) -> dict[str, float]:
    """The best ensemble's test-split scores when level 0 is one refit model per learner instead of
    the fold models (the packaged detector's `refit` choice); empty without refit models or labels."""
    refit = tables.get("refit_preds")
    if refit is None or refit.empty or X_test.empty:
        return {}
    vf = aggregate(refit, tables["face_status"], tables["videos"], tables["folds"], cfg.aggregate,
                   faces=tables["faces"])
    X = vf.set_index("video_id").loc[X_test["video_id"]].reset_index()
    p = best.ensemble.predict_proba(X)[:, 1]
    if y_test is None or not np.isfinite(y_test).any():
        return {}
    known = np.isfinite(y_test)
    return {f"refit_test_{k}": v for k, v in score(y_test[known], p[known]).items() if k != "n"}


def _resolve_root(root: str) -> Path:
    path = Path(root)
    return path if path.is_absolute() or path.exists() else HOME / path


def split_labels(videos: pd.DataFrame, test_ids: pd.Series, extra_csv: str | None) -> np.ndarray | None:
    """Labels of the test videos (NaN where unknown) from the videos table, each corpus root's
    answer file (test_labels.csv) and an optional extra CSV; None when there are none at all."""
    known = videos.loc[videos["label"].notna(), ["video_id", "label"]]
    parts = [known]
    if "root" in videos.columns:
        parts += [read_test_labels(_resolve_root(r)) for r in videos["root"].dropna().unique()]
    if extra_csv:
        parts.append(read_labels_file(extra_csv))
    labels = pd.concat([p.astype({"video_id": str, "label": float}) for p in parts if len(p)])
    labels = labels.drop_duplicates("video_id", keep="last").set_index("video_id")["label"]
    y = test_ids.map(labels).to_numpy(dtype=float)
    return y if np.isfinite(y).any() else None


def split_features(vf: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(labelled OOF videos: fold assigned, test videos: no fold); checks what CV relies on."""
    oof = vf["fold"].notna()
    X, X_test = vf.loc[oof].reset_index(drop=True), vf.loc[~oof].reset_index(drop=True)
    if X["label"].isna().any():
        bad = X.loc[X["label"].isna(), "video_id"].tolist()[:5]
        raise StackInputError(f"videos with a fold but no label: {bad}")
    if "group" not in X.columns:
        raise StackInputError("videos table lacks the `group` column the outer CV needs")
    if X.empty or X["label"].nunique() < 2:
        raise StackInputError(f"need labelled OOF videos of both classes; have {len(X)} ({X['label'].unique()})")
    return X, X_test


def evaluate_all(specs, cfg: StackConfig, X, X_test, y_test, plot_dir: Path, progress: bool,
                 on_result) -> list[SpecResult]:
    """Every configuration, one calibration family per task in n_jobs processes; `on_result`
    (the MLflow logging) runs in this process as results arrive, overlapping the workers; tqdm
    counts finished configurations. Results come back in the order of `specs`."""
    y = X["label"].to_numpy(dtype=int)
    args = (cfg.sweep, X, y, X["fold"].to_numpy(), X["group"].to_numpy(), X_test, y_test,
            cfg.inner_k, cfg.seed, partial(report.spec_plots, plot_dir=plot_dir) if cfg.plots else None)
    # one BLAS thread per configuration: the fits are tiny, and threaded BLAS on a few hundred
    # rows costs more in spin-up than it gains (logreg ~5x slower with default threading)
    with threadpool_limits(limits=1), parallel_config(backend="loky", inner_max_num_threads=1):
        if cfg.n_jobs == 1:
            jobs = (evaluate_family(f, *args) for f in families(specs))
        else:
            jobs = Parallel(n_jobs=cfg.n_jobs, return_as="generator_unordered")(
                delayed(evaluate_family)(f, *args) for f in families(specs))
        results = []
        with tqdm(total=len(specs), desc="configurations", unit="cfg", disable=not progress) as bar:
            for batch in jobs:
                for res in batch:
                    on_result(res)
                results += batch
                bar.update(len(batch))
    order = {s.name: i for i, s in enumerate(specs)}
    return sorted(results, key=lambda r: order[r.spec.name])


def prior_log_loss(X: pd.DataFrame) -> float:
    """Log loss of always answering the labelled videos' share of fakes (what a stack must beat; an
    in-sample prior, slightly kinder than the per-fold one, so the warning errs towards silence)."""
    y = X["label"].to_numpy(dtype=float)
    return float(score(y, np.full(len(y), y.mean()))["log_loss"])


def choose_best(results: list[SpecResult]) -> SpecResult:
    """Lowest outer-CV log loss of the final (clipped) stage; ties to the earlier configuration."""
    return min(results, key=lambda r: r.metrics["cv_log_loss"])


def run(cfg: StackConfig, progress: bool = True) -> StackResult:
    """The whole stage; see the module docstring. Returns what it wrote and logged."""
    start = time.perf_counter()
    mlflow_dir = mlflow_dir_for(cfg.tracking_uri)  # None: the repo's mlflow/ folder
    exp_id = setup_tracking(STACK_EXPERIMENT, cfg.tracking_uri, mlflow_dir or MLFLOW_DIR)
    out_dir = Path(cfg.output_dir) if cfg.output_dir else WORK_DIR / "stack"
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fakestack-stack-") as scratch:
        scratch = Path(scratch)
        tables, oof_run_id, source = load_tables(cfg, scratch)
        resolved = replace(cfg, oof_run_id=oof_run_id)
        vf = aggregate(tables["frame_preds"], tables["face_status"], tables["videos"], tables["folds"],
                       cfg.aggregate, faces=tables["faces"])
        X, X_test = split_features(vf)
        y_test = split_labels(tables["videos"], X_test["video_id"].astype(str), cfg.test_labels)
        specs = make_specs(cfg.sweep, _learners(vf))
        shortfall = inner_cv_shortfall(specs, cfg.sweep, X["label"].to_numpy(dtype=int), X["fold"].to_numpy(dtype=int),
                                       X["group"].to_numpy(), cfg.inner_k, cfg.seed, cfg.nested,
                                       ~no_face_mask(X, learners_in(X)))
        if shortfall:  # before the sweep: one line naming the setting, not sklearn's traceback minutes in
            raise StackInputError(shortfall)
        tags = runs.common_tags(oof_run_id, source, git_commit())
        with mlflow.start_run(experiment_id=exp_id, run_name="stack-sweep",
                              tags={**tags, runs.KIND_TAG: "sweep"}) as parent:
            mlflow.log_params(runs.flat_params(to_dict(resolved)))
            log_child = _ChildLogger(exp_id, parent.info.run_id, tags, resolved)
            results = evaluate_all(specs, cfg, X, X_test, y_test, scratch / "plots", progress, log_child)
            best = choose_best(results)
            run_ids = log_child.run_ids
            MlflowClient().set_tag(run_ids[best.spec.name], runs.BEST_TAG, "true")
            rows = [row for r in results for row in r.rows]
            nested_res = None
            if cfg.nested and can_nest(X):
                with threadpool_limits(limits=1), parallel_config(backend="loky", inner_max_num_threads=1):
                    nested_res = nested_selection(specs, cfg.sweep, X, cfg.inner_k, cfg.seed, cfg.n_jobs)
                rows.append(nested_comparison_row(nested_res))
                mlflow.log_metrics({f"nested_cv_{k}": v for k, v in nested_res.metrics.items() if k != "n"})
                runs.log_nested_picks(MlflowClient(), run_ids, nested_res)
            table = report.comparison_table(rows)
            submission, diagnostics = _final_outputs(best, X_test, tables["videos"], tables["folds"])
            per_test = breakdown.breakdown_table(tables["videos"], X_test["video_id"], y_test,
                                                _breakdown_configs(best, results, table))
            mlflow.log_metrics(breakdown.metric_names(per_test, best.spec.name))
            for path in _write_outputs(out_dir, resolved, table, submission, diagnostics, vf, per_test):
                mlflow.log_artifact(str(path))
            for path in leaderboard.write_leaderboard(out_dir, results, X, nested_res, per_test, subtitle=source):
                mlflow.log_artifact(str(path))
            runs.log_sweep_summary(best, len(results), report.baselines(table))
            info = model.log_ensemble(best.ensemble, vf)
            refit_scores = refit_test_scores(best, tables, cfg, X_test, y_test)
            if refit_scores:
                mlflow.log_metrics(refit_scores)
            provenance = detector_provenance(oof_run_id, parent.info.run_id, best, refit_scores, cfg.test_time)
            detector = package_detector(best, vf, tables, cfg, oof_output_dir(cfg, oof_run_id), provenance)
            explanations, explain_note = _explain(best, X, tables, cfg, oof_output_dir(cfg, oof_run_id), out_dir)
    test_scores = {k: v for k, v in best.metrics.items() if k.startswith("test_")}
    result = StackResult(table=table, best=best, results=results, video_features=vf,
                         submission=submission, diagnostics=diagnostics, output_dir=out_dir,
                         sweep_run_id=parent.info.run_id, run_ids=run_ids, model_uri=info.model_uri,
                         oof_run_id=oof_run_id, test_scores=test_scores, detector_uri=detector[0],
                         detector_version=detector[1], detector_note=detector[2],
                         refit_test_scores=refit_scores, nested=nested_res, test_breakdown=per_test,
                         prior_log_loss=prior_log_loss(X), explanations=explanations, explain_note=explain_note)
    if progress:
        print(summary(result, cfg, time.perf_counter() - start))
    return result


def _explain(best: SpecResult, X: pd.DataFrame, tables: dict, cfg: StackConfig, oof_dir: Path | None,
             out_dir: Path) -> tuple[list[Path], str]:
    """Reports of the explain_top costliest OOF videos, logged under explanations/ in the active run."""
    folder = out_dir / EXPLAIN_DIR
    shutil.rmtree(folder, ignore_errors=True)  # the reports of an earlier run in this output folder
    try:
        reports, note = explain_costliest(best, X, best.cv_stages[FINAL_STAGE], tables, oof_dir, cfg.explain_top,
                                          folder, cfg.explain)
    except OSError as err:  # a unit folder or face cache gone since oof.py: the stack itself stands
        return [], f"explanations: not written ({err})"
    if reports:
        mlflow.log_artifacts(str(folder), EXPLAIN_DIR)
    return reports, note


def _breakdown_configs(best: SpecResult, results: list[SpecResult], table: pd.DataFrame) -> dict[str, np.ndarray]:
    """The chosen ensemble, the best single learner and the plain average: their test P(FAKE)."""
    by_name = {r.spec.name: r for r in results}
    chosen = {best.spec.name: best}
    single = report.baselines(table).get("single_config")
    for name in (single, "average[all]"):
        if name in by_name:
            chosen[name] = by_name[name]
    return {name: r.test_stages[FINAL_STAGE] for name, r in chosen.items()}


def _learners(vf: pd.DataFrame) -> list[str]:
    found = learners_in(vf)
    if not found:
        raise StackInputError("video_features has no learner columns: frame_preds is empty")
    return found


class _ChildLogger:
    """Logs one configuration's MLflow run per call; remembers run ids by configuration name."""

    def __init__(self, exp_id: str, parent_id: str, tags: dict[str, str], resolved: StackConfig):
        self.client, self.exp_id, self.parent_id, self.tags = MlflowClient(), exp_id, parent_id, tags
        self.shared = {"inner_k": str(resolved.inner_k), "seed": str(resolved.seed),
                       "target_prior": str(resolved.sweep.target_prior),
                       "clip_grid": str(list(resolved.sweep.clip_grid))}
        self.run_ids: dict[str, str] = {}

    def __call__(self, res: SpecResult) -> None:
        self.run_ids[res.spec.name] = runs.log_spec_run(
            self.client, self.exp_id, self.parent_id, res, self.tags, self.shared)


def _final_outputs(best: SpecResult, X_test, videos, folds) -> tuple[pd.DataFrame, pd.DataFrame]:
    """submission.csv and diagnostics.csv of the best configuration; the submission is checked
    against the videos and folds tables themselves (every video without a fold, once)."""
    prob = best.test_stages[FINAL_STAGE]
    submission = report.build_submission(X_test["video_id"], prob)
    in_oof = videos["video_id"].isin(folds.loc[folds["fold"].notna(), "video_id"])
    report.check_submission(submission, videos, ~in_oof)
    diagnostics = report.build_diagnostics(X_test, prob, best.test_no_face, best.ensemble.prior_)
    return submission, diagnostics


def _write_outputs(out_dir: Path, resolved: StackConfig, table, submission, diagnostics, vf,
                   per_test: pd.DataFrame) -> list[Path]:
    return [
        atomic_write_text(per_test.to_csv(index=False), out_dir / "test_breakdown.csv"),
        atomic_write_text(yaml.safe_dump(to_dict(resolved), sort_keys=False), out_dir / "config.yaml"),
        atomic_write_text(table.to_csv(index=False), out_dir / "comparison.csv"),
        atomic_write_text(submission.to_csv(index=False), out_dir / "submission.csv"),
        atomic_write_text(diagnostics.to_csv(index=False), out_dir / "diagnostics.csv"),
        atomic_write_parquet(vf, out_dir / "video_features.parquet"),
    ]


def summary(res: StackResult, cfg: StackConfig, seconds: float) -> str:
    """What the user needs at the end: table, best config, CV vs test, where things are."""
    best = res.best
    lines = ["", "comparison (outer CV over the level-0 folds, sorted by log loss):",
             report.format_table(res.table, cfg.print_rows), "",
             report.format_baselines(report.baselines(res.table)),
             f"best configuration: {best.spec.name}  (refit clip bounds {best.ensemble.clip_bounds_})",
             f"  outer-CV log loss {best.metrics['cv_log_loss']:.4f}  AUC {best.metrics['cv_auc']:.4f}",
             f"  {OPTIMISM_NOTE}"]
    if res.nested is None and cfg.nested:
        lines.append(f"  no nested figure: nested selection needs at least {MIN_FOLDS} level-0 folds")
    if res.nested is not None:
        m = res.nested.metrics
        lines.append(f"  honest headline (nested: the whole sweep re-run inside each outer training part picks, the "
                     f"outer fold scores): log loss {m['log_loss']:.4f}  AUC {m['auc']:.4f}; picked "
                     + ", ".join(f"fold {k} {name}" for k, name in res.nested.picks.items()))
    if best.metrics["cv_log_loss"] >= res.prior_log_loss:
        lines.append(f"  warning: no configuration beats the constant prior (log loss {res.prior_log_loss:.4f}): "
                     "the learners carry no usable signal on this corpus")
    if res.test_scores:
        lines.append(f"  test split: log loss {res.test_scores['test_log_loss']:.4f}  "
                     f"AUC {res.test_scores['test_auc']:.4f}")
        if res.refit_test_scores:
            lines.append(f"  test split with one refit model per learner instead of the fold models: log loss "
                         f"{res.refit_test_scores['refit_test_log_loss']:.4f}  "
                         f"AUC {res.refit_test_scores['refit_test_auc']:.4f}")
    else:
        lines.append("  test split: no labels found (no test_labels.csv); nothing to score")
    per_test = breakdown.format_breakdown(res.test_breakdown) if res.test_breakdown is not None else ""
    if per_test:
        lines.append(per_test)
    n_imputed = int(res.diagnostics["imputed"].sum())
    lines += [f"submission: {res.output_dir / 'submission.csv'} ({len(res.submission)} test videos, "
              f"{n_imputed} without faces got the prior; see diagnostics.csv)",
              f"MLflow: sweep run {res.sweep_run_id} with {len(res.run_ids)} configuration runs; "
              f"model {res.model_uri}",
              f"detector: {res.detector_uri} (registered as {cfg.registry_name} version {res.detector_version})"
              if res.detector_uri and res.detector_version else f"detector: {res.detector_uri or res.detector_note}",
              _explain_line(res), f"leaderboard: {res.output_dir / leaderboard.LEADERBOARD_FILE} (and the sweep "
              "run's artifacts)", f"  {ui_hint(experiment=STACK_EXPERIMENT)}", f"done in {seconds:.1f} s"]
    return "\n".join(lines)


def _explain_line(res: StackResult) -> str:
    if not res.explanations:
        return res.explain_note or "explanations: off (explain_top: 0)"
    return (f"explanations: {len(res.explanations)} reports of the costliest OOF videos in "
            f"{res.explanations[0].parent} (MLflow: the sweep run's {EXPLAIN_DIR}/ artifacts)")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--oof-run", dest="oof_run_id", help="MLflow run id of the oof run to read")
    parser.add_argument("--oof-dir", help="read the oof tables from this folder instead of MLflow")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: local sqlite under mlflow/)")
    add_config_args(parser)
    return parser.parse_args(argv)


def main(argv=None) -> StackResult:
    setup_logging()
    args = parse_args(argv)
    # bad settings, a missing or unusable oof run, an oof run id MLflow does not know
    with exit_on_user_error("stack.py", (StackInputError, MlflowException)):
        cfg = build_config(StackConfig, "stack", args.profile, args.overrides)
        # set directly, not as --set strings: a run id such as "12e345" would parse as a number
        flags = {k: getattr(args, k) for k in ("oof_run_id", "oof_dir", "tracking_uri") if getattr(args, k)}
        return run(replace(cfg, **flags))



def cli() -> None:
    """The `fakestack-stack` console script: main() with exit status 0 (its result is for callers)."""
    main()


if __name__ == "__main__":
    main()
