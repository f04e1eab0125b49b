"""A detector from face-image training (issue 26 item 3): the face settings that made a face set's
crops, stated or estimated from the images, are recorded by the packaged detector, which crops the
videos it scores with them; and predict.py's face cache is keyed by file, bounded in size."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from face_set_data import write_face_set
from tiny_runs import tiny_oof, tiny_stack

import mlflow
from features.common import ConfigError
from features.corpus.layouts import read_videos
from features.faces import cache
from features.faces.config import FaceConfig
from features.faces.extract import extract_faces
from features.faces.face_sets import ESTIMATED, SETTINGS_FILE, STATED, FaceImagesConfig, estimate_face_settings, resolve_face_set
from pipelines import predict
from pipelines.scoring import face_cache
from pipelines.scoring.detector import file_video_id
from pipelines.scoring.inputs import collect_paths
from pipelines.stacking.model import input_columns, model_input

KNOWN_MARGIN = 0.4  # the face set's crops are cut with this margin (the profile's default is 0.25)
MARGIN_TOL = 0.05  # measured: the estimate lands within 0.02 of the margin on generated crops
CROP_PX = 64


@pytest.fixture(scope="module")
def known_set(synth_faces, tmp_path_factory):
    """(face set root, corpus root): the generated corpus's faces cropped at KNOWN_MARGIN, as a face set."""
    corpus, videos, _, _ = synth_faces
    tmp = tmp_path_factory.mktemp("known")
    faces = extract_faces(videos, FaceConfig(n_frames=2, crop_size=CROP_PX, margin=KNOWN_MARGIN, workers=1,
                                             det_prob=0.7), tmp / "cache", progress=False)
    return write_face_set(tmp / "faces", corpus, videos, faces), corpus


def test_the_margin_estimate_recovers_known_margins(synth_faces, known_set, tmp_path):
    corpus, videos, faces, _ = synth_faces  # cropped at FaceConfig's default margin
    default_set = write_face_set(tmp_path / "default", corpus, videos, faces)
    for root, margin in ((default_set, FaceConfig.margin), (known_set[0], KNOWN_MARGIN)):
        settings, why = estimate_face_settings(read_videos([root]), FaceConfig(), FaceImagesConfig(sample=16))
        assert settings is not None, why
        assert settings.how == ESTIMATED and abs(settings.margin - margin) <= MARGIN_TOL
        assert settings.margin_q25 <= settings.margin <= settings.margin_q75  # the spread is reported
        assert settings.n_found >= settings.n_sampled // 2 and settings.crop_size == CROP_PX


def test_stated_settings_win_and_unknown_ones_say_how_to_state_them(known_set):
    videos = read_videos([known_set[0]])
    settings, _ = resolve_face_set(videos, FaceConfig(), FaceImagesConfig(margin=0.3, crop_size=224))
    assert settings.how == STATED and settings.margin == 0.3 and settings.crop_size == 224
    none, why = resolve_face_set(videos, FaceConfig(), FaceImagesConfig(estimate=False))
    assert none is None and "face_images.margin" in why
    assert resolve_face_set(read_videos([known_set[1]]), FaceConfig(), FaceImagesConfig()) == (None, "")
    assert FaceImagesConfig(margin=-0.1).margin == -0.1  # tight face sets (DFDC's crops) cut inside the box
    with pytest.raises(ConfigError, match="margin > -0.5"):
        FaceImagesConfig(margin=-0.6)


