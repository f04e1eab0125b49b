"""Landmarks in the face cache (video and face-image paths), dlib's detectors in the face stage, and
the dlib_resnet learner with its landmark alignment (issue 27), on generated faces."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

dlib = pytest.importorskip("dlib")

from unit_data import SIZE, make_crops, make_tables, write_cache  # noqa: E402

from base_learners.dlib_resnet import CHIP_SIZE, PIXEL_MEAN, PIXEL_SCALE, load_dlib_resnet  # noqa: E402
from base_learners.explain import MapConfig, face_maps  # noqa: E402
from base_learners.oof import run_oof  # noqa: E402
from base_learners.registry import LearnerConfig, build_learner, learner_key  # noqa: E402
from base_learners.train import TrainConfig, _to_input, fit, predict_logits  # noqa: E402
from base_learners.views import AlignedCrops, source_landmarks, view_crops  # noqa: E402
from features.common import ConfigError, config_hash  # noqa: E402
from features.contract import FACE_KEY, frames_table  # noqa: E402
from features.faces import cache  # noqa: E402
from features.faces import dlib_models as dm  # noqa: E402
from features.faces.config import FaceConfig  # noqa: E402
from features.faces.detect import DLIB_DET_PROB, DlibDetector, crop_face, crop_landmarks, detect_faces, dlib_upsample, to_crop_pixels  # noqa: E402
from features.faces.extract import cache_fields, extract_faces  # noqa: E402
from features.faces.images import import_faces  # noqa: E402
from features.faces.source import CropSource  # noqa: E402
from pipelines.oof import check_learners  # noqa: E402

FRAME_SIZE = (256, 192)  # (w, h): faces of ~60 px, in HOG's range with one upsample
LANDMARK_TOLERANCE = 3.0  # px at CROP: the same points predicted on the frame and on its crop
CROP = 96
FIVE = np.array([[60, 40], [52, 40], [30, 40], [38, 40], [45, 58]], np.float32)  # dlib's 5-point order,
# in a 96 px crop: right eye outer/inner, left eye outer/inner, under the nose


def _render_face(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One generated frame (RGB uint8) and its true face box."""
    from features.synth import SynthConfig
    from features.synth.identity import sample_identity
    from features.synth.scene import make_scene, render_scene

    cfg = SynthConfig.tiny(n_frames=1, exit_share=0.0, two_person_share=0.0)
    rng = np.random.default_rng(seed)
    scene = make_scene(rng, cfg, sample_identity(rng), FRAME_SIZE, 15)
    return np.clip(render_scene(scene)[0], 0, 255).astype(np.uint8), scene.tracks[0].face_box(0)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Two generated videos (the smallest corpus the face stage reads)."""
    from features.corpus.layouts import read_videos
    from features.synth import SynthConfig, generate_corpus

    root = tmp_path_factory.mktemp("lm_corpus") / "corpus"
    generate_corpus(root, SynthConfig.tiny(n_originals=1, n_test_originals=0), progress=False)
    return read_videos([root]).head(2).reset_index(drop=True)


# ---- defaults leave every cache key as it was -----------------------------------------------------

# The face cache folder of FaceConfig() before detector and landmarks existed (computed with the
# code of the commit before them; the profiles' folders were checked alike): extraction results
# stay reusable and the demo profile's results bit-identical.
KEY_BEFORE = "fc57ec79350d18cf"


def test_default_detector_and_no_landmarks_keep_the_cache_key():
    fields = cache_fields(FaceConfig())
    assert "detector" not in fields and "landmarks" not in fields
    assert config_hash(fields) == KEY_BEFORE
    assert cache_fields(FaceConfig(landmarks=5))["landmarks"] == 5
    assert cache_fields(FaceConfig(detector="dlib_hog"))["detector"] == "dlib_hog"
    with pytest.raises(ValueError, match="landmarks"):
        FaceConfig(landmarks=7)
    key = learner_key(LearnerConfig("meso4"))
    assert "align" not in key and learner_key(LearnerConfig("meso4", align=True))["align"] is True


# ---- dlib detectors behind the face stage's interface ---------------------------------------------

def test_dlib_upsample_follows_min_face_size():
    assert dlib_upsample(80, 2) == 0 and dlib_upsample(200, 2) == 0
    assert dlib_upsample(40, 2) == 1 and dlib_upsample(30, 2) == 2 and dlib_upsample(12, 2) == 2
    assert dlib_upsample(12, 1) == 1


def test_dlib_boxes_are_kept_and_ordered_by_margin():
    """Every box the dlib detector returns survives det_prob (1.0 each), strongest margin first."""
    boxes = np.array([[0, 0, 10, 10], [20, 20, 40, 40], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.1, 2.0, 0.5], np.float32)
    detector = DlibDetector("dlib_hog", lambda upsample: (lambda rgb: (boxes, scores)), 40)
    cfg = FaceConfig(det_prob=0.99, max_faces=2, detect_scale=1.0, detector="dlib_hog")
    det = detect_faces(detector, [np.zeros((64, 64, 3), np.uint8)], cfg)[0]
    np.testing.assert_array_equal(det.boxes, boxes[[1, 2]])
    np.testing.assert_array_equal(det.probs, [DLIB_DET_PROB] * 2)


def test_hog_extraction_with_landmarks_caches_points_on_the_faces(corpus, tmp_path):
    cfg = FaceConfig(n_frames=2, crop_size=CROP, workers=1, detector="dlib_hog", landmarks=5, detect_scale=1.0)
    result = extract_faces(corpus, cfg, tmp_path, progress=False)
    assert (result.status["status"] == "ok").any()
    assert (result.faces["det_prob"] == DLIB_DET_PROB).all()
    points = cache.landmarks_for_rows(result.faces, result.crops_dir)
    assert points.shape == (len(result.faces), 5, 2) and points.dtype == np.float32
    assert (points > 0).all() and (points < CROP).all()  # on the face, inside its crop
    eyes_y, nose_y = points[:, :4, 1].mean(axis=1), points[:, 4, 1]
    assert (eyes_y < nose_y).all()  # upright faces: eyes above the nose
    again = extract_faces(corpus, cfg, tmp_path, progress=False)  # cached: the same points back
    np.testing.assert_array_equal(cache.landmarks_for_rows(again.faces, again.crops_dir), points)
    plain = extract_faces(corpus, replace(cfg, landmarks=0), tmp_path, progress=False)
    assert plain.crops_dir != result.crops_dir
    with pytest.raises(FileNotFoundError, match="faces.landmarks"):
        cache.landmarks_for_rows(plain.faces, plain.crops_dir)


def test_unknown_detector_lists_the_valid_ones(corpus, tmp_path):
    with pytest.raises(KeyError, match="dlib_hog, dlib_mmod, mtcnn"):
        extract_faces(corpus, FaceConfig(detector="yolo", workers=1), tmp_path, progress=False)


# ---- landmarks in crop pixels ---------------------------------------------------------------------

def test_crop_pixels_of_a_native_size_crop_are_the_frame_pixels_shifted():
    box = (40, 30, 80, 70)  # a 40 px box, margin 0: the crop is the box itself
    pts = np.array([[40, 30], [79, 69], [60.5, 50]])
    np.testing.assert_allclose(to_crop_pixels(pts, box, 0.0, 40, 100, 100), pts - (40, 30))
    np.testing.assert_allclose(to_crop_pixels(pts[:1], box, 0.0, 80, 100, 100), [[0.5, 0.5]])  # 2x: centre of 2x2


def test_landmarks_of_frame_and_of_its_imported_crop_agree(tmp_path):
    """The video path (predictor on the frame, mapped into the crop) and the face-image path (the
    predictor on the crop, its box assumed from the margin) find the same points."""
    frame, truth = _render_face(0)
    box = dm.hog_detector()(frame)[0][:1]
    cfg = FaceConfig(crop_size=CROP, landmarks=5, workers=1)
    from_frame = crop_landmarks(frame, box, cfg)[0]
    image = tmp_path / "faces" / "a.png"
    image.parent.mkdir()
    crop = crop_face(frame, box[0], cfg.margin, 2 * CROP)
    cv2.imwrite(str(image), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    videos = pd.DataFrame({"video_id": ["a"], "root": [str(image.parent)], "path": ["a.png"]})
    result = import_faces(videos, cfg, tmp_path / "cache", progress=False)
    from_image = cache.landmarks_for_rows(result.faces, result.crops_dir)[0]
    assert np.abs(from_image - from_frame).max() < LANDMARK_TOLERANCE


# ---- alignment and the dlib_resnet learner ----------------------------------------------------------

@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    """unit_data's face table and crops (96 px), written to a face cache with 5 landmarks a crop."""
    faces, videos, folds = make_tables()
    frames = frames_table(faces, videos, folds)
    crops = make_crops(frames)
    crops = np.stack([cv2.resize(c, (CROP, CROP)) for c in crops])
    crops_dir = tmp_path_factory.mktemp("lm_cache") / "faces"
    crops_dir.mkdir()
    cache.write_config(crops_dir, {"crop_format": "npy", "crop_size": CROP, "landmarks": 5})  # first: kept
    write_cache(crops_dir, frames, crops)
    jitter = np.random.default_rng(0).normal(0, 1, (len(frames), 5, 2)).astype(np.float32)
    points = FIVE + jitter
    for video_id, rows in frames.groupby("video_id", sort=False).indices.items():
        order = rows[np.argsort(frames["crop_idx"].to_numpy()[rows])]
        np.save(cache.landmarks_path(crops_dir, video_id), points[order])
    return frames, crops, points, crops_dir


