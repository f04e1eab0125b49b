"""Out-of-fold level-0 predictions: every learner x fold unit trained, checkpointed and resumable.

A unit (learner, fold k) trains on the faces of the videos in the other folds (frame label = video
label), then predicts every face of fold k (the OOF rows) and every face of the unlabelled/test
videos. A learner's test rows are the mean logit over its fold models (docs/design.md rule 4). No number
computed on fold k steers the unit that predicts it (rule 2): fit sees only the training folds.

Resumable: a unit's outputs live in a folder named by a content hash of everything that decides
them (learner and train config, unit seed, the frames table with labels and folds, the crop cache
key). They are written atomically, checkpoint first and metrics.json last, so a folder with a
metrics.json is a finished unit: on rerun it is loaded, not trained. Unit seeds derive from
(global seed, learner, fold), so the order of units and interruptions do not change any result.

Crops: any array-like of (N, S, S, 3) uint8 aligned to the frames rows; the pipeline passes a
features.faces.source.CropSource, which reads each crop from the face cache when a batch needs it,
so no process holds the corpus's pixels (an ndarray works the same, for small sets and tests).

Parallel (`workers` > 1, CPU): units train in single-process workers (features.faces.pool), each with the
frames and the crop source (rows, not pixels) sent once. Small CPU models gain little from a second torch thread and almost 2x
from a second process. Results do not depend on the worker count as long as the torch thread count
of training is fixed (TrainConfig.num_threads, part of the unit key).

No MLflow here (library code): the caller observes units through `unit_scope` hooks.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import numpy as np
import pandas as pd
import torch
from scipy.special import expit
from sklearn.metrics import roc_auc_score
from tqdm.auto import tqdm

from base_learners.inputs import FRAME, ITEMS_VERSION, CropSequences, input_kind, learner_inputs
from base_learners.registry import LearnerConfig, build_learner, learner_key
from base_learners.sbi import SELF_BLENDED, face_regions
from base_learners.train import TrainConfig, fit, predict_logits, seed_everything
from features.common import ConfigError, atomic_write_json, atomic_write_parquet, atomic_write_with, config_hash, from_dict, to_dict
from features.contract import FACE_KEY, FRAME_PREDS_COLUMNS, REFIT_FOLD, UNIT_FILES, UNITS_COLUMNS, unit_name, with_clip_idx
from features.engines import LOCAL_ENGINE, Engine, Resources
from features.faces.pool import n_workers
from features.faces.source import CropSource
from features.losses import log_loss

log = logging.getLogger(__name__)
SEED_MODULUS = 2**31 - 1  # unit seeds must fit torch/numpy seed ranges
ROLE_OOF, ROLE_TEST = "oof", "test"
Crops = np.ndarray | CropSource  # (N, S, S, 3) uint8 aligned to the frames rows


class OOFIntegrityError(AssertionError):
    """The OOF predictions break the out-of-fold promise (missing, duplicated or leaked rows)."""


@dataclass(frozen=True)
class Unit:
    learner: str  # the learner's name in the tables (the key of the learners mapping)
    fold: int
    seed: int
    key: str
    dir: Path

    @property
    def label(self) -> str:
        """`learner/fold<k>`: how progress bars and a Ray task list name the unit."""
        return f"{self.learner}/{unit_name(self.fold)}"


@dataclass
class UnitResult:
    unit: Unit
    cached: bool
    preds: pd.DataFrame  # video_id, frame_idx, face_idx, role, fold_model, logit
    info: dict  # the unit's metrics.json: history, metrics, train_video_ids, sizes, seconds
    seconds: float  # wall time of this call (training or loading)


@dataclass
class OOFResult:
    frame_preds: pd.DataFrame
    units: list[UnitResult] = field(default_factory=list)


class UnitHooks(Protocol):
    """What the caller learns about one unit (the pipeline maps it onto a nested MLflow run)."""

    def on_epoch(self, epoch: int, metrics: dict) -> None: ...

    def on_done(self, result: UnitResult) -> None: ...


class _NoHooks:
    def on_epoch(self, epoch: int, metrics: dict) -> None:
        pass

    def on_done(self, result: UnitResult) -> None:
        pass


UnitScope = Callable[[Unit], AbstractContextManager[UnitHooks]]


def _no_scope(unit: Unit) -> AbstractContextManager[UnitHooks]:
    return nullcontext(_NoHooks())


# ---------------------------------------------------------------- inputs


def merge_train_config(base: TrainConfig, override: dict[str, Any] | None, where: str) -> TrainConfig:
    """`base` with a (possibly nested) partial override, validated like any config."""

    def deep(a: dict, b: dict) -> dict:
        out = dict(a)
        for k, v in b.items():
            out[k] = deep(a[k], v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
        return out

    return from_dict(TrainConfig, deep(to_dict(base), override or {}), where=where)


def unit_seed(seed: int, learner: str, fold: int) -> int:
    """A seed per unit from (global seed, learner, fold): independent of the order units run in."""
    return int(config_hash("unit-seed", seed, learner, fold), 16) % SEED_MODULUS


# ---------------------------------------------------------------- metrics


def _safe_auc(y: np.ndarray, p: np.ndarray) -> float:
    return float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else float("nan")


def _safe_log_loss(y: np.ndarray, p: np.ndarray) -> float:
    return log_loss(y, p)  # NaN when empty


def video_probs(preds: pd.DataFrame) -> pd.DataFrame:
    """Video-level P(FAKE) = mean of its frame probabilities (the simple DFDC baseline)."""
    return preds.groupby("video_id", sort=True).agg(prob=("prob", "mean"), label=("label", "first")).reset_index()


def score_preds(preds: pd.DataFrame) -> dict[str, float]:
    """Frame- and video-level log loss and AUC of rows with `label` and `prob` columns."""
    y, p = preds["label"].to_numpy(int), preds["prob"].to_numpy(float)
    vid = video_probs(preds)
    yv, pv = vid["label"].to_numpy(int), vid["prob"].to_numpy(float)
    return {
        "frame_log_loss": _safe_log_loss(y, p),
        "frame_auc": _safe_auc(y, p),
        "video_log_loss": _safe_log_loss(yv, pv),
        "video_auc": _safe_auc(yv, pv),
        "n_frames": float(len(y)),
        "n_videos": float(len(yv)),
    }


def prior_log_loss(frame_preds: pd.DataFrame, videos: pd.DataFrame) -> float:
    """Video log loss of the constant prior, each fold scored with the other folds' fake rate.

    Over the same videos the learners are scored on (those with OOF rows), so the comparison is
    like for like and the prior itself never sees the fold it scores.
    """
    oof = frame_preds[frame_preds["fold"].notna()].drop_duplicates("video_id")[["video_id", "fold"]]
    vid = oof.merge(videos[["video_id", "label"]], on="video_id")
    probs = np.empty(len(vid))
    for k in vid["fold"].unique():
        held = (vid["fold"] == k).to_numpy()
        probs[held] = vid.loc[~held, "label"].astype(float).mean() if (~held).any() else 0.5
    return _safe_log_loss(vid["label"].to_numpy(int), probs)


# ---------------------------------------------------------------- units


def plan_units(
    frames: pd.DataFrame,
    learners: dict[str, LearnerConfig],
    train_cfgs: dict[str, TrainConfig],
    units_dir: Path,
    crops_key: str,
    refit: bool = False,
) -> list[Unit]:
    """Every learner x fold unit with its seed and cache key (nothing is trained here); with
    `refit`, instead one REFIT_FOLD unit per learner, trained on every labelled video."""
    folds = sorted(int(k) for k in frames["fold"].dropna().unique())
    if len(folds) < 2:
        raise ValueError(f"out-of-fold training needs at least 2 folds with faces; got {folds}")
    rows = frames.drop(columns="clip_idx", errors="ignore").astype({"fold": "float64", "label": "float64"})
    data_key = config_hash(rows, crops_key)
    clip_key = config_hash(with_clip_idx(frames)[FACE_KEY + ["clip_idx"]])  # what pair/track items read
    units = []
    for name, lcfg in learners.items():
        unit_data = data_key if input_kind(lcfg) == FRAME else config_hash(data_key, clip_key, ITEMS_VERSION)
        for k in [REFIT_FOLD] if refit else folds:
            seed = unit_seed(train_cfgs[name].seed, name, k)
            tcfg = dataclasses.replace(train_cfgs[name], seed=seed)
            key = config_hash(learner_key(lcfg), tcfg, k, unit_data)
            units.append(Unit(name, k, seed, key, Path(units_dir) / name / f"{unit_name(k)}-{key}"))
    return units


def _load_unit(unit: Unit) -> UnitResult | None:
    """The finished unit's outputs, or None when it has not finished (or belongs to other inputs)."""
    metrics_path = unit.dir / UNIT_FILES[-1]
    if not metrics_path.exists():
        return None
    t0 = time.perf_counter()
    info = json.loads(metrics_path.read_text())
    if info.get("key") != unit.key:
        return None
    preds = pd.read_parquet(unit.dir / UNIT_FILES[1])
    return UnitResult(unit, True, preds, info, time.perf_counter() - t0)


