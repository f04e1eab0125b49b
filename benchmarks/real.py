"""What stacking adds on a real face set, with intervals: `python -m benchmarks.real`.

    python -m benchmarks.real --data ../shared/data/dfdc-faces-dev --profile real
    python -m benchmarks.real --data DIR --profile real --oof-run RUN_ID   # stack an existing oof run
    python -m benchmarks.real --data DIR --profile real --stack-set sweep.metas=[logreg]

Runs the whole of `oof.py` (`oof.run`; the face cache and learner units in the workdir are reused,
so a rerun resumes) unless `--oof-run` or `--oof-dir` names a finished one, then the whole of
`stack.py` (`stack.run`, outputs under `<workdir>/bench_real`), and prints one table from that
stack's outer-CV predictions: each learner alone, the constant prior (the training folds' share
of fakes, per outer fold), the plain average, the best stack (lowest outer-CV log loss of the
sweep: optimistic, since the same CV picks it) and the nested selection (the sweep re-run inside
each outer training part: the honest figure). Every log loss has a 95 % group-bootstrap interval
(meta.resampling: whole originals resampled, all rows on the same replicates), and so do the gain
over the prior and the ratios to the best single learner and to the plain average. A bootstrap over
originals is what another draw of originals from the same source would do to these figures with
the learners held fixed. Then the learners' within-class error correlation (reals, fakes, pooled).

`--why` (on by default; `--no-why` skips it) adds what limits the stack, from the same rows:
(a) the shuffle bound: the level-1 logistic regression refit by the same outer folds after each
weaker learner's video features are permuted within (class, outer fold) -- every learner keeps its
class-conditional scores, but its errors become independent of the best learner's and of each
other's -- against the same stack on the measured features: the gap is what the shared part of the
errors costs; (b) the within-class error correlation per third of the videos by face width, where
the face set gives a width (a videos-table `original_width`, else the face boxes when their widths
vary), to see whether small faces are where the learners fail together.

The same figures, without intervals, are in stack.py's own comparison table.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

from base_learners.timm_learners import PretrainedUnavailableError
from benchmarks import breakdown
from features.aggregate import SEP
from meta.evaluate import outer_cv
from meta.learners import build_meta
from meta.metrics import log_loss, score
from meta.resampling import DEFAULT_REPLICATES, bootstrap_log_losses, interval, mean_off_diagonal, within_class_error_correlation
from meta.selection import BASELINE_METAS, FINAL_STAGE
from pipelines import oof, stack
from pipelines.config import WORK_DIR, add_config_args, build_config, exit_on_user_error

REAL_PROFILE = "real"
BENCH_DIR = "bench_real"  # under the workdir
PRIOR = "constant prior"
AVERAGE = "plain average"
NESTED = "nested selection"
WHY_META = "logreg"  # the level-1 model of the shuffle bound: the sweep's best meta on real faces
SHUFFLE_DRAWS = 5  # independent within-class permutations of the weaker learners
WIDTH_BINS = 3  # face-width quantile bins (terciles) of the correlation by face size
FACE_WIDTH_COLUMN = "original_width"  # a videos-table column some face sets carry (px of the face)


def fold_prior(y: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Each video's constant prediction: the share of fakes among the OTHER folds (what a
    meta-learner without features would learn there)."""
    p = np.empty(len(y))
    for k in np.unique(folds):
        held = folds == k
        p[held] = y[~held].mean()
    return p


def predictions(result: stack.StackResult) -> tuple[dict[str, np.ndarray], list[str], str]:
    """(config -> outer-CV P(FAKE) per labelled video, learner names, best stack's name)."""
    preds: dict[str, np.ndarray] = {}
    learners = []
    for r in result.results:
        if r.spec.meta == "single":
            preds[r.spec.learners[0]] = r.cv_stages[FINAL_STAGE]
            learners.append(r.spec.learners[0])
        elif r.spec.meta == "average" and r.spec.subset == "all":
            preds[AVERAGE] = r.cv_stages[FINAL_STAGE]
    stacked = [r for r in result.results if r.spec.meta not in BASELINE_METAS]
    best = min(stacked, key=lambda r: r.metrics["cv_log_loss"])
    preds[f"best stack: {best.spec.name}"] = best.cv_stages[FINAL_STAGE]
    if result.nested is not None:
        preds[NESTED] = result.nested.prob
    return preds, learners, f"best stack: {best.spec.name}"


