"""The PyTorch port of dlib's face-recognition ResNet reproduces dlib's own descriptors.

Faces are rendered by the synthetic corpus's head renderer (dlib's HOG detector finds them), aligned
the way dlib does it (5-point landmarks, get_face_chip), and described by both dlib and the port.
"""

import numpy as np
import pytest
import torch

dlib = pytest.importorskip("dlib")

from base_learners.dlib_resnet import CHIP_SIZE, EMBED_DIM, FEATURE_DIM, PIXEL_MEAN, _Reader, load_dlib_resnet, parse_dlib_net, to_input  # noqa: E402
from features.faces.dlib_models import LANDMARKS_5_FILE, RESNET_FILE, model_file  # noqa: E402

MAX_ABS_DIFF = 1e-4  # the brief's bound; observed ~4e-7 (float32 summation order)
N_FACES = 3
FRAME_SIZE = (256, 192)


@pytest.fixture(scope="module")
def net():
    return load_dlib_resnet()


@pytest.fixture(scope="module")
def recogniser():
    return dlib.face_recognition_model_v1(str(model_file(RESNET_FILE)))


def _render_face(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic frame (RGB uint8) and its true face box."""
    from features.synth import SynthConfig
    from features.synth.identity import sample_identity
    from features.synth.scene import make_scene, render_scene

    cfg = SynthConfig.tiny(n_frames=1, exit_share=0.0, two_person_share=0.0)
    rng = np.random.default_rng(seed)
    scene = make_scene(rng, cfg, sample_identity(rng), FRAME_SIZE, 15)
    frame = np.clip(render_scene(scene)[0], 0, 255).astype(np.uint8)
    return frame, scene.tracks[0].face_box(0)


@pytest.fixture(scope="module")
def faces():
    """(frame, 5-point full_object_detection) per synthetic face: HOG box, or the true box if missed."""
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(model_file(LANDMARKS_5_FILE)))
    out = []
    for seed in range(N_FACES):
        frame, box = _render_face(seed)
        rects = detector(frame, 1)
        rect = rects[0] if len(rects) else dlib.rectangle(*(int(v) for v in box))
        out.append((frame, predictor(frame, rect)))
    return out


def _port(net, chips: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net(to_input(chips)).numpy()


def test_matches_dlib_on_aligned_faces(net, recogniser, faces):
    chips = np.stack([dlib.get_face_chip(frame, shape, size=CHIP_SIZE) for frame, shape in faces])
    ours = _port(net, chips)
    from_chips = np.array([np.array(recogniser.compute_face_descriptor(c)) for c in chips])
    # dlib's own end-to-end call (it cuts the same chip internally, padding 0.25)
    from_frames = np.array([np.array(recogniser.compute_face_descriptor(f, s)) for f, s in faces])
    assert ours.shape == (N_FACES, EMBED_DIM)
    assert np.abs(ours - from_chips).max() < MAX_ABS_DIFF
    assert np.abs(ours - from_frames).max() < MAX_ABS_DIFF


def test_matches_dlib_on_noise_and_in_a_batch(net, recogniser):
    chips = np.random.default_rng(0).integers(0, 256, (2, CHIP_SIZE, CHIP_SIZE, 3), dtype=np.uint8)
    ref = np.array([np.array(recogniser.compute_face_descriptor(c)) for c in chips])
    assert np.abs(_port(net, chips) - ref).max() < MAX_ABS_DIFF
    assert np.abs(_port(net, chips[0]) - ref[:1]).max() < MAX_ABS_DIFF  # a single (h, w, 3) chip


def test_trunk_and_head_shapes(net):
    x = to_input(np.full((2, CHIP_SIZE, CHIP_SIZE, 3), 128, np.uint8))
    with torch.no_grad():
        fmap, feats, emb = net.feature_map(x), net.features(x), net.embed(x)
    assert fmap.shape == (2, FEATURE_DIM, 2, 2)
    assert feats.shape == (2, FEATURE_DIM)
    assert torch.allclose(net.fc(feats), emb)
    assert net.distance_threshold == pytest.approx(0.6)


def test_input_contract():
    chip = np.zeros((CHIP_SIZE, CHIP_SIZE, 3), np.uint8)
    chip[..., 0] = 255
    x = to_input(chip)
    assert x.shape == (1, 3, CHIP_SIZE, CHIP_SIZE) and x.dtype == torch.float32
    assert x[0, 0, 0, 0].item() == pytest.approx((255 - PIXEL_MEAN[0]) / 256)
    assert x[0, 2, 0, 0].item() == pytest.approx(-PIXEL_MEAN[2] / 256)
    with pytest.raises(ValueError):
        to_input(np.zeros((2, 64, 64, 3), np.uint8))


def test_file_layout():
    parsed = parse_dlib_net(model_file(RESNET_FILE))  # raises if any byte is left unread
    kinds = [layer.kind for layer in parsed.layers]
    assert kinds.count("con") == 29 and kinds.count("add_prev") == 14 and kinds[-1] == "fc"
    assert parsed.chip_shape == (CHIP_SIZE, CHIP_SIZE)
    assert np.allclose(parsed.pixel_mean, PIXEL_MEAN, atol=1e-3)
    assert parsed.loss["margin"] == pytest.approx(0.04)


def test_varint_and_float_encoding():
    # 0.04 as dlib writes it: mantissa 0xa3d70a (3 bytes), exponent -28 (0x80 sign bit, 1 byte)
    r = _Reader(bytes([0x03, 0x0A, 0xD7, 0xA3, 0x81, 0x1C, 0x82, 0x34, 0x12]))
    assert r.read_float() == pytest.approx(0.04, rel=1e-7)
    assert r.read_int() == -0x1234


def test_truncated_file_fails_loudly(tmp_path):
    bad = tmp_path / "cut.dat"
    bad.write_bytes(model_file(RESNET_FILE).read_bytes()[:100_000])
    with pytest.raises(ValueError, match="truncated"):
        load_dlib_resnet(bad)
