"""FaceForensics++ reader: a tiny tree of copies of one real mp4 under the official layout's names."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from features.corpus.ffpp import ACTORS, DFD_METHOD, MANIPULATED_DIR, ORIGINALS_DIR, SPLIT_DIR_NAME, VIDEOS_DIR, YOUTUBE, is_ffpp, read_ffpp
from features.corpus.folds import FoldConfig, check_folds, make_folds
from features.corpus.options import CorpusOptions
from features.corpus.readers import CorpusError

PAIRS = {"train": [("000", "001")], "val": [("002", "003")], "test": [("004", "005")]}
YOUTUBE_IDS = [v for pairs in PAIRS.values() for pair in pairs for v in pair]
FAKES = [f"{a}_{b}" for pairs in PAIRS.values() for x, y in pairs for a, b in ((x, y), (y, x))]
PAIR_METHODS_USED = ("Deepfakes", "Face2Face")
ACTOR_CLIPS = ("01__walking", "02__walking", "03__hugging")
DFD_CLIP = "01_02__walking__ABCD1234"
N_VIDEOS = len(YOUTUBE_IDS) + len(ACTOR_CLIPS) + len(PAIR_METHODS_USED) * len(FAKES) + 1
SPLIT_OF = {v: split for split, pairs in PAIRS.items() for pair in pairs for v in pair}


def _videos(root, top, source, c="c23"):
    return root / top / source / c / VIDEOS_DIR


def _put(clip, folder, stems):
    folder.mkdir(parents=True, exist_ok=True)
    for stem in stems:
        shutil.copyfile(clip, folder / f"{stem}.mp4")


def _write_splits(folder, pairs=PAIRS):
    folder.mkdir(parents=True, exist_ok=True)
    for split, items in pairs.items():
        (folder / f"{split}.json").write_text(json.dumps([list(p) for p in items]))


def _ffpp(root, clip, compressions=("c23",), splits=True, originals=True, fakes=True):
    """A FF++ root: 6 youtube clips, Deepfakes and Face2Face A_B fakes, 3 actors, 1 DFD fake."""
    for c in compressions:
        if originals:
            _put(clip, _videos(root, ORIGINALS_DIR, YOUTUBE, c), YOUTUBE_IDS)
            _put(clip, _videos(root, ORIGINALS_DIR, ACTORS, c), ACTOR_CLIPS)
        if fakes:
            for method in PAIR_METHODS_USED:
                _put(clip, _videos(root, MANIPULATED_DIR, method, c), FAKES)
            _put(clip, _videos(root, MANIPULATED_DIR, DFD_METHOD, c), [DFD_CLIP])
    if splits:
        _write_splits(root / SPLIT_DIR_NAME)
    return root


@pytest.fixture
def tree(tmp_path, clip):
    return _ffpp(tmp_path / "ffpp", clip)


def test_videos_table_ids_labels_originals_and_splits(tree):
    (_videos(tree, MANIPULATED_DIR, "Deepfakes") / "notes.txt").write_text("ignored")
    (tree / MANIPULATED_DIR / "Deepfakes" / "c23" / "masks").mkdir()  # FF++ ships masks beside videos
    assert is_ffpp(tree) and not is_ffpp(tree / SPLIT_DIR_NAME)
    videos = read_ffpp([tree])
    assert len(videos) == N_VIDEOS and videos["video_id"].is_unique
    v = videos.set_index("video_id")
    assert v.loc["youtube/000.mp4", "path"] == "original_sequences/youtube/c23/videos/000.mp4"
    assert v.loc["Deepfakes/001_000.mp4", "path"] == "manipulated_sequences/Deepfakes/c23/videos/001_000.mp4"
    assert v.loc["Face2Face/002_003.mp4", "original"] == "youtube/002.mp4"
    assert v.loc[f"{DFD_METHOD}/{DFD_CLIP}.mp4", "original"] == "actors/01__walking.mp4"
    reals = v["method"].isin([YOUTUBE, ACTORS])
    assert (v.loc[reals, "label"] == 0).all() and (v.loc[~reals, "label"] == 1).all()
    assert v.loc[reals, "original"].isna().all()
    assert set(v["method"]) == {YOUTUBE, ACTORS, *PAIR_METHODS_USED, DFD_METHOD}
    assert (v["compression"] == "c23").all() and (v["status"] == "ok").all()
    assert (v["media"] == "video").all()
    assert (v["root"] == str(tree)).all() and (v["part"] == "ffpp").all()
    for vid in YOUTUBE_IDS:
        assert v.loc[f"youtube/{vid}.mp4", "split"] == SPLIT_OF[vid]
    assert v.loc["Deepfakes/005_004.mp4", "split"] == "test"
    assert v.loc["Face2Face/003_002.mp4", "split"] == "val"
    assert (v.loc[v["method"].isin([ACTORS, DFD_METHOD]), "split"] == "train").all()


def test_groups_join_a_fake_its_original_and_its_source_and_folds_keep_them(tree):
    videos = read_ffpp([tree])
    g = videos.set_index("video_id")["group"]
    assert g["Deepfakes/000_001.mp4"] == g["youtube/000.mp4"] == g["youtube/001.mp4"]
    assert g["Face2Face/001_000.mp4"] == g["youtube/000.mp4"]
    assert g["youtube/000.mp4"] != g["youtube/002.mp4"] != g["youtube/004.mp4"]
    dfd = g[f"{DFD_METHOD}/{DFD_CLIP}.mp4"]
    assert dfd == g["actors/01__walking.mp4"] == g["actors/02__walking.mp4"] != g["actors/03__hugging.mp4"]
    folds = make_folds(videos, FoldConfig(k=2))
    check_folds(videos, folds)
    fold = dict(zip(folds["video_id"], folds["fold"]))
    assert all(pd.isna(fold[vid]) for vid in videos.loc[videos["split"] == "test", "video_id"])
    assert read_ffpp([tree], link_parts=True)["group"].nunique() == 1


def test_source_identity_links_videos_of_one_person_without_splits(tmp_path, clip):
    root = _ffpp(tmp_path / "ffpp", clip, splits=False)
    _put(clip, _videos(root, MANIPULATED_DIR, "Deepfakes"), ["004_000"])  # 000's face on 004's clip
    videos = read_ffpp(root)
    assert (videos["split"] == "train").all()
    g = videos.set_index("video_id")["group"]
    assert g["Deepfakes/004_000.mp4"] == g["youtube/004.mp4"] == g["youtube/000.mp4"]  # via the source link
    assert g["youtube/000.mp4"] == g["youtube/001.mp4"]
    check_folds(videos, make_folds(videos, FoldConfig(k=2)))


def test_split_dir_option_and_actor_absent(tmp_path, clip):
    root = _ffpp(tmp_path / "ffpp", clip, splits=False)
    _write_splits(tmp_path / "official")
    (_videos(root, ORIGINALS_DIR, ACTORS) / "01__walking.mp4").unlink()
    options = CorpusOptions(split_dir=str(tmp_path / "official"))
    videos = read_ffpp([root], options=options).set_index("video_id")
    assert videos.loc["youtube/004.mp4", "split"] == "test"
    assert pd.isna(videos.loc[f"{DFD_METHOD}/{DFD_CLIP}.mp4", "original"])  # no actor clip: no original
    with pytest.raises(CorpusError, match="nowhere: split folder"):
        read_ffpp([root], options=CorpusOptions(split_dir=str(tmp_path / "nowhere")))


def test_method_selection(tree):
    videos = read_ffpp([tree], options=CorpusOptions(methods=["Face2Face"]))
    assert set(videos["method"]) == {YOUTUBE, ACTORS, "Face2Face"}
    assert len(videos) == len(YOUTUBE_IDS) + len(ACTOR_CLIPS) + len(FAKES)
    unknown = r"unknown FaceForensics\+\+ method\(s\) \['DeepFake'\]; valid: Deepfakes, Face2Face"
    with pytest.raises(CorpusError, match=unknown):
        read_ffpp([tree], options=CorpusOptions(methods=["DeepFake"]))
    absent = r"\['FaceSwap'\] not found .*found: DeepFakeDetection, Deepfakes, Face2Face$"
    with pytest.raises(CorpusError, match=absent):
        read_ffpp([tree], options=CorpusOptions(methods=["FaceSwap"]))
    (tree / MANIPULATED_DIR / "Deepfakes_v2").mkdir()
    with pytest.raises(CorpusError, match="Deepfakes_v2: unknown folder in manipulated_sequences/"):
        read_ffpp([tree])


def test_compression_selection_and_missing_compression_folder(tmp_path, clip):
    root = _ffpp(tmp_path / "ffpp", clip, compressions=("c23", "c40"))
    videos = read_ffpp([root], options=CorpusOptions(compression="c40"))
    assert len(videos) == N_VIDEOS and (videos["compression"] == "c40").all()
    assert videos["path"].str.contains("/c40/videos/").all()
    shutil.rmtree(root / MANIPULATED_DIR / "Face2Face" / "c40")
    with pytest.raises(CorpusError, match=r"Face2Face: no c40/ folder .*compressions found: c23"):
        read_ffpp([root], options=CorpusOptions(compression="c40"))
    assert len(read_ffpp([root])) == N_VIDEOS  # c23 is complete
    with pytest.raises(CorpusError, match="compression 'c99' is not one of raw, c23, c40"):
        read_ffpp([root], options=CorpusOptions(compression="c99"))


@pytest.mark.parametrize("name, text, message", [
    ("train.json", '[["000", "001"]', r"train.json: malformed JSON at line 1"),
    ("val.json", "", r"val.json: malformed JSON at line 1, column 1"),
    ("test.json", '{"004": "005"}', r"test.json: must be a non-empty JSON list"),
    ("test.json", "[]", r"test.json: must be a non-empty JSON list"),
    ("val.json", '[["002"]]', r'val.json: pair 1 \(\["002"\]\): must be two different 3-digit'),
    ("val.json", '[["002", "003"], ["002", 3]]', r'val.json: pair 2 \(\["002", 3\]\)'),
    ("val.json", '[["002", "003"], ["000", "009"]]', r"val.json: pair 2 .*id '000' is also in .*train.json"),
])
def test_bad_split_files_name_the_file_and_pair(tree, name, text, message):
    (tree / SPLIT_DIR_NAME / name).write_text(text)
    with pytest.raises(CorpusError, match=message):
        read_ffpp([tree])


def test_missing_split_file_and_video_in_no_pair(tree, clip):
    _put(clip, _videos(tree, ORIGINALS_DIR, YOUTUBE), ["006"])
    with pytest.raises(CorpusError, match=r"splits: 1 video\(s\) in no pair of the split files: .*/006.mp4"):
        read_ffpp([tree])
    (tree / SPLIT_DIR_NAME / "test.json").unlink()
    with pytest.raises(CorpusError, match=r"splits: missing split file\(s\) test.json"):
        read_ffpp([tree])


def test_video_named_by_a_split_file_but_absent(tree):
    (_videos(tree, MANIPULATED_DIR, "Deepfakes") / "002_003.mp4").unlink()
    (_videos(tree, ORIGINALS_DIR, YOUTUBE) / "005.mp4").unlink()
    with pytest.raises(CorpusError, match=r"2 video\(s\) named by the split files not found") as err:
        read_ffpp([tree])
    assert "val.json: Deepfakes/002_003.mp4" in str(err.value)
    assert "test.json: youtube/005.mp4" in str(err.value)
    videos = read_ffpp([tree], on_missing="status")
    assert len(videos) == N_VIDEOS
    v = videos.set_index("video_id")
    row = v.loc["Deepfakes/002_003.mp4"]
    assert row["status"] == "missing_file" and row["split"] == "val" and row["original"] == "youtube/002.mp4"
    assert row["path"] == "manipulated_sequences/Deepfakes/c23/videos/002_003.mp4"
    assert "video file not found" in row["message"] and "val.json" in row["message"]
    assert row["group"] == v.loc["youtube/003.mp4", "group"]
    assert v.loc["youtube/005.mp4", "status"] == "missing_file" and v.loc["youtube/005.mp4", "label"] == 0
    assert (v["status"] == "ok").sum() == N_VIDEOS - 2


@pytest.mark.parametrize("top, source, name", [
    (MANIPULATED_DIR, "Deepfakes", "abc.mp4"),
    (ORIGINALS_DIR, YOUTUBE, "7.mp4"),
    (ORIGINALS_DIR, ACTORS, "walking.mp4"),
    (MANIPULATED_DIR, DFD_METHOD, "01__walking.mp4"),
])
def test_name_that_does_not_parse_is_an_error_naming_the_file(tree, clip, top, source, name):
    shutil.copyfile(clip, _videos(tree, top, source) / name)
    with pytest.raises(CorpusError, match=f"{source}/c23/videos/{name}: file name does not parse"):
        read_ffpp([tree])


def test_several_roots_and_ids_unique_across_them(tmp_path, clip):
    originals = _ffpp(tmp_path / "originals", clip, fakes=False)
    fakes = _ffpp(tmp_path / "fakes", clip, originals=False)
    videos = read_ffpp([originals, fakes])
    assert len(videos) == N_VIDEOS and set(videos["part"]) == {"originals", "fakes"}
    g = videos.set_index("video_id")["group"]
    assert g["Deepfakes/000_001.mp4"] == g["youtube/001.mp4"]  # across the two roots
    assert g[f"{DFD_METHOD}/{DFD_CLIP}.mp4"] == g["actors/02__walking.mp4"]
    check_folds(videos, make_folds(videos, FoldConfig(k=2)))
    shutil.copytree(originals, tmp_path / "again")
    with pytest.raises(CorpusError, match=r"'actors/01__walking.mp4' found twice: .*originals.* and .*again"):
        read_ffpp([originals, tmp_path / "again"])


def test_bad_arguments(tree, tmp_path):
    with pytest.raises(ValueError, match="on_missing='skip'"):
        read_ffpp([tree], on_missing="skip")
    (tmp_path / "plain").mkdir()
    with pytest.raises(CorpusError, match="plain: not a FaceForensics"):
        read_ffpp([tmp_path / "plain"])
