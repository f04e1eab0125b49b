"""Whether a corpus has enough groups for the sweep's inner cross-validations, checked before the sweep.

Why: the stack's CVs nest. Each outer training part (the level-0 folds but one) is split again by
StratifiedGroupKFold(inner_k) for calibration and clip bounds (meta.ensemble); nested selection
(meta.nested) runs that on the folds but two; and LightGBM with `n_trees: cv` splits each of those
parts, and each inner training split, once more (cv_k). On a small corpus the innermost split has
fewer groups (originals with their fakes) than folds, and scikit-learn stops minutes into the sweep
with a traceback that names neither the setting nor the part (`n_splits=5 greater than the number of
groups: 2`), or with one class among the videos a meta-learner is fitted on (it fits on videos with a
face only). Here the same splits are made up front on the labels, groups and face flags alone
(cheap: no model is fitted), and the first shortfall comes back as one sentence naming the setting
and the count.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from meta.learners import LGBMMeta
from meta.nested import MIN_FOLDS
from meta.selection import EnsembleSpec, SweepConfig

_LGBM_DEFAULTS = {k: p.default for k, p in inspect.signature(LGBMMeta.__init__).parameters.items()}


def _parts(folds: np.ndarray, nested: bool) -> Iterator[tuple[np.ndarray, str, str]]:
    """(row mask, what it is, the way out) of every part a StackedEnsemble is fitted on, smallest
    kinds last."""
    uniq = sorted(np.unique(folds).tolist())
    for k in uniq:
        yield folds != k, f"the outer training part without level-0 fold {k}", "give a corpus with more originals"
    if nested and len(uniq) >= MIN_FOLDS:
        for k in uniq:
            for j in uniq:
                if j != k:
                    yield (~np.isin(folds, [k, j]), f"the nested selection's training part without folds {k} and {j}",
                           "set nested=false, or give a corpus with more originals")


def _short(n_splits: int, y: np.ndarray, groups: np.ndarray) -> int | None:
    """The group count when StratifiedGroupKFold(n_splits) would refuse these rows, else None (its
    own two conditions: more splits than groups, or than the members of every class)."""
    n_groups = len(np.unique(groups))
    _, counts = np.unique(y, return_counts=True)
    return n_groups if n_splits > n_groups or (counts < n_splits).all() else None


def inner_cv_shortfall(specs: list[EnsembleSpec], sweep: SweepConfig, y: np.ndarray, folds: np.ndarray,
                       groups: np.ndarray, inner_k: int, seed: int, nested: bool,
                       face: np.ndarray | None = None) -> str | None:
    """One line naming the setting whose CV has too few groups somewhere in the sweep, or None.
    `face`: the rows with a face (meta-learners fit on those alone; None: every row)."""
    y, folds, groups = np.asarray(y, dtype=int), np.asarray(folds), np.asarray(groups)
    face = np.ones(len(y), bool) if face is None else np.asarray(face, bool)
    stacked = [s for s in specs if not s.is_baseline]
    needs_inner = any(s.calibration != "none" or s.clip == "cv" for s in stacked)
    lgbm = {**_LGBM_DEFAULTS, **sweep.meta_params.get("lgbm", {})}
    cv_k = lgbm["cv_k"] if any(s.meta == "lgbm" for s in stacked) and lgbm["n_trees"] == "cv" else None
    for mask, where, fix in _parts(folds, nested):
        yp, gp, fp = y[mask], groups[mask], face[mask]
        if needs_inner and (n := _short(inner_k, yp, gp)) is not None:
            return (f"inner_k={inner_k} is more than the {n} groups (originals with their fakes) in {where}: "
                    f"lower inner_k (--set inner_k={max(2, min(n, inner_k - 1))}), or {fix}")
        fits = [(np.arange(len(yp)), where)]  # where a meta-learner is fitted: the part, its inner training splits
        if needs_inner and stacked:
            splitter = StratifiedGroupKFold(n_splits=inner_k, shuffle=True, random_state=seed)
            fits += [(tr, f"an inner_k={inner_k} training split of {where}")
                     for tr, _ in splitter.split(np.zeros(len(yp)), yp, gp)]
        for i, (tr, inside) in enumerate(fits):
            tr = tr[fp[tr]]  # the meta-learner's rows
            if stacked and len(np.unique(yp[tr])) < 2:
                lower = "lower inner_k, or " if inner_k > 2 and i else ""
                n = len(np.unique(gp[tr]))
                return (f"{f'inner_k={inner_k}: ' if i else ''}the videos with a face in {inside} are all of one class "
                        f"({n} group{'s' * (n != 1)}): {lower}{fix}")
            if cv_k is not None and (n := _short(cv_k, yp[tr], gp[tr])) is not None:
                return (f"sweep.meta_params.lgbm.cv_k={cv_k} (LightGBM's n_trees: cv) is more than the {n} groups "
                        f"with a face in {inside}: lower cv_k or inner_k, set sweep.meta_params.lgbm.n_trees=fixed, "
                        f"or {fix}")
    return None