def test_aligned_crops_read_landmarks_from_the_cache(cached):
    frames, crops, points, crops_dir = cached
    source = CropSource.from_table(frames, crops_dir)
    np.testing.assert_array_equal(source_landmarks(source[5:9]), points[5:9])
    np.testing.assert_array_equal(cache.landmarks_for_rows(frames.iloc[5:9], crops_dir), points[5:9])
    model = build_learner(LearnerConfig("meso4", input_size=SIZE, align=True))
    aligned = view_crops(model, source)[3:5]
    assert isinstance(aligned, AlignedCrops) and aligned.shape == (2, SIZE, SIZE, 3)
    np.testing.assert_array_equal(aligned[1], dm.align_chip(crops[4], points[4], SIZE))
    assert view_crops(build_learner(LearnerConfig("meso4", input_size=SIZE)), source) is source
    with pytest.raises(ValueError, match="CropSource"):
        view_crops(model, crops)


def test_dlib_normalisation_is_dlibs_input_layer():
    """mean/std on [0, 1] pixels, as train.py applies them, equal dlib's (pixel - mean) / 256."""
    model = build_learner(LearnerConfig("dlib_resnet", input_size=CHIP_SIZE))
    chips = np.random.default_rng(0).integers(0, 256, (2, CHIP_SIZE, CHIP_SIZE, 3), dtype=np.uint8)
    ours = _to_input(torch.from_numpy(chips), model, torch.device("cpu"), channels_last=False)
    dlibs = (torch.from_numpy(chips).float() - torch.tensor(PIXEL_MEAN)) / PIXEL_SCALE
    torch.testing.assert_close(ours, dlibs.permute(0, 3, 1, 2), atol=1e-6, rtol=0)


