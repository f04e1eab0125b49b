"""Layout choice: by what a folder holds or by name, one layout per run, identity links optional."""

from __future__ import annotations

import pytest

from features.corpus.folds import FoldConfig, LeakError, check_folds, make_folds
from features.corpus.layouts import LAYOUTS, detect_layout, read_videos
from features.corpus.options import CorpusOptions
from features.corpus.readers import CorpusError
from pipelines import oof

CELEB = ["Celeb-real/id0_0000.mp4", "Celeb-real/id1_0000.mp4", "Celeb-synthesis/id0_id1_0000.mp4",
         "YouTube-real/00000.mp4"]


def _tree(root, names):
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"video")
    return root


def test_layout_detected_from_the_folder(tmp_path):
    assert detect_layout(_tree(tmp_path / "c", CELEB)) == "celebdf"
    assert detect_layout(_tree(tmp_path / "f", ["original_sequences/youtube/c23/videos/000.mp4"])) == "ffpp"
    assert detect_layout(_tree(tmp_path / "d", ["manipulated_videos/end_to_end/000_M101.mp4"])) == "deeperforensics"
    assert detect_layout(_tree(tmp_path / "p", ["a.mp4"])) == "dfdc"
    assert set(LAYOUTS.names()) == {"dfdc", "face_csv", "deepfakebench", "ffpp", "celebdf", "deeperforensics"}


def test_one_layout_per_run_and_unknown_names_list_the_valid_ones(tmp_path):
    celeb, plain = _tree(tmp_path / "c", CELEB), _tree(tmp_path / "p", ["a.mp4"])
    with pytest.raises(CorpusError, match="different layouts"):
        read_videos([celeb, plain])
    with pytest.raises(CorpusError, match="unknown corpus layout .nope.; valid: celebdf, deeperforensics, deepfakebench"):
        read_videos([celeb], layout="nope")


def test_identity_links_can_be_dropped_for_official_splits(tmp_path):
    celeb = _tree(tmp_path / "c", CELEB)
    linked = read_videos([celeb]).set_index("video_id")["group"]
    assert linked["Celeb-real/id1_0000.mp4"] == linked["Celeb-synthesis/id0_id1_0000.mp4"]
    plain = read_videos([celeb], options=CorpusOptions(link_identities=False)).set_index("video_id")["group"]
    assert plain["Celeb-real/id0_0000.mp4"] == plain["Celeb-synthesis/id0_id1_0000.mp4"]  # still its original
    assert plain["Celeb-real/id1_0000.mp4"] != plain["Celeb-synthesis/id0_id1_0000.mp4"]


def test_a_person_on_both_sides_of_an_official_split_ends_with_exit_2(tmp_path, capsys):
    names = CELEB + ["Celeb-real/id2_0000.mp4", "Celeb-real/id3_0000.mp4"]
    celeb = _tree(tmp_path / "c", names)
    # the test list holds id0's video and its fake with id1's face; id1's own video is trained on
    (celeb / "List_of_testing_videos.txt").write_text("1 Celeb-real/id0_0000.mp4\n0 Celeb-synthesis/id0_id1_0000.mp4\n")
    videos = read_videos([celeb])
    with pytest.raises(LeakError, match="link_identities=false"):
        make_folds(videos, FoldConfig(k=2))
    plain = read_videos([celeb], options=CorpusOptions(link_identities=False))
    check_folds(plain, make_folds(plain, FoldConfig(k=2)))  # the fake stays with its original
    with pytest.raises(SystemExit) as exit_info:
        oof.main(["--data", str(celeb), "--workdir", str(tmp_path / "w"),
                  "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--set", "folds.k=2"])
    assert exit_info.value.code == 2 and "link_identities=false" in capsys.readouterr().err
