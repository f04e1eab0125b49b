"""Explanations end to end on one tiny oof + stack run (shared by the module): heat maps of a
trained learner, the reports stack.py writes and logs for its costliest OOF videos, predict.py
--explain (a video without a face and a file that is no video included), and a report rendered
by headless Chromium.

Chromium: CI installs Debian's `chromium` when it is missing (.ci/run). The browser test fails
when it is absent; FAKESTACK_SKIP_BROWSER=1 skips it explicitly (a machine without a browser).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from tiny_runs import tiny_oof, tiny_stack

import mlflow
from base_learners.explain import MapConfig, face_maps, mappable
from base_learners.registry import LearnerConfig, build_learner, load_unit_model, target_layer_path
from features.common import from_dict
from features.faces.extract import load_crops
from features.synth import SynthConfig, generate_corpus
from pipelines import predict
from pipelines.explain.case import ExplainConfig, VideoCase, explain
from pipelines.explain.report import heatmaps_section, report_name
from pipelines.stack import EXPLAIN_DIR

SECTIONS = ("verdict", "frames", "timeline", "heatmaps", "contributions")
SKIP_BROWSER_ENV = "FAKESTACK_SKIP_BROWSER"
BROWSER = "chromium"
BROWSER_TIMEOUT_S = 90
WINDOW = (1100, 2600)
MIN_PIXEL_STD = 20.0  # a blank (or single-colour) screenshot has ~0
MIN_INK_SHARE = 0.02  # share of non-white pixels of a rendered report (text, figures)
EXPLAIN_TOP = 2


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(tmp folder, corpus root, oof run, stack result, tracking uri)."""
    tmp = tmp_path_factory.mktemp("explain")
    root = generate_corpus(tmp / "corpus", SynthConfig.tiny(n_originals=4), progress=False)
    uri = f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        oof_run = tiny_oof([root], tmp / "work", uri, ("faces.n_frames=4", "faces.workers=1"))
        res = tiny_stack(oof_run, tmp / "stack", uri, ("nested=false", f"explain_top={EXPLAIN_TOP}"))
    return tmp, root, oof_run, res, uri


def _fold_model(oof_run, learner: str = "meso4", fold: int = 0):
    units = pd.read_parquet(oof_run.output_dir / "units.parquet")
    row = units[(units["learner"] == learner) & (units["fold"] == fold)].iloc[0]
    unit_dir = oof_run.output_dir / row["dir"]
    import json

    info = json.loads((unit_dir / "metrics.json").read_text())
    return load_unit_model(unit_dir, from_dict(LearnerConfig, info["learner_config"], where="test"))


def _most_fake_crops(run, k: int = 3) -> np.ndarray:
    """The crops the tiny meso4 finds most fake (the faces a report shows heat maps of)."""
    tmp, _, oof_run, _, _ = run
    fp = oof_run.frame_preds.sort_values("prob", ascending=False).head(k)
    crops_dir = next(p for p in (tmp / "work" / "faces").iterdir() if p.is_dir())
    faces = pd.read_parquet(oof_run.output_dir / "faces.parquet").set_index(["video_id", "frame_idx", "face_idx"])
    return np.stack([load_crops(crops_dir, r.video_id)[faces.loc[(r.video_id, r.frame_idx, r.face_idx), "crop_idx"]]
                     for r in fp.itertuples()])


@pytest.mark.parametrize("method", ["gradcam", "lime"])
def test_maps_of_a_trained_learner_have_the_crop_shape_and_vary(run, method):
    crops = _most_fake_crops(run)
    model = _fold_model(run[2])
    maps = face_maps([model], crops, MapConfig(method=method, lime_samples=60))
    assert maps.shape == crops.shape[:3]
    assert np.isfinite(maps).all() and (maps >= 0).all()
    assert all(m.max() > m.min() for m in maps), "a constant map explains nothing"
    # outside the learner's central view (crop_frac 0.75) the map is zero: it saw nothing there
    side, keep = crops.shape[1], round(crops.shape[1] * model.crop_frac)
    border = (side - keep) // 2
    assert border > 0 and (maps[:, :border] == 0).all() and (maps[:, :, -border:] == 0).all()


