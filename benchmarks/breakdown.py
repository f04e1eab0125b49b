"""Figures with intervals per manipulation method, on a test corpus, and for chosen pairs of
configurations: the tables `benchmarks.real` adds below its main one.

Why per method: a face set mixes kinds of fakes (FF++: Deepfakes, Face2Face, FaceSwap), and a
learner that catches one kind can miss another; each method's rows are its fakes with EVERY real
(FF++'s usual protocol), so the reals are shared between methods and the AUC says how well that
kind of fake is told from real faces. Why a test corpus: a cross-dataset run (`oof.py --data A
--test-data B`) trains on A's folds and scores B with models that never saw B, which is the
question a user with new data asks. Why pairs: "does the stack with the self-blended learners beat
the stack without them" is a ratio of two configurations on the same rows, and its paired interval
is much narrower than either configuration's own.

Every interval is a group bootstrap (meta.resampling: whole groups redrawn, every configuration on
the same replicates); log loss and AUC are both given because across datasets the scores shift as a
whole (the log loss then mostly measures calibration) while the AUC says whether the ranking held.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from features.losses import log_loss
from meta.resampling import DEFAULT_REPLICATES, bootstrap_aucs, bootstrap_log_losses, interval
from meta.selection import BASELINE_METAS, FINAL_STAGE

ALL = "all"
METHOD_COLUMN, CORPUS_COLUMN = "method", "part"
SBI_SUFFIX = "_sbi"  # profile sbi names a self-blended learner after its supervised twin: meso_hp_sbi ~ meso_hp
SUBSET_STACK = "best stack [{}]"  # the best stacked configuration within a named learner subset
WITH_SBI, WITHOUT_SBI = "best stack with self-blended", "best stack without self-blended"


def method_masks(y: np.ndarray, methods: pd.Series | None) -> dict[str, np.ndarray]:
    """`all`, then one mask per manipulation method: that method's fakes and every real."""
    masks = {ALL: np.ones(len(y), dtype=bool)}
    if methods is None or methods.isna().all():
        return masks
    methods = methods.astype("string").fillna("").to_numpy(dtype=str)
    for m in sorted({v for v, label in zip(methods, y) if label == 1 and v}):
        masks[m] = (y == 0) | (methods == m)
    return masks


def rated(y, groups, preds: dict[str, np.ndarray], masks: dict[str, np.ndarray],
          n_replicates: int = DEFAULT_REPLICATES, seed: int = 0) -> pd.DataFrame:
    """One row per (rows, configuration): counts, log loss and AUC with group-bootstrap intervals,
    and the mean P(FAKE) of the reals and of the fakes (where the scores sit, for transfer)."""
    y, groups = np.asarray(y, dtype=int), np.asarray(groups)
    out = []
    for rows, mask in masks.items():
        yy, gg = y[mask], groups[mask]
        pp = {k: np.asarray(p, dtype=float)[mask] for k, p in preds.items()}
        ll = bootstrap_log_losses(yy, pp, gg, n_replicates, seed)
        both = yy.min() == 0 and yy.max() == 1
        auc = bootstrap_aucs(yy, pp, gg, n_replicates, seed) if both else None
        for name, p in pp.items():
            row = {"rows": rows, "config": name, "n": len(yy), "n_fake": int(yy.sum()), "groups": len(np.unique(gg)),
                   "log_loss": log_loss(yy, p), "auc": np.nan, "auc_lo": np.nan, "auc_hi": np.nan,
                   "real_mean_p": float(p[yy == 0].mean()) if (yy == 0).any() else np.nan,
                   "fake_mean_p": float(p[yy == 1].mean()) if (yy == 1).any() else np.nan}
            row["ll_lo"], row["ll_hi"] = interval(ll[name])
            if both:
                row["auc"] = _auc(yy, p)
                row["auc_lo"], row["auc_hi"] = interval(auc[name])
            out.append(row)
    return pd.DataFrame(out)


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    return float(roc_auc_score(y, p))


def paired(y, groups, preds: dict[str, np.ndarray], pairs: list[tuple[str, str]],
           n_replicates: int = DEFAULT_REPLICATES, seed: int = 0) -> pd.DataFrame:
    """For each (a, b): log loss of a / b and AUC of a - b, each with its paired group-bootstrap
    interval (a ratio below 1.0 with its interval below 1.0: a beats b on these rows)."""
    pairs = [(a, b) for a, b in pairs if a in preds and b in preds]
    if not pairs:
        return pd.DataFrame(columns=["a", "b", "ratio", "ratio_lo", "ratio_hi", "auc_diff", "diff_lo", "diff_hi"])
    y = np.asarray(y, dtype=int)
    names = sorted({k for pair in pairs for k in pair})
    pp = {k: np.asarray(preds[k], dtype=float) for k in names}
    ll = bootstrap_log_losses(y, pp, groups, n_replicates, seed)
    auc = bootstrap_aucs(y, pp, groups, n_replicates, seed)
    rows = []
    for a, b in pairs:
        ratio = log_loss(y, pp[a]) / log_loss(y, pp[b])
        lo, hi = interval(ll[a] / ll[b])
        dlo, dhi = interval(auc[a] - auc[b])
        rows.append({"a": a, "b": b, "ratio": ratio, "ratio_lo": lo, "ratio_hi": hi,
                     "auc_diff": _auc(y, pp[a]) - _auc(y, pp[b]), "diff_lo": dlo, "diff_hi": dhi})
    return pd.DataFrame(rows)


