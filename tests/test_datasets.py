"""Reading DFDC-layout corpora: the videos table, and a clear error for every kind of bad input."""

import json
from pathlib import Path

import pandas as pd
import pytest

from features.common import atomic_write_parquet
from features.corpus.readers import (
    DFDC_TEST_LABELS_NAME,
    METADATA_NAME,
    STATUS_MISSING,
    STATUS_OK,
    TEST_LABELS_NAME,
    VIDEO_COLUMNS,
    CorpusError,
    read_corpora,
    read_test_labels,
)

BASIC = {
    "r1.mp4": {"label": "REAL", "split": "train", "original": None},
    "f1.mp4": {"label": "FAKE", "split": "train", "original": "r1.mp4"},
    "f2.mp4": {"label": "FAKE", "original": "r1.mp4"},  # no split: defaults to train
    "r2.mp4": {"label": "REAL"},
    "t1.mp4": {"split": "test"},  # test entries carry no label
}


def make_corpus(root: Path, entries, skip_files=(), text=None) -> Path:
    """Write metadata.json (or raw `text`) and a zero-byte file per entry (reading never decodes)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / METADATA_NAME).write_text(text if text is not None else json.dumps(entries))
    for name in entries if isinstance(entries, dict) else ():
        if name not in skip_files:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).touch()
    return root


def test_reads_basic_corpus_into_videos_table(tmp_path):
    root = make_corpus(tmp_path / "part0", BASIC)
    videos = read_corpora([root])
    assert list(videos.columns) == list(VIDEO_COLUMNS)
    assert list(videos["video_id"]) == sorted(BASIC)
    assert str(videos["label"].dtype) == "Int8" and videos["group"].dtype == "int64"
    by_id = videos.set_index("video_id")
    assert by_id.loc["f1.mp4", "label"] == 1 and by_id.loc["r1.mp4", "label"] == 0
    assert pd.isna(by_id.loc["t1.mp4", "label"]) and pd.isna(by_id.loc["r2.mp4", "original"])
    assert by_id.loc["f2.mp4", "split"] == "train" and by_id.loc["t1.mp4", "split"] == "test"
    assert (videos["path"] == videos["video_id"]).all() and (videos["root"] == str(root)).all()
    assert (videos["part"] == "part0").all() and (videos["status"] == STATUS_OK).all()
    groups = by_id["group"]
    assert groups["f1.mp4"] == groups["f2.mp4"] == groups["r1.mp4"]
    assert groups.nunique() == 3  # {r1, f1, f2}, {r2}, {t1}


def test_table_roundtrips_through_parquet(tmp_path):
    videos = read_corpora(make_corpus(tmp_path / "c", BASIC))
    back = pd.read_parquet(atomic_write_parquet(videos, tmp_path / "videos.parquet"))
    pd.testing.assert_frame_equal(back, videos)


def test_unknown_entry_keys_and_subfolders_are_allowed(tmp_path):
    entries = {"sub/a.mp4": {"label": "REAL", "frames": 300, "width": 1920},
               "b.mp4": {"label": "FAKE", "original": "sub/a.mp4", "actor": "x"}}
    videos = read_corpora([make_corpus(tmp_path / "c", entries)])
    assert set(videos["path"]) == {"sub/a.mp4", "b.mp4"}
    assert videos["group"].nunique() == 1


def test_many_folders_sorted_by_part_with_groups_across_parts(tmp_path):
    a = make_corpus(tmp_path / "a", {"r.mp4": {"label": "REAL"}})
    b = make_corpus(tmp_path / "b", {"f.mp4": {"label": "FAKE", "original": "r.mp4"},
                                      "e.mp4": {"label": "REAL"}})
    videos = read_corpora([b, a])
    assert list(zip(videos["part"], videos["video_id"])) == [
        ("a", "r.mp4"), ("b", "e.mp4"), ("b", "f.mp4")]
    assert list(videos["root"]) == [str(a), str(b), str(b)]
    g = videos.set_index("video_id")["group"]
    assert g["r.mp4"] == g["f.mp4"] != g["e.mp4"]


def test_folders_with_the_same_name_get_distinct_parts(tmp_path):
    a = make_corpus(tmp_path / "x" / "train", {"a.mp4": {"label": "REAL"}})
    b = make_corpus(tmp_path / "y" / "train", {"b.mp4": {"label": "REAL"}})
    assert read_corpora([a, b])["part"].nunique() == 2


def test_same_folder_twice_is_an_error(tmp_path):
    a = make_corpus(tmp_path / "a", BASIC)
    with pytest.raises(CorpusError, match="given twice"):
        read_corpora([a, tmp_path / "." / "a"])


def test_missing_folder_is_an_error(tmp_path):
    with pytest.raises(CorpusError, match="does not exist"):
        read_corpora([tmp_path / "nope"])


def test_malformed_json_names_file_line_and_column(tmp_path):
    root = make_corpus(tmp_path / "c", {}, text='{\n  "a.mp4": {"label": "REAL",}\n}')
    with pytest.raises(CorpusError, match=r"metadata\.json: malformed JSON at line 2, column"):
        read_corpora([root])


@pytest.mark.parametrize("text, match", [
    ('["a.mp4"]', "top level must be an object"),
    ('{"a.mp4": "FAKE"}', r"entry 'a.mp4': entry must be an object"),
    ('{"a.mp4": {"label": "REAL"}, "a.mp4": {"label": "FAKE"}}', "duplicate key"),
    ("{}", "lists no videos"),
])
def test_bad_metadata_structure(tmp_path, text, match):
    root = make_corpus(tmp_path / "c", {}, text=text)
    with pytest.raises(CorpusError, match=match) as info:
        read_corpora([root])
    assert str(root / METADATA_NAME) in str(info.value)


@pytest.mark.parametrize("label", ["fake", "MAYBE", 1, True, ["FAKE"]])
def test_label_other_than_real_or_fake(tmp_path, label):
    root = make_corpus(tmp_path / "c", {"a.mp4": {"label": label}})
    with pytest.raises(CorpusError, match=r"metadata\.json: entry 'a.mp4': label .* is not one of"):
        read_corpora([root])


@pytest.mark.parametrize("entry, match", [
    ({"label": "FAKE", "original": "a.mp4"}, "names itself"),
    ({"label": "REAL", "original": "b.mp4"}, "a REAL video names an original"),
    ({"label": "FAKE", "original": 3}, "must be a file name or null"),
    ({"label": "FAKE", "split": 0}, "split 0 must be a non-empty string"),
])
def test_bad_entry_values(tmp_path, entry, match):
    root = make_corpus(tmp_path / "c", {"a.mp4": entry, "b.mp4": {"label": "REAL"}})
    with pytest.raises(CorpusError, match=match) as info:
        read_corpora([root])
    assert "entry 'a.mp4'" in str(info.value)


def test_original_that_is_itself_a_fake(tmp_path):
    root = make_corpus(tmp_path / "c", {"r.mp4": {"label": "REAL"},
                                        "f.mp4": {"label": "FAKE", "original": "r.mp4"},
                                        "g.mp4": {"label": "FAKE", "original": "f.mp4"}})
    with pytest.raises(CorpusError, match=r"entry 'g.mp4': original 'f.mp4' is itself a FAKE"):
        read_corpora([root])


@pytest.mark.parametrize("name", ["../x.mp4", "/abs/x.mp4", "sub/../../x.mp4", "..\\x.mp4",
                                  "C:\\x.mp4", " "])
def test_file_name_that_escapes_the_corpus_folder(tmp_path, name):
    root = make_corpus(tmp_path / "c", {}, text=json.dumps({name: {"label": "REAL"}}))
    with pytest.raises(CorpusError, match="escapes the corpus folder") as info:
        read_corpora([root])
    assert str(root / METADATA_NAME) in str(info.value)


def test_missing_video_file_is_an_error_naming_file_and_entry(tmp_path):
    root = make_corpus(tmp_path / "c", BASIC, skip_files={"f2.mp4"})
    with pytest.raises(CorpusError, match=r"1 video file\(s\) not found.*entry 'f2.mp4'") as info:
        read_corpora([root])
    assert str(root / METADATA_NAME) in str(info.value)


def test_missing_video_file_kept_with_status_when_asked(tmp_path):
    root = make_corpus(tmp_path / "c", BASIC, skip_files={"f2.mp4"})
    videos = read_corpora([root], on_missing="status").set_index("video_id")
    assert len(videos) == len(BASIC)
    assert videos.loc["f2.mp4", "status"] == STATUS_MISSING
    assert "f2.mp4" in videos.loc["f2.mp4", "message"]
    assert (videos.drop(index="f2.mp4")["status"] == STATUS_OK).all()


def test_unknown_on_missing_lists_choices(tmp_path):
    with pytest.raises(ValueError, match="valid: error, status"):
        read_corpora([make_corpus(tmp_path / "c", BASIC)], on_missing="skip")


def test_video_id_in_two_folders_names_both(tmp_path):
    a = make_corpus(tmp_path / "a", {"x.mp4": {"label": "REAL"}})
    b = make_corpus(tmp_path / "b", {"x.mp4": {"label": "REAL"}})
    with pytest.raises(CorpusError, match="'x.mp4' appears in two corpus folders") as info:
        read_corpora([a, b])
    assert str(a / METADATA_NAME) in str(info.value) and str(b / METADATA_NAME) in str(info.value)


def test_fake_with_absent_original_joins_its_original_group(tmp_path):
    entries = {"f1.mp4": {"label": "FAKE", "original": "gone.mp4"},
               "f2.mp4": {"label": "FAKE", "original": "gone.mp4"},
               "f3.mp4": {"label": "FAKE", "original": "other.mp4"}}
    g = read_corpora([make_corpus(tmp_path / "c", entries)]).set_index("video_id")["group"]
    assert g["f1.mp4"] == g["f2.mp4"] != g["f3.mp4"]


def test_plain_folder_reads_as_unlabelled_test_videos(tmp_path):
    root = tmp_path / "plain"
    root.mkdir()
    for name in ["b.mp4", "a.MOV", "c.webm", "notes.txt", "d.avi", "e.mkv"]:
        (root / name).touch()
    (root / "sub").mkdir()
    videos = read_corpora([root])
    assert list(videos["video_id"]) == ["a.MOV", "b.mp4", "c.webm", "d.avi", "e.mkv"]
    assert videos["label"].isna().all() and (videos["split"] == "test").all()
    assert videos["original"].isna().all() and videos["group"].nunique() == len(videos)


def test_plain_folder_without_videos_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="no metadata.json and no video files"):
        read_corpora([tmp_path / "empty"])


def test_link_parts_puts_each_folder_in_one_group(tmp_path):
    a = make_corpus(tmp_path / "a", {"a1.mp4": {"label": "REAL"}, "a2.mp4": {"label": "REAL"}})
    b = make_corpus(tmp_path / "b", {"b1.mp4": {"label": "REAL"}, "b2.mp4": {"label": "FAKE"}})
    assert read_corpora([a, b])["group"].nunique() == 4
    linked = read_corpora([a, b], link_parts=True)
    assert linked.groupby("part")["group"].nunique().eq(1).all()
    assert linked["group"].nunique() == 2


def test_read_test_labels(tmp_path):
    root = make_corpus(tmp_path / "c", BASIC)
    empty = read_test_labels(root)
    assert empty.empty and list(empty.columns) == ["video_id", "label"]
    (root / TEST_LABELS_NAME).write_text("filename,label\nt1.mp4,1\nt2.mp4,0\n")
    labels = read_test_labels(root)
    assert list(labels["video_id"]) == ["t1.mp4", "t2.mp4"] and list(labels["label"]) == [1, 0]
    assert str(labels["label"].dtype) == "Int8"


@pytest.mark.parametrize("text, match", [
    ("filename,label\nt1.mp4,FAKE\n", "label must be 0 or 1"),
    ("name,label\nt1.mp4,1\n", "missing column"),
    ("filename,label\nt1.mp4,1\nt1.mp4,0\n", "duplicate filename"),
])
def test_bad_test_labels(tmp_path, text, match):
    root = make_corpus(tmp_path / "c", BASIC)
    (root / TEST_LABELS_NAME).write_text(text)
    with pytest.raises(CorpusError, match=match) as info:
        read_test_labels(root)
    assert TEST_LABELS_NAME in str(info.value)


def test_dfdc_test_folder_labels_csv(tmp_path):
    """DFDC's test folder: videos without metadata.json, answers in labels.csv (1 = FAKE)."""
    root = tmp_path / "test"
    root.mkdir()
    for name in ("t1.mp4", "t2.mp4"):
        (root / name).write_bytes(b"video")
    (root / DFDC_TEST_LABELS_NAME).write_text("filename,label\nt1.mp4,1\nt2.mp4,0\n")
    videos = read_corpora([root])
    assert videos["label"].isna().all() and (videos["split"] == "test").all()  # never trained on
    labels = read_test_labels(root)
    assert dict(zip(labels["video_id"], labels["label"])) == {"t1.mp4": 1, "t2.mp4": 0}
    (root / TEST_LABELS_NAME).write_text("filename,label\nt1.mp4,1\n")
    with pytest.raises(CorpusError, match="keep one answer file"):
        read_test_labels(root)
