"""Shared test settings."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models: one thread is as fast, and avoids thrashing when the 2 CPU cores are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


CLIP_FRAMES, CLIP_WIDTH, CLIP_HEIGHT, CLIP_FPS = 8, 64, 48, 10.0


@pytest.fixture(scope="session")
def clip(tmp_path_factory):
    """One small real mp4, written once: layout tests copy it under every name of their trees."""
    import cv2
    import numpy as np

    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), CLIP_FPS, (CLIP_WIDTH, CLIP_HEIGHT))
    rng = np.random.default_rng(0)
    for _ in range(CLIP_FRAMES):
        writer.write(rng.integers(0, 255, (CLIP_HEIGHT, CLIP_WIDTH, 3), dtype=np.uint8))
    writer.release()
    assert path.stat().st_size > 0
    return path


@pytest.fixture(scope="session")
def synth_faces(tmp_path_factory):
    """A tiny generated corpus (6 originals, no test split) and its faces: the raw material of the
    face-set tests, which re-lay its crops out in a face set's form. (corpus root, videos table,
    FaceResult, metadata)."""
    import json

    from features.corpus.layouts import read_videos
    from features.faces.config import FaceConfig
    from features.faces.extract import extract_faces
    from features.synth import SynthConfig, generate_corpus

    tmp = tmp_path_factory.mktemp("synth_faces")
    corpus = tmp / "corpus"
    generate_corpus(corpus, SynthConfig.tiny(n_originals=6, n_test_originals=0), progress=False)
    videos = read_videos([corpus])
    faces = extract_faces(videos, FaceConfig(n_frames=3, crop_size=64, workers=1, det_prob=0.7), tmp / "cache",
                          progress=False)
    return corpus, videos, faces, json.loads((corpus / "metadata.json").read_text())
