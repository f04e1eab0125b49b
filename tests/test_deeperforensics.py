"""DeeperForensics-1.0 reader: fakes from a tiny tree with split lists, reals from a tiny FF++ tree,
target/actor groups, leak-free folds, and a clear error or explicit status for each bad input."""

from __future__ import annotations

import shutil

import pytest

from features.corpus.deeperforensics import is_deeperforensics, read_deeperforensics
from features.corpus.folds import FoldConfig, check_folds, make_folds
from features.corpus.options import CorpusOptions
from features.corpus.readers import CorpusError

VARIANTS = ["end_to_end", "end_to_end_level_1"]
LISTS = {"train": ["000_M101.mp4", "001_M101.mp4", "002_W102.mp4"], "val": ["003_W103.mp4"],
         "test": ["004_M104.mp4"]}
FILES = [f for names in LISTS.values() for f in names]
TARGETS = ["000", "001", "002", "003", "004", "005"]  # 005: a real no fake uses
REAL_VIDEOS = "original_sequences/youtube/c23/videos"


def _put(clip, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(clip, path)


def _trees(tmp_path, clip, files=FILES, lists=LISTS, targets=TARGETS):
    """(DeeperForensics root, FF++ root, options naming the FF++ root)."""
    df, ff = tmp_path / "DeeperForensics-1.0", tmp_path / "FaceForensics++"
    for variant in VARIANTS:
        for name in files:
            _put(clip, df / "manipulated_videos" / variant / name)
    (df / "lists" / "splits").mkdir(parents=True)
    for split, names in lists.items():
        (df / "lists" / "splits" / f"{split}.txt").write_text("\n".join(names) + "\n")
    for target in targets:
        _put(clip, ff / REAL_VIDEOS / f"{target}.mp4")
    return df, ff, CorpusOptions(real_root=str(ff))


def test_table_of_fakes_and_their_reals(tmp_path, clip):
    df, ff, options = _trees(tmp_path, clip)
    assert is_deeperforensics(df) and not is_deeperforensics(ff)
    videos = read_deeperforensics([df], options=options).set_index("video_id")
    fakes = [f"{v}/{f}" for v in VARIANTS for f in FILES]
    reals = [f"youtube/{t}.mp4" for t in TARGETS[:-1]]  # 005 is used by no fake: not read
    assert sorted(videos.index) == sorted(fakes + reals)
    assert (videos.loc[fakes, "label"] == 1).all() and (videos.loc[reals, "label"] == 0).all()
    fake = videos.loc["end_to_end/000_M101.mp4"]
    assert fake["original"] == "youtube/000.mp4" and fake["method"] == "end_to_end"
    assert fake["path"] == "manipulated_videos/end_to_end/000_M101.mp4" and fake["root"] == str(df)
    assert videos.loc[fakes, "compression"].isna().all()
    real = videos.loc["youtube/003.mp4"]
    assert real["root"] == str(ff) and real["path"] == f"{REAL_VIDEOS}/003.mp4"
    assert (real["method"], real["compression"], real["split"]) == ("youtube", "c23", "val")
    assert real["part"] == "FaceForensics++" and videos.loc[reals, "original"].isna().all()
    for split, names in LISTS.items():
        assert (videos.loc[[f"{v}/{n}" for v in VARIANTS for n in names], "split"] == split).all()
    assert (videos["status"] == "ok").all()


def test_groups_join_target_and_actor_and_folds_do_not_leak(tmp_path, clip):
    df, _, options = _trees(tmp_path, clip)
    raw = read_deeperforensics([df], options=options)
    g = raw.set_index("video_id")["group"]
    # the fake, its original, the same target in another variant, and another fake of actor M101
    assert (g["end_to_end/000_M101.mp4"] == g["youtube/000.mp4"] == g["end_to_end_level_1/000_M101.mp4"]
            == g["end_to_end/001_M101.mp4"] == g["youtube/001.mp4"])
    assert g["end_to_end/002_W102.mp4"] == g["youtube/002.mp4"] != g["youtube/000.mp4"]
    folds = make_folds(raw, FoldConfig(k=2))
    check_folds(raw, folds)
    held_out = ["youtube/004.mp4", "end_to_end/004_M104.mp4"]
    assert folds.set_index("video_id").loc[held_out, "fold"].isna().all()


def test_methods_select_variants(tmp_path, clip):
    df, _, options = _trees(tmp_path, clip)
    options.methods = ["end_to_end"]
    videos = read_deeperforensics([df], options=options)
    assert set(videos["method"]) == {"end_to_end", "youtube"}
    options.methods = ["nope"]
    with pytest.raises(CorpusError, match="unknown variant.*nope.*found: end_to_end, end_to_end_level_1"):
        read_deeperforensics([df], options=options)


def test_settings_errors(tmp_path, clip):
    df, ff, options = _trees(tmp_path, clip)
    with pytest.raises(CorpusError, match="set corpus.real_root"):
        read_deeperforensics([df])
    with pytest.raises(CorpusError, match="c40/videos: not found"):
        read_deeperforensics([df], options=CorpusOptions(real_root=str(ff), compression="c40"))
    with pytest.raises(CorpusError, match="not a DeeperForensics folder"):
        read_deeperforensics([ff], options=options)
    with pytest.raises(ValueError, match="on_missing"):
        read_deeperforensics([df], on_missing="skip", options=options)


def test_missing_real_is_an_error_or_a_missing_file_row(tmp_path, clip):
    df, ff, options = _trees(tmp_path, clip, targets=["000", "001", "002", "004"])
    with pytest.raises(CorpusError, match=r"real video not found: .*003\.mp4 \(the original of .*003_W103"):
        read_deeperforensics([df], options=options)
    real = read_deeperforensics([df], on_missing="status", options=options).set_index("video_id").loc[
        "youtube/003.mp4"]
    assert real["status"] == "missing_file" and real["split"] == "val"


def test_listed_fake_absent_is_an_error_or_a_missing_file_row(tmp_path, clip):
    lists = {**LISTS, "test": ["004_M104.mp4", "005_M105.mp4"]}
    df, _, options = _trees(tmp_path, clip, lists=lists)
    with pytest.raises(CorpusError, match=r"2 video file\(s\) not found: .*test.txt, line 2: listed fake"):
        read_deeperforensics([df], options=options)
    videos = read_deeperforensics([df], on_missing="status", options=options).set_index("video_id")
    for vid in ("end_to_end/005_M105.mp4", "end_to_end_level_1/005_M105.mp4"):
        assert videos.loc[vid, "status"] == "missing_file" and videos.loc[vid, "split"] == "test"
    assert videos.loc["youtube/005.mp4", "status"] == "ok"  # its real is still read


@pytest.mark.parametrize("line, message", [
    ("000_M101.mp4 extra", r"line 2: file name '000_M101.mp4 extra' does not parse"),
    ("M101_000.mp4", "line 2: file name 'M101_000.mp4' does not parse"),
    ("end_to_end/000_M101.mp4", "line 2: file name .* does not parse"),
    ("001_M101.mp4", r"line 2: '001_M101.mp4' is listed twice \(first at .*train.txt, line 2\)"),
])
def test_bad_list_lines_name_the_file_and_line(tmp_path, clip, line, message):
    df, _, options = _trees(tmp_path, clip, lists={**LISTS, "test": ["004_M104.mp4", line]})
    with pytest.raises(CorpusError, match=message) as err:
        read_deeperforensics([df], on_missing="status", options=options)
    assert "test.txt" in str(err.value)


def test_a_file_name_that_does_not_parse(tmp_path, clip):
    df, _, options = _trees(tmp_path, clip, files=FILES + ["face.mp4"])
    with pytest.raises(CorpusError, match=r"face\.mp4: file name 'face\.mp4' does not parse"):
        read_deeperforensics([df], options=options)


def test_fakes_of_one_target_in_two_splits_are_a_leak(tmp_path, clip):
    lists = {**LISTS, "test": ["004_M104.mp4", "000_W105.mp4"]}
    df, _, options = _trees(tmp_path, clip, files=FILES + ["000_W105.mp4"], lists=lists)
    leak = r"target 000: its fakes are in 2 splits \(test: .*000_W105.*train:"
    with pytest.raises(CorpusError, match=leak):
        read_deeperforensics([df], options=options)