def figures(y, groups, folds, preds: dict[str, np.ndarray], learners: list[str], best: str,
            n_replicates: int = DEFAULT_REPLICATES, seed: int = 0) -> pd.DataFrame:
    """One row per configuration: log loss and AUC with intervals, gain over the prior and ratios
    to the best single learner and to the plain average, each with its paired interval."""
    preds = {PRIOR: fold_prior(np.asarray(y, float), np.asarray(folds)), **preds}
    boot = bootstrap_log_losses(y, preds, groups, n_replicates, seed)
    point = {k: score(y, p) for k, p in preds.items()}
    single = min(learners, key=lambda k: point[k]["log_loss"])
    rows = []
    for name in preds:
        ll = point[name]["log_loss"]
        row = {"config": name, "log_loss": ll, "ll_lo": np.nan, "ll_hi": np.nan,
               "auc": point[name]["auc"], "gain_over_prior": point[PRIOR]["log_loss"] - ll}
        row["ll_lo"], row["ll_hi"] = interval(boot[name])
        row["gain_lo"], row["gain_hi"] = interval(boot[PRIOR] - boot[name])
        row["over_best_single"] = ll / point[single]["log_loss"]
        row["obs_lo"], row["obs_hi"] = interval(boot[name] / boot[single])
        if AVERAGE in preds:
            row["over_average"] = ll / point[AVERAGE]["log_loss"]
            row["oa_lo"], row["oa_hi"] = interval(boot[name] / boot[AVERAGE])
        row["role"] = ("best single" if name == single else "learner" if name in learners
                       else "best stack" if name == best else "")
        rows.append(row)
    return pd.DataFrame(rows)


def format_figures(table: pd.DataFrame) -> str:
    """The table as the terminal shows it: value [lo, hi] columns."""
    def span(v, lo, hi, digits=3):
        return f"{v:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"

    out = pd.DataFrame({
        "configuration": table["config"], "role": table["role"],
        "log loss [95 %]": [span(*r) for r in table[["log_loss", "ll_lo", "ll_hi"]].to_numpy()],
        "AUC": table["auc"].map(lambda v: f"{v:.3f}"),
        "gain over prior [95 %]": [span(*r) for r in table[["gain_over_prior", "gain_lo", "gain_hi"]].to_numpy()],
        "/ best single [95 %]": [span(*r) for r in table[["over_best_single", "obs_lo", "obs_hi"]].to_numpy()],
    })
    if "over_average" in table:
        out["/ average [95 %]"] = [span(*r) for r in table[["over_average", "oa_lo", "oa_hi"]].to_numpy()]
    return out.to_string(index=False)


def correlations(y, preds: dict[str, np.ndarray], learners: list[str]) -> dict[str, pd.DataFrame]:
    return within_class_error_correlation(y, pd.DataFrame({k: preds[k] for k in learners}))


# ---------------------------------------------------------------- why the stack gains so little


def outer_cv_stack(X: pd.DataFrame, y: np.ndarray, folds: np.ndarray, learners: list[str],
                   meta: str = WHY_META) -> np.ndarray:
    """Outer-CV P(FAKE) of one level-1 model (no calibration, no clipping) over `learners`, by
    the stack's own folds and groups (X's `group` column)."""
    return outer_cv(build_meta(meta, learners=learners), X, y, folds, X["group"].to_numpy())


def learner_columns(X: pd.DataFrame, learner: str) -> list[str]:
    return [c for c in X.columns if c.startswith(f"{learner}{SEP}")]


def shuffle_within_class(X: pd.DataFrame, y: np.ndarray, folds: np.ndarray, learners: list[str],
                         rng: np.random.Generator) -> pd.DataFrame:
    """A copy of X where each of `learners` has its feature rows permuted within every
    (class, outer fold) cell, independently per learner: the same scores per class and fold, but
    which video gets which score no longer depends on the video."""
    out = X.copy()
    for name in learners:
        cols = learner_columns(X, name)
        block = X[cols].to_numpy()
        for cls in (0, 1):
            for k in np.unique(folds):
                rows = np.flatnonzero((y == cls) & (folds == k))
                block[rows] = block[rng.permutation(rows)]
        out[cols] = block
    return out


