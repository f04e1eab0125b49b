"""Groups and stratified grouped folds: a fake and its original never sit in different folds."""

import json
from pathlib import Path

import pandas as pd
import pytest
from sklearn.model_selection import KFold

from features.common import ConfigError, from_dict
from features.corpus.folds import FoldConfig, FoldError, check_folds, connected_groups, make_folds
from features.corpus.readers import METADATA_NAME, read_corpora, read_test_labels

N_ORIGINALS = 30
FAKES_PER_ORIGINAL = (4, 5)  # as in DFDC
N_LONE_REALS = 15  # reals without fakes, so groups differ in FAKE share and stratifying matters
N_TEST = 6
STRATIFY_TOLERANCE = 0.1  # max gap between a fold's FAKE share and the overall share
N_SYNTH_ORIGINALS = 6  # enough groups for 3 folds, few enough to generate in seconds
N_SYNTH_FRAMES = 4  # folds only read metadata.json; few frames keep generation fast


def write_corpus(root: Path) -> Path:
    """A metadata-only DFDC-layout corpus (zero-byte videos): big enough that plain KFold splits pairs."""
    entries = {}
    for i in range(N_ORIGINALS):
        entries[f"orig{i:02d}.mp4"] = {"label": "REAL", "split": "train", "original": None}
        for j in range(FAKES_PER_ORIGINAL[i % len(FAKES_PER_ORIGINAL)]):
            entries[f"fake{i:02d}_{j}.mp4"] = {"label": "FAKE", "split": "train",
                                               "original": f"orig{i:02d}.mp4"}
    entries.update({f"lone{i:02d}.mp4": {"label": "REAL"} for i in range(N_LONE_REALS)})
    entries.update({f"test{i:02d}.mp4": {"split": "test"} for i in range(N_TEST)})
    root.mkdir(parents=True)
    (root / METADATA_NAME).write_text(json.dumps(entries))
    for name in entries:
        (root / name).touch()
    return root


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return read_corpora([write_corpus(tmp_path_factory.mktemp("corpus") / "train")])


def fold_pairs(videos: pd.DataFrame, fold: pd.Series) -> pd.DataFrame:
    """(fake fold, original fold) for every fake whose original is in the table."""
    fold_of = dict(zip(videos["video_id"], fold))
    fakes = videos[videos["original"].notna() & videos["original"].isin(fold_of)]
    return pd.DataFrame({"fake": fakes["video_id"].map(fold_of).to_numpy(),
                         "original": fakes["original"].map(fold_of).to_numpy()})


def n_split_pairs(videos: pd.DataFrame, fold: pd.Series) -> int:
    pairs = fold_pairs(videos, fold)
    return int((pairs["fake"] != pairs["original"]).sum())


def plain_kfold(videos: pd.DataFrame, cfg: FoldConfig) -> pd.Series:
    """What ungrouped KFold(shuffle) would do to the same labelled training videos."""
    train = videos.index[videos["label"].notna() & (videos["split"] != "test")]
    fold = pd.Series(pd.NA, index=videos.index, dtype="Int64")
    kfold = KFold(n_splits=cfg.k, shuffle=True, random_state=cfg.seed)
    for k, (_, held_out) in enumerate(kfold.split(train)):
        fold[train[held_out]] = k
    return fold


def test_fold_config_validates():
    assert from_dict(FoldConfig, {"k": 5, "seed": 3}) == FoldConfig(k=5, seed=3)
    with pytest.raises(ConfigError, match="valid"):
        from_dict(FoldConfig, {"folds": 5})
    with pytest.raises(FoldError, match="k=1"):
        FoldConfig(k=1)


def test_connected_groups_follow_chains_and_ignore_row_order():
    table = pd.DataFrame({"video_id": ["e", "d", "c", "b", "a"],
                          "original": [None, "c", "b", None, "zz"]})
    groups = connected_groups(table)
    by_id = dict(zip(table["video_id"], groups))
    assert by_id["b"] == by_id["c"] == by_id["d"] and len(set(by_id.values())) == 3
    assert [by_id[v] for v in "abe"] == [0, 1, 2]  # numbered by smallest member id
    shuffled = table.sample(frac=1, random_state=0)
    assert dict(zip(shuffled["video_id"], connected_groups(shuffled))) == by_id