def _best_per(results, key) -> dict[str, object]:
    """The stacked result (no baseline, no single learner) of lowest outer-CV log loss per `key(r)`
    (None: left out)."""
    best: dict[str, object] = {}
    for r in results:
        k = None if r.spec.meta in BASELINE_METAS or r.spec.meta == "single" else key(r)
        if k is not None and (k not in best or r.metrics["cv_log_loss"] < best[k].metrics["cv_log_loss"]):
            best[k] = r
    return best


def _cv_and_test(named: dict[str, object]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(outer-CV, test) P(FAKE) of each named result; test only where the run had a test split."""
    cv = {name: r.cv_stages[FINAL_STAGE] for name, r in named.items()}
    test = {name: r.test_stages.get(FINAL_STAGE) for name, r in named.items()}
    return cv, {k: v for k, v in test.items() if v is not None}


def subset_stacks(results) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(outer-CV, test) P(FAKE) of the best stacked configuration of each NAMED learner subset
    (not `all`, not the leave-one-out `-learner` ones), by outer-CV log loss."""
    best = _best_per(results, lambda r: None if r.spec.subset == ALL or r.spec.subset.startswith("-")
                     else r.spec.subset)
    return _cv_and_test({SUBSET_STACK.format(s): r for s, r in best.items()})


def sbi_stacks(results) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(outer-CV, test) P(FAKE) of the best stacked configuration holding a self-blended learner
    (WITH_SBI) and of the best holding none (WITHOUT_SBI), by outer-CV log loss; empty unless both
    exist. Issue 28's question ("does the stack with it beat the stack without it") is this pair:
    the overall best stack may hold no self-blended learner, and then no other pair answers it."""
    best = _best_per(results, lambda r: WITH_SBI if any(n.endswith(SBI_SUFFIX) for n in r.spec.learners)
                     else WITHOUT_SBI)
    if len(best) < 2:
        return {}, {}
    return _cv_and_test({f"{side}: {r.spec.name}": r for side, r in best.items()})


def default_pairs(names: list[str], best: str) -> list[tuple[str, str]]:
    """The best stack against each named subset's best stack, the best stack with self-blended
    learners against the best without, and each self-blended learner against its supervised twin
    (`meso_hp_sbi` against `meso_hp`)."""
    pairs = [(best, n) for n in names if n.startswith(SUBSET_STACK.format("")[:-1])]
    with_sbi = [n for n in names if n.startswith(f"{WITH_SBI}:")]
    without_sbi = [n for n in names if n.startswith(f"{WITHOUT_SBI}:")]
    pairs += [(a, b) for a in with_sbi for b in without_sbi]
    pairs += [(n, n[: -len(SBI_SUFFIX)]) for n in names if n.endswith(SBI_SUFFIX) and n[: -len(SBI_SUFFIX)] in names]
    return pairs


def format_rated(table: pd.DataFrame) -> str:
    """The rated table as the terminal shows it."""
    def span(v, lo, hi):
        return f"{v:.3f} [{lo:.3f}, {hi:.3f}]"

    out = pd.DataFrame({
        "rows": table["rows"], "configuration": table["config"],
        "n (fake) groups": [f"{n} ({f}) {g}" for n, f, g in table[["n", "n_fake", "groups"]].to_numpy()],
        "log loss [95 %]": [span(*r) for r in table[["log_loss", "ll_lo", "ll_hi"]].to_numpy()],
        "AUC [95 %]": [span(*r) if np.isfinite(r[0]) else "-" for r in table[["auc", "auc_lo", "auc_hi"]].to_numpy()],
        "mean P(fake) real / fake": [f"{a:.3f} / {b:.3f}" for a, b in table[["real_mean_p", "fake_mean_p"]].to_numpy()],
    })
    return out.to_string(index=False)


def format_paired(table: pd.DataFrame) -> str:
    out = pd.DataFrame({
        "a": table["a"], "b": table["b"],
        "log loss a / b [95 %]": [f"{r:.3f} [{lo:.3f}, {hi:.3f}]" for r, lo, hi in
                                  table[["ratio", "ratio_lo", "ratio_hi"]].to_numpy()],
        "AUC a - b [95 %]": [f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]" for d, lo, hi in
                             table[["auc_diff", "diff_lo", "diff_hi"]].to_numpy()],
    })
    return out.to_string(index=False)