def shuffle_bound(X: pd.DataFrame, y: np.ndarray, folds: np.ndarray, learners: list[str], best: str,
                  best_alone: np.ndarray, n_draws: int = SHUFFLE_DRAWS, seed: int = 0) -> pd.DataFrame:
    """Log loss of the level-1 stack on the measured features and with the learners other than
    `best` shuffled within class (n_draws permutations), each also as a ratio to `best` alone
    (`best_alone`: its outer-CV P(FAKE) as the comparison table scores it)."""
    rng = np.random.default_rng(seed)
    weaker = [name for name in learners if name != best]
    draws = [log_loss(y, outer_cv_stack(shuffle_within_class(X, y, folds, weaker, rng), y, folds, learners))
             for _ in range(n_draws)]
    single = log_loss(y, best_alone)
    table = pd.DataFrame([
        {"stack": f"{best} alone", "log_loss": single, "spread": 0.0},
        {"stack": f"{WHY_META} on {best} alone", "spread": 0.0,
         "log_loss": log_loss(y, outer_cv_stack(X, y, folds, [best]))},
        {"stack": f"{WHY_META} on all {len(learners)}, as measured", "spread": 0.0,
         "log_loss": log_loss(y, outer_cv_stack(X, y, folds, learners))},
        {"stack": f"{WHY_META} on all {len(learners)}, the {len(weaker)} weaker shuffled within class "
                  f"(mean of {n_draws})", "log_loss": float(np.mean(draws)), "spread": float(np.ptp(draws))},
    ])
    table["over_best_single"] = table["log_loss"] / single
    return table


def face_widths(videos: pd.DataFrame, faces: pd.DataFrame | None, video_ids) -> tuple[np.ndarray | None, str]:
    """(each video's face width in px, where it came from) or (None, why there is none): the
    videos table's FACE_WIDTH_COLUMN where the corpus gives it (a face set's metadata), else the
    mean width of the video's face boxes, if they vary."""
    ids = pd.Index(pd.Series(video_ids).astype(str))
    if FACE_WIDTH_COLUMN in videos.columns:
        width = videos.set_index(videos["video_id"].astype(str))[FACE_WIDTH_COLUMN]
        width = pd.to_numeric(width.reindex(ids), errors="coerce").to_numpy(float)
        if np.isfinite(width).sum() >= WIDTH_BINS:
            return width, f"videos.{FACE_WIDTH_COLUMN}"
    if faces is None or faces.empty:
        return None, f"no videos.{FACE_WIDTH_COLUMN} given and no faces table"
    box = (faces["x1"] - faces["x0"]).groupby(faces["video_id"].astype(str)).mean().reindex(ids)
    if box.nunique() < WIDTH_BINS:
        return None, (f"no videos.{FACE_WIDTH_COLUMN} given, and the face boxes are {box.nunique()} "
                      f"width(s) (whole images: {box.median():.0f} px)")
    return box.to_numpy(float), "face boxes (x1 - x0, mean per video)"


def correlation_by_width(y: np.ndarray, probs: pd.DataFrame, widths: np.ndarray,
                         n_bins: int = WIDTH_BINS) -> pd.DataFrame:
    """Per face-width quantile bin: its width range, videos, and the mean pooled within-class error
    correlation over pairs of learners (videos without a width are left out)."""
    known = np.isfinite(widths)
    edges = np.unique(np.quantile(widths[known], np.linspace(0.0, 1.0, n_bins + 1)))
    bins = np.clip(np.searchsorted(edges, widths, side="right") - 1, 0, len(edges) - 2)
    rows = []
    for b in range(len(edges) - 1):
        rows_b = known & (bins == b)
        corr = within_class_error_correlation(y[rows_b], probs.loc[rows_b].reset_index(drop=True))
        rows.append({"width_px": f"{edges[b]:.0f}-{edges[b + 1]:.0f}", "videos": int(rows_b.sum()),
                     "mean_pooled_corr": mean_off_diagonal(corr["pooled"])})
    return pd.DataFrame(rows)


def test_predictions(result: stack.StackResult, best: str) -> dict[str, np.ndarray]:
    """Test-split P(FAKE) of each learner alone, the plain average and the best stack (refit on
    every labelled video), named as in `predictions`."""
    out: dict[str, np.ndarray] = {}
    for r in result.results:
        p = r.test_stages.get(FINAL_STAGE)
        if p is None:
            continue
        if r.spec.meta == "single":
            out[r.spec.learners[0]] = p
        elif r.spec.meta == "average" and r.spec.subset == "all":
            out[AVERAGE] = p
        elif best == f"best stack: {r.spec.name}":
            out[best] = p
    return out