def throughput(history: list[dict], n_predicted: int, predict_seconds: float) -> dict[str, float]:
    """Faces per second through training (optimisation steps only) and prediction (TTA included).

    What the benchmark of a learner x fold unit reports; a unit loaded from cache keeps the
    figures of the run that trained it.
    """
    seen = sum(h.get("train_samples", 0) for h in history)
    spent = sum(h.get("train_seconds", 0.0) for h in history)
    return {"train_faces_per_s": seen / spent if spent > 0 else float("nan"),
            "predict_faces_per_s": n_predicted / predict_seconds if predict_seconds > 0 else float("nan")}


def n_crops(crops: Crops, rows: np.ndarray) -> int:
    """Face crops the items `rows` read: one each, or their pair's or track's length."""
    return int(crops.lengths()[rows].sum()) if isinstance(crops, CropSequences) else len(rows)


def _unit_preds(frames: pd.DataFrame, rows: np.ndarray, logits: np.ndarray, role: str, fold: int) -> pd.DataFrame:
    out = frames.loc[rows, FACE_KEY].reset_index(drop=True)
    out["role"] = role
    out["fold_model"] = fold
    out["logit"] = logits.astype(np.float32)
    return out


def train_unit(
    unit: Unit,
    frames: pd.DataFrame,
    crops: Crops,
    lcfg: LearnerConfig,
    tcfg: TrainConfig,
    hooks: UnitHooks,
    progress: bool = True,
) -> UnitResult:
    """Train one fold model, predict its held-out fold and the test faces, write the unit atomically.

    A pair or track learner trains and predicts its own items (base_learners.inputs), keyed by
    their first face; their label, group and fold are their video's."""
    t0 = time.perf_counter()
    tcfg = dataclasses.replace(tcfg, seed=unit.seed)
    frames, crops = learner_inputs(frames, crops, input_kind(lcfg))
    fold = frames["fold"]
    train_rows = np.flatnonzero((fold.notna() & (fold != unit.fold)).to_numpy())
    oof_rows = np.flatnonzero((fold == unit.fold).fillna(False).to_numpy())
    test_rows = np.flatnonzero(fold.isna().to_numpy())
    if len(train_rows) == 0:
        raise ValueError(f"unit {unit.learner}/{unit_name(unit.fold)}: no training items (faces, pairs or "
                         "tracks) in the other folds")
    seed_everything(unit.seed)
    model = build_learner(lcfg)
    regions = None  # self-blending: where the training faces are (landmarks from the face cache, if any)
    if tcfg.target == SELF_BLENDED:
        regions = face_regions(frames.iloc[train_rows], crops[train_rows], tcfg.sbi)
    result = fit(
        model, crops[train_rows], frames["label"].to_numpy(dtype="float64", na_value=np.nan)[train_rows].astype(np.int64),
        frames["group"].to_numpy()[train_rows], tcfg, on_epoch=hooks.on_epoch, progress=progress, regions=regions,
    )
    model = result.model
    t_pred = time.perf_counter()
    preds = pd.concat([
        _unit_preds(frames, oof_rows, predict_logits(model, crops[oof_rows], tcfg), ROLE_OOF, unit.fold),
        _unit_preds(frames, test_rows, predict_logits(model, crops[test_rows], tcfg), ROLE_TEST, unit.fold),
    ], ignore_index=True)
    predict_seconds = time.perf_counter() - t_pred
    scored = preds[preds["role"] == ROLE_OOF].merge(frames[FACE_KEY + ["label"]], on=FACE_KEY)
    scored["prob"] = expit(scored["logit"].astype(np.float64))
    info = {
        "key": unit.key, "learner": unit.learner, "fold": unit.fold, "seed": unit.seed,
        "learner_config": to_dict(lcfg), "train_config": to_dict(tcfg),
        "history": result.history, "best_epoch": result.best_epoch,
        "metrics": score_preds(scored) if len(scored) else {},
        "train_video_ids": sorted(set(frames["video_id"].to_numpy()[train_rows].astype(str))),
        "n_train": int(len(train_rows)), "n_oof": int(len(oof_rows)), "n_test": int(len(test_rows)),
        "train_seconds": time.perf_counter() - t0,
        "throughput": throughput(result.history, n_crops(crops, oof_rows) + n_crops(crops, test_rows), predict_seconds),
    }
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_write_with(unit.dir / UNIT_FILES[0], lambda p: torch.save(state, p))
    atomic_write_parquet(preds, unit.dir / UNIT_FILES[1])
    atomic_write_json(info, unit.dir / UNIT_FILES[2])
    return UnitResult(unit, False, preds, info, time.perf_counter() - t0)