def test_test_and_unlabelled_videos_get_no_fold(videos):
    folds = make_folds(videos, FoldConfig(k=3, seed=0))
    assert list(folds["video_id"]) == list(videos["video_id"])
    assert str(folds["fold"].dtype) == "Int64"
    is_test = videos["split"].eq("test").to_numpy()
    assert folds["fold"][is_test].isna().all() and folds["fold"][~is_test].notna().all()
    assert set(folds["fold"].dropna()) == {0, 1, 2}


def test_folds_are_deterministic_by_seed(videos):
    a, b = make_folds(videos, FoldConfig(k=3, seed=7)), make_folds(videos, FoldConfig(k=3, seed=7))
    pd.testing.assert_frame_equal(a, b)
    assert not make_folds(videos, FoldConfig(k=3, seed=8))["fold"].equals(a["fold"])


@pytest.mark.parametrize("k", [3, 5])
def test_folds_are_stratified(videos, k):
    folds = make_folds(videos, FoldConfig(k=k, seed=0))
    labelled = videos.assign(fold=folds["fold"]).dropna(subset=["fold"])
    overall = labelled["label"].mean()
    per_fold = labelled.groupby("fold")["label"].mean()
    assert len(per_fold) == k
    assert (per_fold - overall).abs().max() <= STRATIFY_TOLERANCE


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grouped_folds_keep_pairs_where_plain_kfold_splits_them(videos, seed):
    cfg = FoldConfig(k=3, seed=seed)
    folds = make_folds(videos, cfg)
    pairs = fold_pairs(videos, folds["fold"])
    assert len(pairs) == sum(FAKES_PER_ORIGINAL[i % 2] for i in range(N_ORIGINALS))
    assert n_split_pairs(videos, folds["fold"]) == 0
    assert n_split_pairs(videos, plain_kfold(videos, cfg)) > 0


def test_fewer_groups_than_folds_is_an_error():
    table = pd.DataFrame({"video_id": ["r", "f", "s"], "original": [None, "r", None],
                          "label": pd.array([0, 1, 0], dtype="Int8"),
                          "split": ["train", "train", "train"]})
    with pytest.raises(FoldError, match="only 2 group.*k=3"):
        make_folds(table, FoldConfig(k=3))


def test_link_parts_keeps_each_part_in_one_fold(tmp_path):
    roots = []
    for p in range(4):
        entries = {f"p{p}_{i}.mp4": {"label": "FAKE" if i % 2 else "REAL"} for i in range(4)}
        (tmp_path / f"part{p}").mkdir()
        (tmp_path / f"part{p}" / METADATA_NAME).write_text(json.dumps(entries))
        for name in entries:
            (tmp_path / f"part{p}" / name).touch()
        roots.append(tmp_path / f"part{p}")
    videos = read_corpora(roots, link_parts=True)
    folds = make_folds(videos, FoldConfig(k=2, seed=0))
    assert videos.assign(fold=folds["fold"]).groupby("part")["fold"].nunique().eq(1).all()


PAIR_MESSAGE = r"fake00_0.mp4 \(fold \d\) vs original orig00.mp4 \(fold \d\)"


def test_check_folds_names_a_fake_split_from_its_original(videos):
    folds = make_folds(videos, FoldConfig(k=3, seed=0))
    bad = folds.copy()
    fake = bad["video_id"] == "fake00_0.mp4"
    bad.loc[fake, "fold"] = (bad.loc[fake, "fold"] + 1) % 3
    for table in (videos, videos.drop(columns="group")):  # the direct pair check needs no groups
        with pytest.raises(AssertionError, match=PAIR_MESSAGE):
            check_folds(table, bad)


def test_check_folds_names_a_group_that_spans_two_folds(videos):
    folds = make_folds(videos, FoldConfig(k=3, seed=0))
    fold_of = dict(zip(folds["video_id"], folds["fold"]))
    lone = [v for v in videos["video_id"] if v.startswith("lone")]
    a, b = next((x, y) for x in lone for y in lone if fold_of[x] != fold_of[y])
    linked = videos.copy()  # an extra link (as link_parts or an actor id would add)
    group = linked.loc[linked["video_id"] == a, "group"].iloc[0]
    linked.loc[linked["video_id"] == b, "group"] = group
    with pytest.raises(AssertionError, match=rf"group {group} in folds \[\d, \d\]"):
        check_folds(linked, folds)