def print_breakdowns(X: pd.DataFrame, X_test: pd.DataFrame, preds: dict[str, np.ndarray], best: str,
                     args, result: stack.StackResult) -> dict[str, pd.DataFrame]:
    """Per-method figures of the outer CV, the named subsets' best stacks against the best stack,
    the best stack with self-blended learners against the best without, each self-blended learner
    against its twin, and all of it again on a labelled test split."""
    videos, _ = oof_tables(args, result)
    sub_cv, sub_test = breakdown.subset_stacks(result.results)
    sbi_cv, sbi_test = breakdown.sbi_stacks(result.results)
    sub_cv, sub_test = {**sub_cv, **sbi_cv}, {**sub_test, **sbi_test}
    tables = {}
    for split, rows, split_preds in (("outer CV", X, {**preds, **sub_cv}),
                                     ("test", X_test, {**test_predictions(result, best), **sub_test})):
        y = rows["label"].to_numpy(dtype=float) if len(rows) else np.array([])
        if not len(y) or not np.isfinite(y).all() or len(np.unique(y)) < 2 or not split_preds:
            continue
        methods = None
        if videos is not None and breakdown.METHOD_COLUMN in videos:
            methods = videos.set_index("video_id")[breakdown.METHOD_COLUMN].reindex(rows["video_id"].astype(str))
            methods = methods.reset_index(drop=True)
        masks = breakdown.method_masks(y.astype(int), methods)
        groups = rows["group"].astype(str).to_numpy()
        if len(masks) > 1 or split == "test":
            rated = breakdown.rated(y, groups, split_preds, masks, args.replicates, args.seed)
            print(f"\n{split}: per manipulation method (each method's fakes with every real)"
                  if len(masks) > 1 else f"\n{split}: the test split")
            print(breakdown.format_rated(rated))
            tables[f"{split} rated"] = rated
        pairs = breakdown.default_pairs(list(split_preds), best)
        if pairs:
            table = breakdown.paired(y, groups, split_preds, pairs, args.replicates, args.seed)
            print(f"\n{split}: paired comparisons")
            print(breakdown.format_paired(table))
            tables[f"{split} paired"] = table
    return tables


def oof_tables(args, result: stack.StackResult) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """The oof run's videos and faces tables (None, None when its folder is unknown)."""
    folder = stack.oof_output_dir(replace(stack.StackConfig(), oof_dir=args.oof_dir), result.oof_run_id)
    if folder is None or not (folder / "videos.parquet").is_file():
        return None, None
    faces = folder / "faces.parquet"
    return pd.read_parquet(folder / "videos.parquet"), pd.read_parquet(faces) if faces.is_file() else None