def units_table(results: list[UnitResult], relative_to: Path) -> pd.DataFrame:
    """One row per learner x fold unit: where its checkpoint and metrics.json live (`dir`,
    relative to `relative_to`, the run's output folder), so a later stage can package the models."""
    rows = [{"learner": r.unit.learner, "fold": r.unit.fold, "key": r.unit.key,
             "dir": os.path.relpath(r.unit.dir, relative_to)} for r in results]
    return pd.DataFrame(rows, columns=UNITS_COLUMNS)


# ---------------------------------------------------------------- the whole stage


def combine(frames: pd.DataFrame, results: list[UnitResult]) -> pd.DataFrame:
    """frame_preds: OOF rows as predicted; test rows = mean logit over the learner's fold models."""
    tables = []
    for r in results:
        t = r.preds.copy()
        t["learner"] = r.unit.learner
        tables.append(t)
    allp = pd.concat(tables, ignore_index=True)
    allp["logit"] = allp["logit"].astype(np.float64)  # average in float64
    oof = allp[allp["role"] == ROLE_OOF].assign(fold=lambda d: d["fold_model"].astype("Int64"))
    test = allp[allp["role"] == ROLE_TEST].groupby(["learner"] + FACE_KEY, sort=True)["logit"].mean().reset_index()
    test["fold"] = pd.array([pd.NA] * len(test), dtype="Int64")
    out = pd.concat([oof, test], ignore_index=True)
    out["prob"] = expit(out["logit"])
    out = out[FRAME_PREDS_COLUMNS].sort_values(["learner"] + FACE_KEY, kind="stable")
    return out.reset_index(drop=True)