@pytest.mark.slow
def test_a_face_set_detector_crops_videos_with_the_face_sets_margin(known_set, tmp_path, capsys):
    root, corpus = known_set
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = tiny_oof([root], tmp_path / "work", uri)
    settings = json.loads((run.output_dir / SETTINGS_FILE).read_text())
    assert settings["how"] == ESTIMATED and abs(settings["margin"] - KNOWN_MARGIN) <= MARGIN_TOL
    res = tiny_stack(run, tmp_path / "s", uri)
    assert res.detector_uri, res.detector_note
    mlflow.set_tracking_uri(uri)
    with pytest.MonkeyPatch.context() as mp:  # the level-1 model loads without unpickling anything
        mp.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
        ensemble = mlflow.pyfunc.load_model(res.model_uri)
    vf = res.video_features
    X = model_input(vf, input_columns(res.best.ensemble, vf))
    np.testing.assert_allclose(np.asarray(ensemble.predict(X), float),
                               res.best.ensemble.predict_proba(vf)[:, 1], atol=1e-12)
    local = Path(mlflow.artifacts.download_artifacts(res.detector_uri, dst_path=str(tmp_path / "model")))
    spec = json.loads(next(local.rglob("detector.json")).read_text())
    assert spec["faces"]["margin"] == settings["margin"] and spec["face_settings"]["how"] == ESTIMATED
    video = sorted(corpus.glob("*.mp4"))[0]
    cache_dir = tmp_path / "predict-faces"
    out = predict.main([str(video), "--model", res.detector_uri, "--tracking-uri", uri,
                        "--out", str(tmp_path / "p.csv"), "--set", f"cache_dir={cache_dir}", "--set", "progress=false"])
    assert out.table["status"].tolist() == ["ok"] and np.isfinite(out.table["p_fake"]).all()
    printed = capsys.readouterr().out
    assert f"face settings: margin {settings['margin']:.3f} estimated from" in printed
    used = [json.loads((d / cache.CONFIG_FILE).read_text()) for d in cache_dir.iterdir()]
    assert [c["margin"] for c in used] == [settings["margin"]]  # the video was cropped as the face set
    # the face cache follows the files: the same videos in another order are not extracted again
    detector, _ = predict.load_detector(res.detector_uri, None)
    rows = collect_paths([str(v) for v in sorted(corpus.glob("*.mp4"))[:3]])
    first = detector.score(rows, cache_dir=cache_dir)
    markers = {p: p.stat().st_mtime_ns for p in cache_dir.rglob("*.status.json")}
    again = detector.score(rows.iloc[::-1], cache_dir=cache_dir)
    assert {p: p.stat().st_mtime_ns for p in cache_dir.rglob("*.status.json")} == markers and len(markers) == 3
    pd.testing.assert_series_equal(again.set_index("path")["p_fake"].loc[first["path"]],
                                   first.set_index("path")["p_fake"])


@pytest.mark.slow
def test_without_face_settings_no_detector_is_packaged(known_set, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = tiny_oof([known_set[0]], tmp_path / "work", uri, ("face_images.estimate=false", "train.epochs=1"))
    assert not (run.output_dir / SETTINGS_FILE).exists()
    res = tiny_stack(run, tmp_path / "s", uri, ("nested=false",))
    assert res.detector_uri is None and "face_images.margin" in res.detector_note


# ---- the scoring face cache: keyed by file, bounded


def test_the_face_cache_key_follows_the_file_not_its_position(tmp_path):
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    a.write_bytes(b"x" * 10)
    b.write_bytes(b"y" * 10)
    key = file_video_id(str(a))
    assert key == file_video_id(str(a)) and key != file_video_id(str(b))
    a.write_bytes(b"x" * 11)  # replaced at the same path: another key, extracted again
    assert file_video_id(str(a)) != key


def _fake_entry(crops_dir: Path, vid: str, n_bytes: int, used: float) -> None:
    (crops_dir / f"{cache.video_name(vid)}.npy").write_bytes(b"\0" * n_bytes)
    cache.marker_path(crops_dir, vid).write_text("{}")
    os.utime(cache.marker_path(crops_dir, vid), (used, used))


def test_the_face_cache_bound_evicts_the_least_recently_used(tmp_path):
    crops_dir = tmp_path / "cache" / "abc"
    crops_dir.mkdir(parents=True)
    for i, vid in enumerate(["old", "mid", "new"]):
        _fake_entry(crops_dir, vid, 1000, used=1_000_000 + i)
    face_cache.touch(crops_dir, ["old"])  # just used: now the newest
    assert face_cache.prune(tmp_path / "cache", 2100) == 1
    left = sorted(p.name for p in crops_dir.iterdir())
    assert left == ["new.npy", "new.status.json", "old.npy", "old.status.json"]
    assert face_cache.prune(tmp_path / "cache", 0) == 2 and not any(crops_dir.iterdir())
    with pytest.raises(ConfigError, match="cache_max_bytes"):
        predict.PredictConfig(cache_max_bytes=-1)
