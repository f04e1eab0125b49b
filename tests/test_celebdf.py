"""Celeb-DF reader: the videos table of a tiny tree (labels, originals, the inverted test list,
identity groups, leak-free folds) and a clear error or explicit status for each bad input."""

from __future__ import annotations

import shutil

import pytest

from features.corpus.celebdf import TEST_LIST_NAME, is_celebdf, read_celebdf
from features.corpus.folds import FoldConfig, check_folds, make_folds
from features.corpus.readers import CorpusError

REALS = ["Celeb-real/id0_0000.mp4", "Celeb-real/id0_0001.mp4", "Celeb-real/id1_0000.mp4",
         "Celeb-real/id2_0000.mp4", "Celeb-real/id3_0000.mp4", "Celeb-real/id4_0000.mp4",
         "YouTube-real/00000.mp4", "YouTube-real/00001.mp4", "YouTube-real/00002.mp4"]
FAKES = ["Celeb-synthesis/id0_id1_0000.mp4", "Celeb-synthesis/id1_id0_0000.mp4",
         "Celeb-synthesis/id2_id5_0000.mp4", "Celeb-synthesis/id3_id4_0000.mp4"]
# the test split holds ids 3 and 4 only, so no identity is on both sides
TEST_LIST = ["1 Celeb-real/id3_0000.mp4", "0 Celeb-synthesis/id3_id4_0000.mp4", "1 Celeb-real/id4_0000.mp4",
             "1 YouTube-real/00002.mp4"]


def _tree(root, clip, names=REALS + FAKES, test_list=TEST_LIST):
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(clip, root / name)
    if test_list is not None:
        (root / TEST_LIST_NAME).write_text("\n".join(test_list) + "\n")
    return root


def test_table_labels_originals_split_and_method(tmp_path, clip):
    root = _tree(tmp_path / "Celeb-DF-v2", clip)
    assert is_celebdf(root) and not is_celebdf(tmp_path)
    videos = read_celebdf([root]).set_index("video_id")
    assert sorted(videos.index) == sorted(REALS + FAKES)
    assert (videos["path"] == videos.index).all() and (videos["root"] == str(root)).all()
    assert list(videos.loc[REALS, "label"]) == [0] * len(REALS)
    assert list(videos.loc[FAKES, "label"]) == [1] * len(FAKES)
    assert videos.loc["Celeb-synthesis/id0_id1_0000.mp4", "original"] == "Celeb-real/id0_0000.mp4"
    assert videos.loc[REALS, "original"].isna().all()
    listed = [line.split()[1] for line in TEST_LIST]
    assert (videos.loc[listed, "split"] == "test").all()
    assert (videos.drop(listed)["split"] == "train").all()
    assert videos.loc["YouTube-real/00000.mp4", "method"] == "YouTube-real"
    assert videos.loc[FAKES[0], "method"] == "Celeb-synthesis"
    assert videos["compression"].isna().all() and (videos["status"] == "ok").all()


def test_identity_groups_and_leak_free_folds(tmp_path, clip):
    root = _tree(tmp_path / "Celeb-DF-v2", clip)
    raw = read_celebdf([root])
    g = raw.set_index("video_id")["group"]
    # a fake, its original (id0) and its face donor (id1) are one group, with every other id0/id1 video
    real, synth = "Celeb-real/", "Celeb-synthesis/"
    assert g[f"{synth}id0_id1_0000.mp4"] == g[f"{real}id0_0000.mp4"] == g[f"{real}id1_0000.mp4"]
    assert g[f"{real}id0_0001.mp4"] == g[f"{synth}id1_id0_0000.mp4"] == g[f"{real}id0_0000.mp4"]
    assert g[f"{synth}id2_id5_0000.mp4"] == g[f"{real}id2_0000.mp4"] != g[f"{real}id0_0000.mp4"]
    sizes = g.value_counts()
    assert all(sizes[g[v]] == 1 for v in REALS if v.startswith("YouTube-real/"))  # each its own group
    folds = make_folds(raw, FoldConfig(k=2))
    check_folds(raw, folds)
    assert folds.set_index("video_id").loc[[line.split()[1] for line in TEST_LIST], "fold"].isna().all()


def test_v1_without_youtube_real_and_without_a_test_list(tmp_path, clip):
    names = [n for n in REALS + FAKES if not n.startswith("YouTube")]
    videos = read_celebdf(_tree(tmp_path / "Celeb-DF", clip, names, test_list=None))
    assert len(videos) == len(names) and (videos["split"] == "train").all()


@pytest.mark.parametrize("line, message", [
    ("1", r"line 2: '1' does not parse"),
    ("1 Celeb-real/id0_0000.mp4 extra", "line 2: .* does not parse"),
    ("2 Celeb-real/id0_0000.mp4", "line 2: label '2' is not 0"),
    ("1 Celeb-synthesis/id0_id1_0000.mp4", "line 2: .* listed as REAL but Celeb-synthesis/ holds FAKE"),
    ("0 Celeb-real/id0_0000.mp4", "line 2: .* listed as FAKE but Celeb-real/ holds REAL"),
    ("1 Other/x.mp4", "line 2: 'Other/x.mp4' is not <subdir>/<file>"),
    ("1 Celeb-real/../x.mp4", "line 2: .* is not <subdir>/<file>"),
    ("1 Celeb-real/id0.mp4", r"line 2: file name 'id0.mp4' does not parse in Celeb-real/"),
    ("1 Celeb-real/id3_0000.mp4", "line 2: .* listed twice \\(first at .*line 1\\)"),
])
def test_bad_test_list_lines_name_the_file_and_line(tmp_path, clip, line, message):
    root = _tree(tmp_path / "cdf", clip, test_list=[TEST_LIST[0], line])
    with pytest.raises(CorpusError, match=message) as err:
        read_celebdf([root], on_missing="status")
    assert str(root / TEST_LIST_NAME) in str(err.value)


def test_listed_but_absent_is_an_error_or_a_missing_file_row(tmp_path, clip):
    root = _tree(tmp_path / "cdf", clip, test_list=TEST_LIST + ["0 Celeb-synthesis/id6_id7_0003.mp4"])
    with pytest.raises(CorpusError, match=r"1 video file\(s\) not found: .*line 5: .*id6_id7_0003"):
        read_celebdf([root])
    videos = read_celebdf([root], on_missing="status").set_index("video_id")
    row = videos.loc["Celeb-synthesis/id6_id7_0003.mp4"]
    assert row["status"] == "missing_file" and row["split"] == "test" and row["label"] == 1
    assert row["original"] == "Celeb-real/id6_0003.mp4"


@pytest.mark.parametrize("name", ["Celeb-real/face.mp4", "Celeb-synthesis/id0_0000.mp4",
                                  "YouTube-real/id0_0000.mp4"])
def test_a_file_name_that_does_not_parse_in_its_folder(tmp_path, clip, name):
    root = _tree(tmp_path / "cdf", clip, REALS + FAKES + [name])
    with pytest.raises(CorpusError, match="does not parse in"):
        read_celebdf([root])


def test_not_a_celebdf_folder_and_two_copies(tmp_path, clip):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="not a Celeb-DF folder"):
        read_celebdf([tmp_path / "empty"])
    a, b = _tree(tmp_path / "a", clip), _tree(tmp_path / "b", clip)
    with pytest.raises(CorpusError, match="in two Celeb-DF folders"):
        read_celebdf([a, b])
    with pytest.raises(ValueError, match="on_missing"):
        read_celebdf([a], on_missing="skip")