def check_oof(frame_preds: pd.DataFrame, frames: pd.DataFrame, results: list[UnitResult]) -> None:
    """Raise OOFIntegrityError unless every labelled face (every pair or track item, for such
    learners) has exactly one OOF row per learner, from a model whose training videos exclude its
    video, and every test item one row per learner averaged over all of that learner's fold models."""
    n_folds = frames["fold"].nunique()
    trained_on = {(r.unit.learner, r.unit.fold): set(r.info["train_video_ids"]) for r in results}
    kinds = {r.unit.learner: input_kind(from_dict(LearnerConfig, r.info["learner_config"])) for r in results}
    for learner, rows in frame_preds.groupby("learner"):
        items, _ = learner_inputs(frames, None, kinds[learner])
        labelled, test = items[items["fold"].notna()], items[items["fold"].isna()]
        oof = rows[rows["fold"].notna()].merge(labelled[FACE_KEY + ["fold"]], on=FACE_KEY, how="outer",
                                              suffixes=("", "_true"), indicator=True)
        if (oof["_merge"] != "both").any() or oof.duplicated(FACE_KEY).any():
            raise OOFIntegrityError(f"{learner}: OOF rows do not cover each labelled {kinds[learner]} item exactly once")
        if (oof["fold"] != oof["fold_true"]).any():
            raise OOFIntegrityError(f"{learner}: OOF rows predicted by the wrong fold's model")
        for k, part in oof.groupby("fold"):
            leaked = trained_on[(learner, int(k))] & set(part["video_id"])
            if leaked:
                raise OOFIntegrityError(f"{learner}/fold{k}: predicted videos it trained on: {sorted(leaked)[:5]}")
        t = rows[rows["fold"].isna()]
        if len(t) != len(test) or not t.set_index(FACE_KEY).index.sort_values().equals(
                test.set_index(FACE_KEY).index.sort_values()):
            raise OOFIntegrityError(f"{learner}: test rows do not cover each test {kinds[learner]} item exactly once")
        models = [r for r in results if r.unit.learner == learner]
        if len(models) != n_folds:
            raise OOFIntegrityError(f"{learner}: {len(models)} fold models for {n_folds} folds")


_WORKER: dict = {}
PRELOAD = ["base_learners.oof", "timm"]  # imported once by the forkserver


def _init_unit_worker(frames, crops, learners, train_cfgs) -> None:
    torch.set_num_threads(1)  # TrainConfig.num_threads, when set, still decides while fitting
    _WORKER.update(frames=frames, crops=crops, learners=learners, train_cfgs=train_cfgs)


def _train_in_worker(unit: Unit) -> UnitResult:
    w = _WORKER
    return train_unit(unit, w["frames"], w["crops"], w["learners"][unit.learner],
                      w["train_cfgs"][unit.learner], _NoHooks(), progress=False)