@pytest.mark.parametrize("video_id, fold, match", [
    ("lone00.mp4", pd.NA, "labelled training video.*without a fold.*lone00.mp4"),
    ("test00.mp4", 0, "test/unlabelled video.*with a fold.*test00.mp4"),
])
def test_check_folds_catches_missing_and_extra_folds(videos, video_id, fold, match):
    folds = make_folds(videos, FoldConfig(k=3, seed=0))
    folds.loc[folds["video_id"] == video_id, "fold"] = fold
    with pytest.raises(AssertionError, match=match):
        check_folds(videos, folds)
    with pytest.raises(AssertionError, match="one row per video"):
        check_folds(videos, folds.iloc[1:])


MIXED_MESSAGE = r"group {group}: test/unlabelled \[{held}\] with training \['fake00_\d\.mp4'"


def test_check_folds_names_a_test_video_that_shares_a_group_with_training(tmp_path):
    """A test fake whose original is a training video: made through read_corpora's own groups."""
    root = write_corpus(tmp_path / "train")
    entries = json.loads((root / METADATA_NAME).read_text())
    entries["test00.mp4"]["original"] = "orig00.mp4"
    (root / METADATA_NAME).write_text(json.dumps(entries))
    linked = read_corpora([root])
    group = linked.loc[linked["video_id"] == "orig00.mp4", "group"].iloc[0]
    match = MIXED_MESSAGE.format(group=group, held="'test00.mp4'")
    with pytest.raises(AssertionError, match=match):
        make_folds(linked, FoldConfig(k=3, seed=0))  # make_folds checks its own output
    missed = linked.copy()  # folds drawn by a caller that missed the link
    missed.loc[missed["video_id"] == "test00.mp4", "group"] = linked["group"].max() + 1
    folds = make_folds(missed, FoldConfig(k=3, seed=0))
    with pytest.raises(AssertionError, match=match):
        check_folds(linked, folds)


def test_check_folds_names_an_unlabelled_video_in_a_training_group(videos):
    unlabelled = videos.copy()
    unlabelled.loc[unlabelled["video_id"] == "fake00_0.mp4", "label"] = pd.NA
    group = unlabelled.loc[unlabelled["video_id"] == "orig00.mp4", "group"].iloc[0]
    with pytest.raises(AssertionError, match=MIXED_MESSAGE.format(group=group, held="'fake00_0.mp4'")):
        make_folds(unlabelled, FoldConfig(k=3, seed=0))


def test_embedded_corpus_never_splits_a_fake_from_its_original(tmp_path):
    """The issue's property on the generator's own corpus (kept tiny: 6 originals, few frames)."""
    from features.synth import SynthConfig, generate_corpus

    cfg = SynthConfig.tiny(n_originals=N_SYNTH_ORIGINALS, n_frames=N_SYNTH_FRAMES)
    root = generate_corpus(tmp_path / "synth", cfg, progress=False)
    videos = read_corpora([root])
    assert videos["original"].notna().any()
    test_ids = set(videos.loc[videos["split"] == "test", "video_id"])
    assert test_ids and set(read_test_labels(root)["video_id"]) == test_ids  # answers kept apart
    is_test = videos["split"].eq("test")
    assert not set(videos.loc[is_test, "group"]) & set(videos.loc[~is_test, "group"])  # own originals
    for seed in range(3):
        fold_cfg = FoldConfig(k=3, seed=seed)
        folds = make_folds(videos, fold_cfg)
        assert folds["fold"][videos["split"].eq("test").to_numpy()].isna().all()
        assert n_split_pairs(videos, folds["fold"]) == 0
        assert n_split_pairs(videos, plain_kfold(videos, fold_cfg)) > 0
        check_folds(videos, folds)  # the test-split guard stays quiet on this layout ...
    linked = videos.copy()  # ... and fires once one test video joins a training group
    test_video = videos.loc[is_test, "video_id"].iloc[0]
    linked.loc[linked["video_id"] == test_video, "group"] = videos.loc[~is_test, "group"].iloc[0]
    with pytest.raises(AssertionError, match=f"test/unlabelled \\['{test_video}'\\]"):
        check_folds(linked, folds)
