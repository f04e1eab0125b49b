"""What the temporal learners add, and on which fakes: `python -m benchmarks.temporal`.

    python -m benchmarks.temporal                          # profile temporal: oof.py + stack.py, then the tables
    python -m benchmarks.temporal --oof-run RUN_ID         # stack a finished oof run of that profile
    python -m benchmarks.temporal --set synth.seed=1       # another draw of the embedded corpus

Runs `oof.py` and `stack.py` as benchmarks.real does (resumable; outputs under
`<workdir>/bench_real`), then prints three tables from the stack's outer-CV predictions:

1. every learner alone, the plain average, the best stack of each learner subset the sweep tried
   (all learners; `frames`, the frame learners alone; each leave-one-out subset), one fixed
   configuration (logistic regression, no calibration) on all learners and on `frames`, and the
   nested selection, with 95 % group-bootstrap intervals (whole originals resampled) of log loss,
   gain over the prior and ratio to the best single learner;
2. with the temporal learners over without them (the `frames` subset), with paired intervals: the
   best stack of each (optimistic: each is picked by the CV that scores it) and the fixed
   configuration (no selection at all);
3. the generator's own artifact strengths of every labelled fake (the corpus's fake_params.parquet,
   which no stage reads): each learner's Spearman correlation between its P(FAKE) and each
   strength, and its log loss on the fakes where flicker is strong while seam and colour are weak
   ("flicker-led": flicker in the top third of the fakes, seam and colour in the bottom third)
   against the fakes where it is the other way round ("seam/colour-led"), all fakes and the reals.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from benchmarks.real import NESTED, add_stage_args, figures, format_figures, oof_tables, predictions, run_stages
from features.synth.fake import ARTIFACTS
from meta.metrics import score
from meta.resampling import bootstrap_log_losses, interval
from meta.selection import ALL_LEARNERS, BASELINE_METAS, FINAL_STAGE
from pipelines import stack

TEMPORAL_PROFILE = "temporal"
FRAMES_SUBSET = "frames"  # the sweep subset of the frame learners alone (profiles/temporal/stack.yaml)
FAKE_PARAMS = "fake_params.parquet"  # the generator's per-fake strengths (features.synth.corpus)
THIRD = 1 / 3  # strong = top third of the fakes by that strength, weak = bottom third
FLICKER_LED, SEAM_COLOUR_LED = "flicker-led fakes", "seam/colour-led fakes"
FIXED_META, FIXED_CALIBRATION = "logreg", "none"  # the configuration compared without any selection


def subset_bests(result: stack.StackResult) -> dict[str, np.ndarray]:
    """`best stack [subset]: config` -> outer-CV P(FAKE), the lowest-loss stack of each subset."""
    best: dict[str, object] = {}
    for r in result.results:
        if r.spec.meta in BASELINE_METAS:
            continue
        if r.spec.subset not in best or r.metrics["cv_log_loss"] < best[r.spec.subset].metrics["cv_log_loss"]:
            best[r.spec.subset] = r
    return {f"best stack [{s}]: {r.spec.name}": r.cv_stages[FINAL_STAGE] for s, r in best.items()}


def fixed_config(result: stack.StackResult) -> dict[str, np.ndarray]:
    """`{meta} [subset]` -> outer-CV P(FAKE) of the fixed configuration on all learners and `frames`."""
    return {f"{FIXED_META} [{r.spec.subset}]": r.cv_stages[FINAL_STAGE] for r in result.results
            if r.spec.meta == FIXED_META and r.spec.calibration == FIXED_CALIBRATION
            and r.spec.subset in (ALL_LEARNERS, FRAMES_SUBSET)}


def with_without(y, groups, preds: dict[str, np.ndarray], n_replicates: int, seed: int) -> str:
    """All learners over the frame learners alone, best stack and fixed configuration, with intervals."""
    lines = []
    for prefix in ("best stack", FIXED_META):
        with_t = next((k for k in preds if k.startswith(f"{prefix} [{ALL_LEARNERS}]")), None)
        without = next((k for k in preds if k.startswith(f"{prefix} [{FRAMES_SUBSET}]")), None)
        if with_t is None or without is None:
            return f"(no `{FRAMES_SUBSET}` subset in the sweep: set sweep.subsets.{FRAMES_SUBSET} to the frame learners)"
        boot = bootstrap_log_losses(y, {k: preds[k] for k in (with_t, without)}, groups, n_replicates, seed)
        lo, hi = interval(boot[with_t] / boot[without])
        ratio = score(y, preds[with_t])["log_loss"] / score(y, preds[without])["log_loss"]
        lines.append(f"{with_t}\n  over {without}:\n  {ratio:.3f} [{lo:.3f}, {hi:.3f}] (95 %, paired group bootstrap)")
    return "\n".join(lines)


def fake_strengths(videos: pd.DataFrame | None) -> tuple[pd.DataFrame | None, str]:
    """(video_id -> the generator's artifact strengths, from each corpus root's fake_params.parquet,
    or None and why there are none: the oof run's tables not found, or a corpus not generated here)."""
    if videos is None:
        return None, "the oof run's tables were not found"
    tables = []
    for root in videos["root"].astype(str).unique():
        path = stack._resolve_root(root) / FAKE_PARAMS
        if not path.is_file():
            return None, f"{path}: no generator strengths (a corpus that features.synth did not make)"
        tables.append(pd.read_parquet(path)[["video_id", *ARTIFACTS]])
    return pd.concat(tables, ignore_index=True).drop_duplicates("video_id"), ""


def by_artifact(X: pd.DataFrame, preds: dict[str, np.ndarray], learners: list[str],
                strengths: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(Spearman correlation of each learner's P(FAKE) with each strength over the labelled fakes,
    each learner's log loss per group of videos); see the module docstring."""
    y = X["label"].to_numpy(int)
    fakes = X[["video_id"]].assign(row=np.arange(len(X)))[y == 1].merge(strengths, on="video_id")
    corr = pd.DataFrame({a: [spearmanr(preds[l][fakes["row"]], fakes[a]).statistic for l in learners]
                         for a in ARTIFACTS}, index=learners)
    hi = {a: fakes[a] >= fakes[a].quantile(1 - THIRD) for a in ARTIFACTS}
    lo = {a: fakes[a] <= fakes[a].quantile(THIRD) for a in ARTIFACTS}
    groups = {FLICKER_LED: fakes["row"][hi["flicker"] & lo["seam"] & lo["colour"]],
              SEAM_COLOUR_LED: fakes["row"][lo["flicker"] & (hi["seam"] | hi["colour"])],
              "all fakes": fakes["row"], "reals": pd.Series(np.flatnonzero(y == 0))}
    rows = []
    for name, rows_of in groups.items():
        idx = rows_of.to_numpy()
        row = {"videos": name, "n": len(idx)}
        row.update({l: score(y[idx], preds[l][idx])["log_loss"] if len(idx) else np.nan for l in learners})
        rows.append(row)
    return corr, pd.DataFrame(rows)


def main(argv=None) -> dict[str, pd.DataFrame]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_stage_args(parser)
    parser.add_argument("--out", help="also write the tables to CSV files with this prefix")
    parser.set_defaults(profile=TEMPORAL_PROFILE, data=None)
    args = parser.parse_args(argv)
    result, times = run_stages(args)
    X, _ = stack.split_features(result.video_features)
    y, groups, folds = X["label"].to_numpy(int), X["group"].to_numpy(), X["fold"].to_numpy()
    preds, learners, best = predictions(result)
    preds = {k: v for k, v in preds.items() if k != best and k != NESTED}
    preds.update(subset_bests(result))
    preds.update(fixed_config(result))
    if result.nested is not None:
        preds[NESTED] = result.nested.prob
    best = next(k for k in preds if k.startswith(f"best stack [{ALL_LEARNERS}]"))
    table = figures(y, groups, folds, preds, learners, best, args.replicates, args.seed)
    print(f"\n{len(y)} labelled videos ({int(y.sum())} fake) in {len(np.unique(groups))} groups; "
          f"intervals: {args.replicates} group-bootstrap replicates")
    print(format_figures(table))
    print("\nwhat the temporal learners add (best stack with them / without them):")
    print(with_without(y, groups, preds, args.replicates, args.seed))
    tables = {"figures": table}
    strengths, why = fake_strengths(oof_tables(args, result)[0])
    if strengths is None:
        print(f"\nthe tables by artifact strength: skipped ({why})")
    else:
        tables["correlation"], tables["groups"] = by_artifact(X, preds, learners, strengths)
        print("\nSpearman correlation of each learner's P(FAKE) with the generator's strengths (labelled fakes):")
        print(tables["correlation"].to_string(float_format=lambda v: f"{v:.3f}"))
        print("\nlog loss per group of videos (strong = top third of the fakes by that strength, weak = bottom third):")
        print(tables["groups"].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print("\n" + "  ".join(f"{k} {v:.0f} s" for k, v in times.items()))
    if args.out:
        for name, t in tables.items():
            t.to_csv(f"{args.out}{name}.csv", index=name == "correlation")
    return tables


if __name__ == "__main__":
    main()