def unit_resources(tcfg: TrainConfig, engine: Engine) -> Resources:
    """A GPU (and the DataLoader workers' cores) for a CUDA unit; its torch threads' cores otherwise."""
    if engine.wants_gpu(tcfg.device):
        return Resources(num_cpus=max(1, tcfg.num_workers), num_gpus=1.0)
    return Resources(num_cpus=tcfg.num_threads or 1)


def _train_units(todo, frames, crops, learners, train_cfgs, unit_scope, workers, progress,
                 engine: Engine) -> Iterator[UnitResult]:
    """Train `todo`, yielding each result after its hooks saw it: live per epoch in this process,
    after the fact (`on_done` only) for units trained by a pool or a cluster."""
    workers = n_workers(workers, len(todo))
    if workers == 1 and not engine.distributed:
        for unit in todo:
            with unit_scope(unit) as hooks:
                result = train_unit(unit, frames, crops, learners[unit.learner], train_cfgs[unit.learner],
                                    hooks, progress)
                hooks.on_done(result)
            yield result
        return
    initargs = (frames, crops, learners, train_cfgs)
    resources = [unit_resources(train_cfgs[u.learner], engine) for u in todo] if engine.distributed else None
    for result in engine.map(_train_in_worker, [(u,) for u in todo], workers, _init_unit_worker, initargs,
                             PRELOAD, resources):
        with unit_scope(result.unit) as hooks:
            hooks.on_done(result)
        yield result


def run_oof(
    frames: pd.DataFrame,
    crops: Crops,
    learners: dict[str, LearnerConfig],
    train_cfgs: dict[str, TrainConfig],
    units_dir: Path,
    crops_key: str,
    *,
    unit_scope: UnitScope = _no_scope,
    progress: bool = True,
    workers: int = 1,
    refit: bool = False,
    engine: Engine = LOCAL_ENGINE,
) -> OOFResult:
    """Run (or load) every learner x fold unit and combine them into the checked frame_preds table.

    `frames` comes from `frames_table` and `crops` is aligned to its rows (a CropSource of it);
    `train_cfgs` has one TrainConfig per learner (per-learner overrides already applied);
    `workers` processes train units (1: in this process; 0: one per core); `engine` decides where
    (features.engines: the local pool, or one Ray task per unit, a GPU requested for CUDA units).

    `refit`: instead one model per learner refit on every labelled video (the test-time
    alternative to the k fold models: 1/k of the level-0 cost per scored video); frame_preds then
    holds its test-face predictions only. It predicts no OOF row: the stack is still trained on the
    fold models' OOF predictions, and the refit models only replace them at test time.
    """
    missing = sorted(set(learners) - set(train_cfgs))
    if missing:
        raise ConfigError(f"no train config for learners {missing}")
    if len(crops) != len(frames):
        raise ValueError(f"crops ({len(crops)}) and frames ({len(frames)}) differ in length")
    units = plan_units(frames, learners, train_cfgs, units_dir, crops_key, refit=refit)
    done: dict[Unit, UnitResult] = {}
    bar = tqdm(total=len(units), desc="refit units" if refit else "oof units", unit="unit", disable=not progress)
    todo = []
    for unit in units:
        result = _load_unit(unit)
        if result is None:
            todo.append(unit)
            continue
        with unit_scope(unit) as hooks:
            hooks.on_done(result)
        done[unit] = result
        bar.update()
    log.info("%s: %d units to train, %d finished earlier (%s)", "refit" if refit else "oof", len(todo),
             len(done), units_dir)
    for result in _train_units(todo, frames, crops, learners, train_cfgs, unit_scope, workers, progress,
                               engine):
        done[result.unit] = result
        bar.set_postfix_str(f"{result.unit.label} done")
        bar.update()
    bar.close()
    results = [done[unit] for unit in units]
    if refit:
        return OOFResult(refit_test_preds(results), results)
    frame_preds = combine(frames, results)
    check_oof(frame_preds, frames, results)
    return OOFResult(frame_preds, results)


def refit_test_preds(results: list[UnitResult]) -> pd.DataFrame:
    """The refit models' test-face predictions in the frame_preds columns (fold missing)."""
    tables = [r.preds[r.preds["role"] == ROLE_TEST].assign(learner=r.unit.learner) for r in results]
    preds = pd.concat(tables, ignore_index=True)
    preds["fold"] = pd.array([pd.NA] * len(preds), dtype="Int64")
    preds["logit"] = preds["logit"].astype(np.float64)
    preds["prob"] = expit(preds["logit"])
    preds = preds[FRAME_PREDS_COLUMNS].sort_values(["learner"] + FACE_KEY, kind="stable")
    return preds.reset_index(drop=True)