def print_why(X: pd.DataFrame, preds: dict[str, np.ndarray], learners: list[str], args,
              result: stack.StackResult) -> None:
    """(a) the shuffle bound and (b) the error correlation by face width, printed."""
    y, folds = X["label"].to_numpy(int), X["fold"].to_numpy()
    best = min(learners, key=lambda k: log_loss(y, preds[k]))
    bound = shuffle_bound(X, y, folds, learners, best, preds[best], args.shuffle_draws, args.seed)
    print(f"\nwhy not more: the {WHY_META} stack by the same outer folds, with the learners other than {best} "
          "shuffled within (class, fold) (spread: max - min over draws):")
    print(bound.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    videos, faces = oof_tables(args, result)
    widths, source = (None, "the oof run's tables were not found") if videos is None else \
        face_widths(videos, faces, X["video_id"])
    if widths is None:
        print(f"\nerror correlation by face width: skipped ({source})")
        return
    probs = pd.DataFrame({k: preds[k] for k in learners})
    print(f"\nwithin-class error correlation (pooled, mean over pairs) by face width ({source}):")
    print(correlation_by_width(y, probs, widths).to_string(index=False, float_format=lambda v: f"{v:.3f}"))

STAGE_ERRORS = (stack.StackInputError, PretrainedUnavailableError, MlflowException)  # besides config errors


def run_stages(args, prog: str = "benchmarks.real") -> tuple[stack.StackResult, dict[str, float]]:
    """oof (unless a finished run is named) and stack; returns the stack result and the times. A
    user's mistake (a bad --set, a corpus too small for the profile's inner CV) ends with one line
    and exit status 2, as in oof.py and stack.py."""
    with exit_on_user_error(prog, STAGE_ERRORS):
        return _run_stages(args)


def _run_stages(args) -> tuple[stack.StackResult, dict[str, float]]:
    workdir = Path(args.workdir) if args.workdir else WORK_DIR
    times: dict[str, float] = {}
    stack_cfg = build_config(stack.StackConfig, "stack", args.profile, args.stack_overrides)
    stack_cfg = replace(stack_cfg, tracking_uri=args.tracking_uri, registry_name="",
                        output_dir=str(workdir / BENCH_DIR))
    if args.oof_dir:
        stack_cfg = replace(stack_cfg, oof_dir=args.oof_dir)
    else:
        run_id = args.oof_run_id
        if run_id is None:
            oof_cfg = build_config(oof.OOFConfig, oof.PIPELINE, args.profile, args.overrides)
            oof_cfg = replace(oof_cfg, data=list(args.data or oof_cfg.data), workdir=str(workdir),
                              tracking_uri=args.tracking_uri, progress=False)
            t0 = time.perf_counter()
            mlflow_dir = stack.mlflow_dir_for(args.tracking_uri) or oof.MLFLOW_DIR
            level0 = oof.run(oof_cfg, profile=args.profile, mlflow_dir=mlflow_dir)
            times["oof_seconds"] = time.perf_counter() - t0
            print(oof.report(level0), flush=True)
            run_id = level0.run_id
        stack_cfg = replace(stack_cfg, oof_run_id=run_id)
    t0 = time.perf_counter()
    result = stack.run(stack_cfg, progress=False)
    times["stack_seconds"] = time.perf_counter() - t0
    return result, times


def add_stage_args(parser: argparse.ArgumentParser) -> None:
    """The flags of `run_stages` and the bootstrap, shared with benchmarks.temporal."""
    parser.add_argument("--oof-run", dest="oof_run_id", help="stack this finished oof run instead of running oof")
    parser.add_argument("--oof-dir", help="stack the oof tables in this folder instead of running oof")
    parser.add_argument("--workdir", help="working folder (default: repo/.fakestack)")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite under mlflow/)")
    parser.add_argument("--stack-set", dest="stack_overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override of the stack config (repeatable)")
    parser.add_argument("--replicates", type=int, default=DEFAULT_REPLICATES, help="bootstrap replicates")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    add_config_args(parser)  # --profile (both stages) and --set (the oof config)


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", nargs="+", metavar="PATH", help="face set folder(s) (default: the profile's)")
    add_stage_args(parser)
    parser.add_argument("--out", help="also write the table to this CSV")
    parser.add_argument("--why", action=argparse.BooleanOptionalAction, default=True,
                        help="also print what limits the stack (shuffle bound, correlation by face width)")
    parser.add_argument("--shuffle-draws", type=int, default=SHUFFLE_DRAWS, help="permutations of the shuffle bound")
    parser.set_defaults(profile=REAL_PROFILE)
    args = parser.parse_args(argv)
    result, times = run_stages(args)
    X, X_test = stack.split_features(result.video_features)
    y, groups, folds = X["label"].to_numpy(int), X["group"].to_numpy(), X["fold"].to_numpy()
    preds, learners, best = predictions(result)
    table = figures(y, groups, folds, preds, learners, best, args.replicates, args.seed)
    n_groups = len(np.unique(groups))
    print(f"\n{len(y)} labelled videos ({int(y.sum())} fake) in {n_groups} groups, {len(np.unique(folds))} "
          f"outer folds; intervals: {args.replicates} group-bootstrap replicates")
    print(format_figures(table))
    corr = correlations(y, preds, learners)
    for name, m in corr.items():
        print(f"\nwithin-class error correlation, {name} (mean over pairs {mean_off_diagonal(m):.3f}):")
        print(m.to_string(float_format=lambda v: f"{v:.3f}"))
    if result.nested is not None:
        print(f"\nnested selection picked per outer fold: {result.nested.picks}")
    if args.out:
        table.to_csv(args.out, index=False)
    print_breakdowns(X, X_test, preds, best, args, result)
    if args.why:
        print_why(X, preds, learners, args, result)
    print("\n" + "  ".join(f"{k} {v:.0f} s" for k, v in times.items()))
    print(f"stack outputs: {result.output_dir}; detector: {result.detector_uri or result.detector_note}")
    return table


if __name__ == "__main__":
    main()
