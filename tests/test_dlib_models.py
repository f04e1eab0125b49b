"""dlib's face detectors, landmarks and chip alignment behind plain-numpy wrappers, on rendered faces."""

import numpy as np
import pytest

dlib = pytest.importorskip("dlib")

from features.faces import dlib_models as dm  # noqa: E402

FRAME_SIZE = (256, 192)  # (w, h): the face is ~60 px high, HOG's range, below MMOD's ~80 px window
MMOD_ZOOM = 2  # so MMOD gets a face crop enlarged into its range without a (4x dearer) upsample pass
MMOD_CROP = 128  # side of the crop around the face, before zooming
MIN_IOU = 0.4  # detectors' boxes are tighter/looser than the renderer's face box, not elsewhere
LANDMARK_SLACK = 0.25  # landmarks may overhang the detector box by this fraction of its side (chin)


def _render_face(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic frame (RGB uint8) and its true face box x1, y1, x2, y2."""
    from features.synth import SynthConfig
    from features.synth.identity import sample_identity
    from features.synth.scene import make_scene, render_scene

    cfg = SynthConfig.tiny(n_frames=1, exit_share=0.0, two_person_share=0.0)
    rng = np.random.default_rng(seed)
    scene = make_scene(rng, cfg, sample_identity(rng), FRAME_SIZE, 15)
    return np.clip(render_scene(scene)[0], 0, 255).astype(np.uint8), scene.tracks[0].face_box(0)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])
    return w * h / (area(a) + area(b) - w * h)


def _check_detections(boxes: np.ndarray, scores: np.ndarray, shape: tuple[int, ...]) -> None:
    assert boxes.dtype == np.float32 and scores.dtype == np.float32
    assert boxes.ndim == 2 and boxes.shape[1] == 4 and scores.shape == (len(boxes),)
    h, w = shape[:2]
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()


@pytest.fixture(scope="module")
def face():
    return _render_face(0)


@pytest.fixture(scope="module")
def hog():
    return dm.hog_detector()  # building it deserialises the detector: ~0.5 s, so once per module


@pytest.fixture(scope="module")
def mmod():
    return dm.mmod_detector()


@pytest.fixture(scope="module")
def hog_boxes(face, hog):
    return hog(face[0])[0]


def test_model_files_are_packaged():
    for name in (dm.RESNET_FILE, dm.LANDMARKS_5_FILE, dm.LANDMARKS_68_FILE, dm.MMOD_FILE):
        assert dm.model_file(name).is_file()
    with pytest.raises(FileNotFoundError, match="available"):
        dm.model_file("no_such_model.dat")


def test_hog_finds_the_rendered_face(face, hog):
    frame, truth = face
    boxes, scores = hog(frame)
    _check_detections(boxes, scores, frame.shape)
    assert len(boxes) == 1 and scores[0] > dm.HOG_THRESHOLD
    assert _iou(boxes[0], truth) > MIN_IOU


def test_mmod_finds_an_enlarged_face(face, mmod):
    frame, truth = face
    cx, cy = int((truth[0] + truth[2]) / 2), int((truth[1] + truth[3]) / 2)
    x0, y0 = max(cx - MMOD_CROP // 2, 0), max(cy - MMOD_CROP // 2, 0)
    crop = frame[y0:y0 + MMOD_CROP, x0:x0 + MMOD_CROP]
    big = np.ascontiguousarray(crop.repeat(MMOD_ZOOM, 0).repeat(MMOD_ZOOM, 1))
    boxes, scores = mmod(big)
    _check_detections(boxes, scores, big.shape)
    assert len(boxes) >= 1
    zoomed_truth = (truth - np.array([x0, y0, x0, y0])) * MMOD_ZOOM
    assert _iou(boxes[np.argmax(scores)], zoomed_truth) > MIN_IOU


@pytest.mark.parametrize("value", [0, 128])
def test_blank_images_give_no_boxes(value, hog, mmod):
    blank = np.full((120, 160, 3), value, np.uint8)
    for detect in (hog, mmod):
        boxes, scores = detect(blank)
        assert boxes.shape == (0, 4) and scores.shape == (0,)
        assert boxes.dtype == np.float32 and scores.dtype == np.float32


@pytest.mark.parametrize("points", [5, 68])
def test_landmarks_lie_on_the_face(face, hog_boxes, points):
    frame, _ = face
    pts = dm.landmarks(frame, hog_boxes, points=points)
    assert pts.shape == (len(hog_boxes), points, 2) and pts.dtype == np.float32
    for box, p in zip(hog_boxes, pts):
        slack = LANDMARK_SLACK * (box[2:] - box[:2])
        assert (p >= box[:2] - slack).all() and (p <= box[2:] + slack).all()


def test_landmarks_of_no_boxes(face):
    pts = dm.landmarks(face[0], np.zeros((0, 4), np.float32), points=5)
    assert pts.shape == (0, 5, 2) and pts.dtype == np.float32
    with pytest.raises(ValueError):
        dm.landmarks(face[0], np.zeros((0, 4), np.float32), points=7)


def test_align_chip_matches_dlib(face, hog_boxes):
    frame, _ = face
    pts5 = dm.landmarks(frame, hog_boxes, points=5)[0]
    chip = dm.align_chip(frame, pts5)
    assert chip.shape == (dm.CHIP_SIZE, dm.CHIP_SIZE, 3) and chip.dtype == np.uint8
    shape = dm.shape_predictor(5)(frame, dm.box_to_rect(hog_boxes[0]))
    np.testing.assert_array_equal(chip, dlib.get_face_chip(frame, shape, size=dm.CHIP_SIZE))
    small = dm.align_chip(frame, dm.landmarks(frame, hog_boxes, points=68)[0], size=64)
    assert small.shape == (64, 64, 3) and small.dtype == np.uint8
    with pytest.raises(ValueError):
        dm.align_chip(frame, pts5[:3])


def test_rejects_non_uint8_rgb(hog):
    with pytest.raises(ValueError, match="uint8"):
        hog(np.zeros((32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        dm.landmarks(np.zeros((32, 32), np.uint8), np.zeros((0, 4)), points=5)


def test_box_rect_round_trip():
    box = np.array([10, 20, 50, 70], np.float32)
    rect = dm.box_to_rect(box)
    assert (rect.left(), rect.top(), rect.right(), rect.bottom()) == (10, 20, 49, 69)
    np.testing.assert_array_equal(dm._rects_to_boxes([rect], 100, 100)[0], box)