@pytest.mark.parametrize("name, variant, size, frac", [("resnext", "resnext_tiny", 48, 0.75),
                                                       ("xception", "xception_tiny", 48, 0.75),
                                                       ("efficientnet", "tinynet_e", 64, 1.0),
                                                       ("mesoinception4", None, 48, 0.75)])
def test_every_family_has_a_target_layer_and_maps_in_the_crop_frame(run, name, variant, size, frac):
    crops = _most_fake_crops(run, k=2)
    model = build_learner(LearnerConfig(name=name, variant=variant, input_size=size, crop_frac=frac,
                                        view="highpass", view_sigma=0.8))
    assert target_layer_path(model)
    for method in ("gradcam", "lime"):
        maps = face_maps([model], crops, MapConfig(method=method, lime_samples=20))
        assert maps.shape == crops.shape[:3] and np.isfinite(maps).all()


def test_a_learner_without_a_spatial_layer_is_named_not_mapped(run):
    """Grad-CAM of the spectrum MLP has no layer to read: the report says so (LIME maps it)."""
    crops = _most_fake_crops(run, k=2)
    meso = build_learner(LearnerConfig(name="meso4", input_size=48))
    spec = build_learner(LearnerConfig(name="spectrum", input_size=64))
    assert mappable(meso, "gradcam") and not mappable(spec, "gradcam") and mappable(spec, "lime")
    faces = pd.DataFrame({"frame_idx": [0, 1], "face_idx": [0, 0], "crop_idx": [0, 1]})
    preds = pd.DataFrame({"frame_idx": [0, 1, 0, 1], "face_idx": [0] * 4, "learner": ["meso4"] * 2 + ["spec"] * 2,
                          "prob": [0.7, 0.6, 0.8, 0.4]})
    case = VideoCase(name="v.mp4", path=None, status="ok", message="", p_fake=0.7, threshold=0.5, n_frames=2,
                     faces=faces, crops=crops, frame_preds=preds, models={"meso4": [meso], "spec": [spec]})
    expl = explain(case)
    assert list(expl.maps) == ["meso4"] and expl.no_layer == ["spec"]
    assert "No gradcam map for spec" in heatmaps_section(expl, ExplainConfig())
    lime_cfg = ExplainConfig(maps=MapConfig(method="lime", lime_samples=20))
    assert set(explain(case, lime_cfg).maps) == {"meso4", "spec"}


def _sections(text: str) -> set[str]:
    return set(re.findall(r'<section id="([a-z]+)"', text))


def test_stack_writes_and_logs_the_costliest_oof_videos(run):
    _, _, _, res, uri = run
    assert len(res.explanations) == EXPLAIN_TOP
    names = [p.name for p in res.explanations]
    assert names == sorted(names) and names[0].startswith("01-")
    X = res.video_features[res.video_features["fold"].notna()].reset_index(drop=True)
    p = res.best.cv_stages["clipped"]
    y = X["label"].to_numpy(dtype=float)
    loss = -(y * np.log(np.clip(p, 1e-15, 1)) + (1 - y) * np.log(np.clip(1 - p, 1e-15, 1)))
    worst = X["video_id"].iloc[int(np.argmax(loss))]
    first = res.explanations[0].read_text()
    assert worst in first and f"{p[int(np.argmax(loss))]:.4f}" in first
    assert "the same P(FAKE)" in first  # the outer-fold refit reproduced the OOF prediction
    for path in res.explanations:
        assert _sections(path.read_text()) == set(SECTIONS)
        assert "https://" not in path.read_text() and "src=\"http" not in path.read_text()
    mlflow.set_tracking_uri(uri)
    logged = [a.path for a in mlflow.MlflowClient().list_artifacts(res.sweep_run_id, EXPLAIN_DIR)]
    assert sorted(Path(a).name for a in logged) == names


