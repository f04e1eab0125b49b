"""Leak-free groups and stratified grouped folds (docs/design.md, leakage rule 1).

A fake shares its original's actor, background and motion; if the two land in different folds,
an out-of-fold prediction is really an in-sample one and the stacked ensemble learns to trust
overfit level-0 models. So groups are the connected components of the video -- original graph
(plus optional part links), folds are drawn over whole groups, and `check_folds` asserts the rule
on every run rather than trusting the splitter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

TEST_SPLIT = "test"  # videos of this split never get a fold: they are scored, not validated on
MIN_FOLDS = 2
MAX_LISTED = 5  # groups/videos quoted in one error message
MAX_IDS_PER_GROUP = 3  # video ids quoted per side of one mixed train/test group


LINK_SEP = "|"  # separates the tokens of the videos table's `links` column


class FoldError(ValueError):
    """Folds cannot be made from this videos table (e.g. fewer groups than folds)."""


class LeakError(FoldError, AssertionError):
    """The folds or splits would leak (a group on two sides). An AssertionError, as every leak check
    is, and a FoldError, so the pipelines end with its message and exit status 2."""


@dataclass
class FoldConfig:
    """How labelled training videos are split: k grouped, stratified folds, shuffled by seed."""

    k: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.k, int) or self.k < MIN_FOLDS:
            raise FoldError(f"FoldConfig.k={self.k!r}: need an integer >= {MIN_FOLDS}")


class _UnionFind:
    """Union-find (with path compression) over hashable nodes: near-linear in the edge count."""

    def __init__(self) -> None:
        self.parent: dict[object, object] = {}

    def find(self, x: object) -> object:
        root = x
        while self.parent.setdefault(root, root) != root:
            root = self.parent[root]
        while self.parent[x] != root:  # path compression
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: object, b: object) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra


def connected_groups(videos: pd.DataFrame, link_parts: bool = False) -> pd.Series:
    """Group id per row of `videos` (int64, aligned to its index).

    Edges: video -- original (an original absent from the table is still a node, so its fakes
    share a group), video -- each token of its `links` column (LINK_SEP-separated, e.g. the
    identities a corpus names: every video sharing a token joins one group), and with
    `link_parts` every video of one `part`. Ids are 0..n-1, numbered in the order of each
    component's smallest video_id, so they do not depend on row order.
    """
    ids = videos["video_id"].astype(str)
    if ids.duplicated().any():
        raise FoldError(f"duplicate video_id(s): {sorted(set(ids[ids.duplicated()]))[:MAX_LISTED]}")
    uf = _UnionFind()
    originals = videos["original"] if "original" in videos else pd.Series(pd.NA, index=videos.index)
    for vid, original in zip(ids, originals):
        uf.find(("video", vid))
        if not pd.isna(original):
            uf.union(("video", vid), ("video", str(original)))
    if "links" in videos:
        for vid, links in zip(ids, videos["links"]):
            for token in ([] if pd.isna(links) else str(links).split(LINK_SEP)):
                if token:
                    uf.union(("link", token), ("video", vid))
    if link_parts:
        for vid, part in zip(ids, videos["part"]):
            uf.union(("part", str(part)), ("video", vid))
    roots = pd.Series([uf.find(("video", v)) for v in ids], index=videos.index)
    smallest = ids.groupby(roots).transform("min")
    order = {vid: i for i, vid in enumerate(sorted(set(smallest)))}
    return smallest.map(order).astype("int64").rename("group")


def _eligible(videos: pd.DataFrame) -> np.ndarray:
    """Labelled videos outside the test split: the only ones that get a fold."""
    is_test = videos["split"].astype("string").eq(TEST_SPLIT).fillna(False)
    return (videos["label"].notna() & ~is_test).to_numpy(dtype=bool)


def make_folds(videos: pd.DataFrame, cfg: FoldConfig | None = None) -> pd.DataFrame:
    """Folds table (video_id, fold Int64) for every row of `videos`; <NA> for test/unlabelled.

    StratifiedGroupKFold keeps whole groups together and balances the FAKE share across folds
    as far as the groups allow. Uses the `group` column (computed if absent).
    """
    cfg = cfg or FoldConfig()
    groups = videos["group"] if "group" in videos else connected_groups(videos)
    eligible = _eligible(videos)
    n_groups = groups[eligible].nunique()
    if n_groups < cfg.k:
        raise FoldError(
            f"only {n_groups} group(s) among {int(eligible.sum())} labelled training videos; "
            f"cannot make k={cfg.k} grouped folds (lower k or add videos)"
        )
    y = videos["label"].to_numpy(dtype="float64", na_value=np.nan)[eligible].astype(int)
    g = groups.to_numpy()[eligible]
    splitter = StratifiedGroupKFold(n_splits=cfg.k, shuffle=True, random_state=cfg.seed)
    fold_of = np.full(int(eligible.sum()), -1, dtype=np.int64)
    for fold, (_, held_out) in enumerate(splitter.split(np.zeros((len(y), 1)), y, g)):
        fold_of[held_out] = fold
    empty = sorted(set(range(cfg.k)) - set(fold_of.tolist()))
    if empty:
        raise FoldError(f"fold(s) {empty} received no videos; lower k (={cfg.k})")
    fold = pd.Series(pd.NA, index=videos.index, dtype="Int64")
    fold[eligible] = fold_of
    folds = pd.DataFrame({"video_id": videos["video_id"].array, "fold": fold.array})
    check_folds(videos, folds)
    return folds


def check_folds(videos: pd.DataFrame, folds: pd.DataFrame) -> None:
    """Raise AssertionError (explicitly, so `python -O` keeps it) if the folds could leak.

    Checks: one folds row per video; no group (nor any video -- original pair) in two folds;
    every labelled training video has a fold; no test/unlabelled video has one; no group holds
    both (`_check_held_out_groups`).
    """
    if folds["video_id"].duplicated().any() or set(folds["video_id"]) != set(videos["video_id"]):
        raise AssertionError("folds table must have exactly one row per video of the videos table")
    fold_of = dict(zip(folds["video_id"], folds["fold"]))
    table = videos.assign(fold=videos["video_id"].map(fold_of).astype("Int64"))
    if "group" not in table:
        table["group"] = connected_groups(videos)
    placed = table[table["fold"].notna()]
    if "original" in placed:
        pairs = placed[placed["original"].notna()]
        other = pairs["original"].map(dict(zip(placed["video_id"], placed["fold"]))).astype("Int64")
        split = pairs[other.notna() & other.ne(pairs["fold"]).fillna(False)]
        if len(split):
            names = [f"{v} (fold {f}) vs original {o} (fold {g})" for v, f, o, g in
                     zip(split["video_id"], split["fold"], split["original"], other[split.index])]
            raise AssertionError(f"{len(names)} fake(s) in another fold than their original: "
                                 f"{names[:MAX_LISTED]}")
    spans = placed.groupby("group")["fold"].unique()
    spans = spans[spans.map(len) > 1]
    if len(spans):
        detail = "; ".join(f"group {g} in folds {sorted(int(f) for f in fs)}"
                           for g, fs in spans.head(MAX_LISTED).items())
        raise AssertionError(f"{len(spans)} group(s) span two folds: {detail}")
    eligible = _eligible(table)
    no_fold = table["fold"].isna().to_numpy()
    for mask, what in ((eligible & no_fold, "labelled training video(s) without a fold"),
                       (~eligible & ~no_fold, "test/unlabelled video(s) with a fold")):
        if mask.any():
            ids = list(table["video_id"][mask])[:MAX_LISTED]
            raise AssertionError(f"{int(mask.sum())} {what}: {ids}")
    _check_held_out_groups(table)


def _check_held_out_groups(table: pd.DataFrame) -> None:
    """Raise if a group holds both fold-assigned videos and test/unlabelled (fold-less) ones.

    Rule 1 applied to the test split: a test fake whose original (or group mate) was trained on
    is scored by models that saw its actor and scene, so the test-split score would be
    optimistic. `table` has fold and group columns and already passed the other checks.
    """
    trained = table["fold"].notna().to_numpy()
    train_groups = set(table.loc[trained, "group"])
    held_out = table[~trained & table["group"].isin(train_groups).to_numpy()]
    if held_out.empty:
        return
    details = []
    for group, rows in list(held_out.groupby("group", sort=True))[:MAX_LISTED]:
        mates = table.loc[trained & table["group"].eq(group).to_numpy(), "video_id"]
        details.append(f"group {group}: test/unlabelled {list(rows['video_id'])[:MAX_IDS_PER_GROUP]} "
                       f"with training {list(mates)[:MAX_IDS_PER_GROUP]}")
    raise LeakError(
        f"{held_out['group'].nunique()} group(s) mix fold-assigned training videos with "
        f"test/unlabelled videos, so the test score would be optimistic (e.g. a test fake whose "
        f"original is trained on); keep each group on one side: {'; '.join(details)}. An official "
        "split that shares people between its sides runs with --set corpus.link_identities=false "
        "(only fake -- original links)")