def test_pretrained_trunk_and_frozen_variant():
    torch.manual_seed(0)
    frozen = build_learner(LearnerConfig("dlib_resnet", variant="frozen", input_size=CHIP_SIZE, pretrained=True))
    x = torch.randn(2, 3, CHIP_SIZE, CHIP_SIZE)
    with torch.no_grad():
        torch.testing.assert_close(frozen.embed(x), load_dlib_resnet().features(x))
    frozen.train()
    frozen(x).sum().backward()
    trained = {n for n, p in frozen.named_parameters() if p.grad is not None}
    assert trained == {"out.weight", "out.bias"}
    with pytest.raises(ValueError, match="150"):
        build_learner(LearnerConfig("dlib_resnet", input_size=64))
    # without pretrained weights a frozen trunk loads a fold checkpoint (the packaged detector and the
    # explanations build it so) but refuses to train, in fit and in oof.py's check before any work
    loader = build_learner(LearnerConfig("dlib_resnet", variant="frozen", input_size=CHIP_SIZE))
    loader.load_state_dict(frozen.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(loader.eval()(x), frozen.eval()(x))
    crops = np.zeros((4, CHIP_SIZE, CHIP_SIZE, 3), np.uint8)
    maps = face_maps([loader], crops[:2], MapConfig())  # Grad-CAM reads the frozen trunk in eval mode
    assert maps.shape[0] == 2 and np.isfinite(maps).all()
    with pytest.raises(ValueError, match="needs pretrained: true"):
        fit(loader, crops, np.array([0, 1, 0, 1]), np.arange(4), TrainConfig(epochs=1, device="cpu"), progress=False)
    with pytest.raises(ConfigError, match="learners.dlib_frozen: .*needs pretrained: true"):
        check_learners({"dlib_frozen": LearnerConfig("dlib_resnet", variant="frozen", input_size=CHIP_SIZE)})
    with pytest.raises(ValueError, match="finetune, frozen"):
        build_learner(LearnerConfig("dlib_resnet", variant="big", input_size=CHIP_SIZE))


def test_tiny_oof_run_with_aligned_dlib_resnet(cached, tmp_path):
    """Both variants train and predict every row through run_oof, reading aligned crops from the cache."""
    frames, _, _, crops_dir = cached
    source = CropSource.from_table(frames, crops_dir)
    learners = {v: LearnerConfig("dlib_resnet", variant=v, input_size=CHIP_SIZE, pretrained=True, align=True)
                for v in ("frozen", "finetune")}
    train = TrainConfig(epochs=1, batch_size=16, device="cpu", num_threads=1, lr=1e-4)
    result = run_oof(frames, source, learners, dict.fromkeys(learners, train), tmp_path / "units", "lm",
                     progress=False)
    preds = result.frame_preds
    assert set(preds["learner"]) == set(learners)
    want = set(frames[FACE_KEY].itertuples(index=False, name=None))
    for _, rows in preds.groupby("learner"):
        assert np.isfinite(rows["logit"]).all()
        assert set(rows[FACE_KEY].itertuples(index=False, name=None)) == want


def test_fit_and_predict_on_aligned_crops_directly(cached):
    """AlignedCrops passed as they are (no cache): fit and predict_logits leave them as given."""
    frames, crops, points, _ = cached
    torch.manual_seed(0)
    model = build_learner(LearnerConfig("dlib_resnet", variant="frozen", input_size=CHIP_SIZE, pretrained=True,
                                        align=True))
    aligned = AlignedCrops(crops[:16], points[:16], CHIP_SIZE)
    labels = frames["label"].fillna(0).to_numpy(np.float32)[:16]
    fit(model, aligned, labels, frames["group"].to_numpy()[:16], TrainConfig(epochs=1, batch_size=8, device="cpu"),
        progress=False)
    assert np.isfinite(predict_logits(model, aligned, TrainConfig(device="cpu"))).all()


def test_self_blended_learner_with_align_trains_on_aligned_blends(cached):
    """`target: self_blended` with `align`: blends are made on the cached crop, then aligned by that
    real crop's landmarks (each blend item j by real row j % n), in training and inner validation."""
    from base_learners.sbi import BlendedCrops, SBIConfig, default_regions
    from base_learners.train import _blend_loader, _blend_view

    frames, crops, points, crops_dir = cached
    source = CropSource.from_table(frames, crops_dir)
    model = build_learner(LearnerConfig("meso4", input_size=SIZE, align=True))
    items = BlendedCrops(source[:6], default_regions(SBIConfig()), SBIConfig(), seed=0, copies=1)
    view = _blend_view(model, items)
    assert len(view) == 12 and view.shape[1:] == (SIZE, SIZE, 3)
    for j in (1, 8):  # a real crop, then the blend of real row 2
        np.testing.assert_array_equal(view[j], dm.align_chip(np.asarray(items[j]), points[j % 6], SIZE))
    assert not np.array_equal(view[8], view[2])  # the blend differs from its real crop
    assert _blend_view(build_learner(LearnerConfig("meso4", input_size=SIZE)), items) is items
    cfg = TrainConfig(epochs=1, batch_size=8, device="cpu", target="self_blended", inner_val_frac=0.3)
    loader = _blend_loader(source[:12], default_regions(SBIConfig())[:12], model, cfg)
    loader.dataset.epoch = 1
    assert items.epoch == 0 and loader.dataset.blended.epoch == 1  # the epoch reaches the blends
    labels = frames["label"].fillna(0).to_numpy(np.float32)
    result = fit(model, source, labels, frames["group"].to_numpy(), cfg, progress=False)
    assert result.history[0]["inner_val_loss"] is not None
    assert np.isfinite(predict_logits(model, source, TrainConfig(device="cpu"))).all()