@pytest.fixture(scope="module")
def predicted(run, clip, tmp_path_factory):
    """predict.py --explain on a test fake, a video without a face and a file that is no video."""
    _, root, _, res, uri = run
    work = tmp_path_factory.mktemp("predict-explain")
    truth = pd.read_csv(root / "test_labels.csv")
    fake = root / truth.loc[truth["label"] == 1, "filename"].iloc[0]
    broken = work / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)
    out_dir = work / "reports"
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        result = predict.main([str(fake), str(clip), str(broken), "--model", res.detector_uri, "--tracking-uri", uri,
                               "--out", str(work / "p.csv"), "--explain", str(out_dir),
                               "--set", "progress=false", "--set", f"cache_dir={work / 'faces'}"])
    return result, out_dir, fake, clip, broken


def test_predict_explain_writes_one_report_per_video_even_without_a_face(predicted):
    result, out_dir, fake, clip, broken = predicted
    t = result.table.set_index("filename")
    assert len(result.reports) == 3 and sorted(result.reports) == sorted(out_dir.glob("*.html"))
    for path in (fake, clip, broken):
        report = out_dir / report_name(path.name, str(path))
        text = report.read_text()
        assert _sections(text) == set(SECTIONS)
        row = t.loc[path.name]
        assert f"{row['p_fake']:.4f}" in text and row["status"] in text
    assert t.loc[clip.name, "status"] == "no_face" and t.loc[broken.name, "status"] != "ok"
    for path in (clip, broken):
        assert "No face was judged in this video" in (out_dir / report_name(path.name, str(path))).read_text()
    judged = (out_dir / report_name(fake.name, str(fake))).read_text()
    assert "No face was judged" not in judged and "most-fake frames" in judged and "meso4 (learner)" in judged


def _browser() -> str:
    found = shutil.which(BROWSER)
    if found:
        return found
    if os.environ.get(SKIP_BROWSER_ENV) == "1":
        pytest.skip(f"{BROWSER} not installed and {SKIP_BROWSER_ENV}=1")
    pytest.fail(f"{BROWSER} is not installed: `apt-get install -y --no-install-recommends chromium` (as .ci/run "
                f"does), or set {SKIP_BROWSER_ENV}=1 to skip this test explicitly")


def _chromium(browser: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           "--disable-dev-shm-usage", f"--window-size={WINDOW[0]},{WINDOW[1]}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S, check=False)


def test_report_renders_in_headless_chromium(predicted, tmp_path):
    browser = _browser()
    result, out_dir, fake, _, _ = predicted
    report = out_dir / report_name(fake.name, str(fake))
    n_images = report.read_text().count("<img ")
    dom = _chromium(browser, "--virtual-time-budget=5000", "--dump-dom", report.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert _sections(dom.stdout) == set(SECTIONS)
    row = result.table.set_index("filename").loc[fake.name]
    assert f"{row['label']} &nbsp; {row['p_fake']:.3f}".replace("&nbsp;", "\xa0") in dom.stdout.replace("&nbsp;", "\xa0")
    loaded = re.search(r'data-images-loaded="(\d+)"', dom.stdout)
    assert loaded and int(loaded.group(1)) == n_images >= 4, "every inlined figure must decode"
    shot = tmp_path / "report.png"
    res = _chromium(browser, f"--screenshot={shot}", report.as_uri())
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    img = cv2.imread(str(shot))
    assert img is not None and img.shape[:2] == (WINDOW[1], WINDOW[0])
    assert float(img.std()) > MIN_PIXEL_STD
    assert float((img.min(axis=2) < 200).mean()) > MIN_INK_SHARE
