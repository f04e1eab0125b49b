"""Level-1 selection: which ensembles the stack stage compares (the sweep), and scoring one.

A configuration (EnsembleSpec) is a learner subset, a meta-learner, a calibration and a clipping
mode. Each is scored by the same outer CV over the level-0 folds (meta.evaluate), then refit on
every OOF video to predict the test videos. Baselines (each learner alone, the plain average) run
through the same StackedEnsemble with no calibration and no clipping, so every row of the
comparison table comes from identical folds. Evaluating a spec needs no MLflow: it returns
arrays and metrics; a caller may pass a `plot` function for its figures, and the pipeline logs
them (it may run in a worker process).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, clone

from features.common import ConfigError
from meta.clipping import DEFAULT_CLIP_BOUNDS, DEFAULT_CLIP_GRID
from meta.ensemble import STAGES, StackedEnsemble
from meta.evaluate import comparison_rows, outer_cv_stages
from meta.metrics import score

ALL_LEARNERS = "all"
MIN_SUBSET = 2  # a named subset of one learner would only repeat that learner's baseline
FINAL_STAGE = STAGES[-1]
BASELINE_METAS = ("single", "average")  # configurations that are baselines, not stacked ensembles


@dataclass
class SweepConfig:
    """Which ensembles the stack stage compares (defaults = the issue's default sweep).

    Every calibration in `calibrations` is its own configuration (reported as such), so the
    best one is never picked on the outer scores and then reported as if chosen blind.
    """

    metas: list[str] = field(default_factory=lambda: ["lgbm", "logreg", "caruana"])
    calibrations: list[str] = field(default_factory=lambda: ["none", "platt", "isotonic", "temperature"])
    clip: str = "cv"  # none | fixed (clip_bounds) | cv (bounds from clip_grid by inner CV)
    clip_bounds: tuple[float, float] = DEFAULT_CLIP_BOUNDS
    clip_grid: list[float] = field(default_factory=lambda: list(DEFAULT_CLIP_GRID))
    leave_one_out: bool = True  # also every subset with one learner left out
    subsets: dict[str, list[str]] = field(default_factory=dict)  # named learner subsets swept too, e.g.
    # {frames: [meso4, resnext]} (the ensemble without the temporal learners); learners absent from
    # the oof run are left out of a subset, and a subset left with fewer than two learners, or equal
    # to one already swept, is skipped
    loo_calibrations: list[str] | None = None  # calibrations on those and the named subsets (None: calibrations)
    baselines: bool = True  # each learner alone + the plain average (per subset)
    target_prior: float | None = None  # deploy-time P(FAKE); None keeps the training prior
    meta_params: dict[str, dict] = field(default_factory=dict)  # e.g. {lgbm: {n_estimators: 100}}


@dataclass(frozen=True)
class EnsembleSpec:
    meta: str
    calibration: str
    clip: str
    learners: tuple[str, ...]
    subset: str  # "all", "-{learner}" (leave-one-out), a named subset, or the single learner's name

    @property
    def is_baseline(self) -> bool:
        return self.meta in BASELINE_METAS

    @property
    def name(self) -> str:
        if self.meta == "single":
            return f"single:{self.learners[0]}"
        if self.is_baseline:
            return f"{self.meta}[{self.subset}]"
        return f"{self.meta}+{self.calibration}+clip_{self.clip}[{self.subset}]"


def make_specs(sweep: SweepConfig, learners: list[str]) -> list[EnsembleSpec]:
    """Baselines first, then meta x calibration over all learners, (optionally) each
    leave-one-learner-out subset, and the named `subsets`."""
    subsets = [(ALL_LEARNERS, tuple(learners))]
    if sweep.leave_one_out and len(learners) > 2:
        subsets += [(f"-{l}", tuple(x for x in learners if x != l)) for l in learners]
    for name, chosen in sweep.subsets.items():
        if name == ALL_LEARNERS or name.startswith("-"):
            raise ConfigError(f"sweep.subsets: {name!r} is reserved (all learners, leave-one-out subsets)")
        present = tuple(l for l in learners if l in chosen)
        if len(present) >= MIN_SUBSET and present not in {ls for _, ls in subsets}:  # not twice
            subsets.append((name, present))
    specs: list[EnsembleSpec] = []
    if sweep.baselines:
        specs += [EnsembleSpec("single", "none", "none", (l,), l) for l in learners]
        specs += [EnsembleSpec("average", "none", "none", ls, s) for s, ls in subsets]
    for s, ls in subsets:
        loo = s != ALL_LEARNERS and sweep.loo_calibrations is not None
        cals = sweep.loo_calibrations if loo else sweep.calibrations
        specs += [EnsembleSpec(m, c, sweep.clip, ls, s) for m in sweep.metas for c in cals]
    return specs


def build_ensemble(spec: EnsembleSpec, sweep: SweepConfig, inner_k: int, seed: int) -> StackedEnsemble:
    """The StackedEnsemble of a spec; the learner subset is passed to the meta-learner."""
    params = dict(sweep.meta_params.get(spec.meta, {}))
    if spec.meta == "single":
        params["learner"] = spec.learners[0]
    else:
        params["learners"] = list(spec.learners)
    if spec.meta in ("lgbm", "logreg"):
        params.setdefault("seed", seed)
    baseline = spec.is_baseline
    return StackedEnsemble(
        meta=spec.meta, meta_params=params, calibration=spec.calibration,
        clip="none" if baseline else spec.clip, clip_bounds=tuple(sweep.clip_bounds),
        clip_grid=tuple(sweep.clip_grid), target_prior=None if baseline else sweep.target_prior,
        inner_k=inner_k, seed=seed,
    )


@dataclass
class SpecResult:
    """Everything the pipeline reports about one configuration."""

    spec: EnsembleSpec
    cv_stages: dict[str, np.ndarray]  # outer-CV P(FAKE) per stage, rows = labelled videos
    test_stages: dict[str, np.ndarray]  # refit model's P(FAKE) per stage, rows = test videos
    rows: list[dict]  # comparison-table rows (one per reported stage)
    metrics: dict[str, float]  # MLflow metrics, named alike across configurations
    ensemble: StackedEnsemble  # refit on every labelled video
    test_no_face: np.ndarray
    plots: dict = field(default_factory=dict)  # file name -> path, from the caller's `plot`
    importance: pd.Series | None = None


def reported_stages(spec: EnsembleSpec, first_in_family: bool) -> tuple[str, ...]:
    """Stages a configuration contributes to the comparison table, without duplicate rows.

    Baselines have one meaningful stage (raw). Within a calibration family the raw stage is the
    same model for every calibration, so only the family's first configuration lists it; a
    calibrated stage is listed where a calibrator exists; every meta-learner lists its final
    clipped stage. (MLflow metrics keep every stage for every configuration.)
    """
    if spec.is_baseline:
        return ("raw",)
    return tuple(s for s, keep in (("raw", first_in_family), ("calibrated", spec.calibration != "none"),
                                   (FINAL_STAGE, True)) if keep)


def _metrics(spec, cv_stages, y, test_stages, y_test) -> dict[str, float]:
    """cv_* = the final stage; {stage}_cv_* per stage; test_* when test labels exist."""
    out: dict[str, float] = {}
    final = score(y, cv_stages[FINAL_STAGE])
    out.update({f"cv_{k}": v for k, v in final.items() if k != "n"})
    for stage in (("raw",) if spec.is_baseline else STAGES):
        out.update({f"{stage}_cv_{k}": v for k, v in score(y, cv_stages[stage]).items() if k != "n"})
    if y_test is not None:
        labelled = ~np.isnan(y_test)
        if labelled.any():
            test = score(y_test[labelled], test_stages[FINAL_STAGE][labelled])
            out.update({f"test_{k}": v for k, v in test.items() if k != "n"})
    return {k: float(v) for k, v in out.items()}


class CalibrationFamily(ClassifierMixin, BaseEstimator):
    """Several StackedEnsembles that differ only in calibration, from ONE fit.

    The meta-learner's inner OOF predictions and its refit do not depend on the calibration, so
    the family fits one StackedEnsemble (with a calibrator, so the inner OOF exists) and derives
    every sibling with StackedEnsemble.with_calibration. It is an estimator, so meta.evaluate's
    outer CV (and its group-leak assertion) runs it like any other; predict_stages returns
    "{calibration}|{stage}" keys.
    """

    def __init__(self, ensemble: StackedEnsemble | None = None, calibrations: tuple[str, ...] = ("none",)):
        self.ensemble = ensemble
        self.calibrations = calibrations

    def fit(self, X, y, groups=None):
        y = np.asarray(y, dtype=int)
        needs_inner = [c for c in self.calibrations if c != "none"]
        first = needs_inner[0] if needs_inner else self.calibrations[0]
        base = clone(self.ensemble).set_params(calibration=first).fit(X, y, groups=groups)
        self.members_ = {c: base if c == first else base.with_calibration(c, X, y) for c in self.calibrations}
        self.classes_ = base.classes_
        return self

    def predict_stages(self, X) -> dict[str, np.ndarray]:
        return {f"{c}|{stage}": p for c, m in self.members_.items() for stage, p in m.predict_stages(X).items()}

    def no_face_mask(self, X) -> np.ndarray:
        return next(iter(self.members_.values())).no_face_mask(X)


def families(specs: list[EnsembleSpec]) -> list[list[EnsembleSpec]]:
    """Specs grouped by everything but the calibration, in first-seen order."""
    groups: dict[tuple, list[EnsembleSpec]] = {}
    for s in specs:
        groups.setdefault((s.meta, s.clip, s.learners, s.subset), []).append(s)
    return list(groups.values())


def evaluate_family(specs: list[EnsembleSpec], sweep: SweepConfig, X: pd.DataFrame, y: np.ndarray,
                    folds: np.ndarray, groups: np.ndarray, X_test: pd.DataFrame,
                    y_test: np.ndarray | None, inner_k: int, seed: int,
                    plot: Callable[[SpecResult, np.ndarray], dict] | None = None) -> list[SpecResult]:
    """Outer CV, refit on all labelled rows, test predictions and metrics for specs that differ
    only in calibration (one family); `plot(result, y)` (a picklable function) adds its figures."""
    cals = tuple(s.calibration for s in specs)
    family = CalibrationFamily(build_ensemble(specs[0], sweep, inner_k, seed), cals)
    cv = outer_cv_stages(family, X, y, folds, groups)
    refit = clone(family).fit(X, y, groups=groups)
    test_all = refit.predict_stages(X_test) if len(X_test) else {}
    out = []
    for i, spec in enumerate(specs):
        cv_stages = {st: cv.stages[f"{spec.calibration}|{st}"] for st in STAGES}
        test_stages = {st: test_all.get(f"{spec.calibration}|{st}", np.empty(0)) for st in STAGES}
        out.append(_spec_result(spec, cv_stages, test_stages, refit.members_[spec.calibration],
                                y, X_test, y_test, plot, reported_stages(spec, i == 0)))
    return out


def _spec_result(spec, cv_stages, test_stages, ensemble, y, X_test, y_test, plot,
                 stages: tuple[str, ...]) -> SpecResult:
    extra = {"meta": spec.meta, "calibration": spec.calibration,
             "clip": "none" if spec.is_baseline else spec.clip,
             "learners": ",".join(spec.learners), "subset": spec.subset}
    rows = comparison_rows(spec.name, {s: cv_stages[s] for s in stages}, y, extra)
    labelled = None if y_test is None else ~np.isnan(y_test)
    if labelled is not None and labelled.any():
        for row in rows:
            t = score(y_test[labelled], test_stages[row["stage"]][labelled])
            row.update(test_log_loss=t["log_loss"], test_auc=t["auc"])
    res = SpecResult(spec=spec, cv_stages=cv_stages, test_stages=test_stages, rows=rows,
                     metrics=_metrics(spec, cv_stages, y, test_stages, y_test), ensemble=ensemble,
                     test_no_face=ensemble.no_face_mask(X_test) if len(X_test) else np.zeros(0, bool))
    if spec.meta == "lgbm":
        res.importance = ensemble.meta_.feature_importances_
    if plot is not None:
        res.plots = plot(res, y)
    return res
