"""Pre-extracted faces (Kaggle "deepfake-faces" form): the reader, the face import, and a whole
oof.py + stack.py run on a tiny set made from generated crops."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest
from tiny_runs import tiny_oof, tiny_stack

from features.corpus.face_csv import CSV_NAME, MEDIA_FACES, read_face_csv
from features.corpus.folds import FoldConfig, check_folds, make_folds
from features.corpus.layouts import detect_layout, read_videos
from features.corpus.readers import CorpusError
from features.faces.config import FaceConfig
from features.faces.extract import load_crops
from features.faces.images import import_faces

HEADER = "videoname,original_width,original_height,label,original\n"
IMAGE_DIR = "faces_224"
IMAGE_SIZE = 96


def _face_set(root, rows: list[tuple[str, str, str]], images: bool = True):
    """A face-csv folder: metadata.csv rows (videoname, label, original) and one image each."""
    (root / IMAGE_DIR).mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = [HEADER] + [f"{v},{IMAGE_SIZE},{IMAGE_SIZE},{label},{orig}\n" for v, label, orig in rows]
    (root / CSV_NAME).write_text("".join(lines))
    if images:
        for v, _, _ in rows:
            img = rng.integers(0, 255, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
            cv2.imwrite(str(root / IMAGE_DIR / v.replace(".mp4", ".jpg")), img)
    return root


BASIC = [("aaa.mp4", "REAL", ""), ("bbb.mp4", "FAKE", "aaa.mp4"), ("ccc.mp4", "FAKE", "aaa.mp4"),
         ("ddd.mp4", "REAL", ""), ("eee.mp4", "FAKE", "ddd.mp4"), ("fff.mp4", "FAKE", "zzz.mp4")]


def test_reader_makes_the_videos_table_with_groups(tmp_path):
    root = _face_set(tmp_path / "faces", BASIC)
    assert detect_layout(root) == "face_csv"
    videos = read_videos([root])
    assert list(videos["video_id"]) == [v for v, _, _ in BASIC]
    assert (videos["media"] == MEDIA_FACES).all() and (videos["split"] == "train").all()
    assert list(videos["label"]) == [0, 1, 1, 0, 1, 1]
    assert videos["path"].iloc[1] == f"{IMAGE_DIR}/bbb.jpg"
    assert (videos["original_width"] == IMAGE_SIZE).all()  # the face's width before resizing, kept
    g = videos.set_index("video_id")["group"]
    assert g["aaa.mp4"] == g["bbb.mp4"] == g["ccc.mp4"] != g["ddd.mp4"] == g["eee.mp4"] != g["fff.mp4"]
    folds = make_folds(videos, FoldConfig(k=2))
    check_folds(videos, folds)


@pytest.mark.parametrize("rows, message", [
    ([("aaa.mp4", "MAYBE", "")], "line 2: label 'MAYBE'"),
    ([("aaa.mp4", "REAL", ""), ("bbb.mp4", "FAKE", "")], "line 3: a FAKE video without an original"),
    ([("aaa.mp4", "REAL", "bbb.mp4")], "line 2: a REAL video names an original"),
    ([("a/b.mp4", "REAL", "")], "plain file name"),
    ([("aaa.mp4", "REAL", ""), ("aaa.mp4", "REAL", "")], "duplicate videoname"),
])
def test_bad_rows_name_the_file_and_line(tmp_path, rows, message):
    root = _face_set(tmp_path / "faces", rows, images=False)
    with pytest.raises(CorpusError, match=message) as err:
        read_face_csv([root], on_missing="status")
    assert str(root / CSV_NAME) in str(err.value)


def test_missing_column_and_missing_images(tmp_path):
    root = _face_set(tmp_path / "faces", BASIC)
    (root / IMAGE_DIR / "ccc.jpg").unlink()
    with pytest.raises(CorpusError, match="1 video file.*ccc"):
        read_face_csv([root])
    videos = read_face_csv([root], on_missing="status")
    assert videos.set_index("video_id").loc["ccc.mp4", "status"] == "missing_file"
    (root / CSV_NAME).write_text("videoname,label\naaa.mp4,REAL\n")
    with pytest.raises(CorpusError, match=r"missing column\(s\) \['original'\]"):
        read_face_csv([root])


def test_import_resizes_into_the_face_cache_and_gives_every_video_a_status(tmp_path):
    root = _face_set(tmp_path / "faces", BASIC)
    (root / IMAGE_DIR / "ddd.jpg").write_bytes(b"not an image")
    (root / IMAGE_DIR / "eee.jpg").unlink()
    videos = read_face_csv([root], on_missing="status")
    cfg = FaceConfig(crop_size=32, workers=1)  # in this process; the other tests use the pool
    res = import_faces(videos, cfg, tmp_path / "cache", progress=False)
    status = res.status.set_index("video_id")["status"]
    assert status["ddd.mp4"] == "decode_error" and status["eee.mp4"] == "missing_file"
    assert (status.drop(["ddd.mp4", "eee.mp4"]) == "ok").all()
    crops = load_crops(res.crops_dir, "aaa.mp4")
    image = cv2.cvtColor(cv2.imread(str(root / IMAGE_DIR / "aaa.jpg")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(crops[0], cv2.resize(image, (32, 32), interpolation=cv2.INTER_AREA))
    assert len(res.faces) == 4 and (res.faces["x1"] == IMAGE_SIZE).all()
    again = import_faces(videos, cfg, tmp_path / "cache", progress=False)  # cached: same tables
    pd.testing.assert_frame_equal(again.faces, res.faces)


@pytest.fixture(scope="module")
def crops_set(synth_faces, tmp_path_factory):
    """A face-csv set made from a generated corpus: the first face of each video."""
    tmp = tmp_path_factory.mktemp("faceset")
    _, videos, res, meta = synth_faces
    root = tmp / "faces"
    (root / IMAGE_DIR).mkdir(parents=True)
    lines = [HEADER]
    for vid in videos["video_id"]:
        crops = load_crops(res.crops_dir, vid)
        if len(crops):
            cv2.imwrite(str(root / IMAGE_DIR / vid.replace(".mp4", ".jpg")), cv2.cvtColor(crops[0], cv2.COLOR_RGB2BGR))
        lines.append(f"{vid},64,64,{meta[vid]['label']},{meta[vid].get('original') or ''}\n")
    (root / CSV_NAME).write_text("".join(lines))
    return root, len(videos)


def test_face_set_runs_through_oof_and_stack(crops_set, tmp_path):
    root, n_videos = crops_set
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = tiny_oof([root], tmp_path / "work", uri, ("on_missing=status",))
    status = pd.read_parquet(run.output_dir / "face_status.parquet")
    assert len(status) == n_videos and set(status["status"]) <= {"ok", "missing_file"}
    assert (run.frame_preds["frame_idx"] == 0).all()
    res = tiny_stack(run, tmp_path / "s", uri)
    assert len(res.video_features) == n_videos and np.isfinite(res.best.metrics["cv_log_loss"])


def test_a_folder_of_frames_per_video(tmp_path):
    """The folder-per-video form: frames in name order, n_frames of them evenly spaced."""
    root = _face_set(tmp_path / "faces", BASIC[:2], images=False)
    rng = np.random.default_rng(1)
    for stem in ("aaa", "bbb"):
        (root / IMAGE_DIR / stem).mkdir()
        for i in range(5):
            cv2.imwrite(str(root / IMAGE_DIR / stem / f"{i:03d}.png"),
                        rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
    (root / IMAGE_DIR / "bbb" / "002.png").write_bytes(b"broken")
    videos = read_face_csv([root])
    assert list(videos["path"]) == [f"{IMAGE_DIR}/aaa", f"{IMAGE_DIR}/bbb"]
    res = import_faces(videos, FaceConfig(crop_size=16, n_frames=3), tmp_path / "cache", progress=False)
    faces = res.faces.set_index("video_id")
    assert list(faces.loc["aaa.mp4", "frame_idx"]) == [0, 1, 2]  # frames 000, 002, 004
    assert list(faces.loc["bbb.mp4", "frame_idx"]) == [0, 2]  # 002 unreadable
    status = res.status.set_index("video_id")
    assert status.loc["bbb.mp4", "status"] == "ok" and "002.png" in status.loc["bbb.mp4", "message"]
    first = cv2.cvtColor(cv2.imread(str(root / IMAGE_DIR / "aaa" / "000.png")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(load_crops(res.crops_dir, "aaa.mp4")[0],
                                  cv2.resize(first, (16, 16), interpolation=cv2.INTER_AREA))
    (root / IMAGE_DIR / "aaa.jpg").write_bytes(b"x")  # now an image and a folder claim aaa
    with pytest.raises(CorpusError, match="two face sources for video 'aaa'"):
        read_face_csv([root])
