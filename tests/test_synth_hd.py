"""The real-resolution benchmark corpus (features.synth.hd), at a size a test can afford: the
embedded corpus's scenes upscaled, noised and H.264-encoded, with boxes scaled to match."""

from __future__ import annotations

import json

import av
import pandas as pd

from features.synth.hd import HDConfig, generate_hd_corpus

TINY = HDConfig(n_originals=1, width=192, height=108, upscale=2, seconds=1, fps=10, bitrate_kbps=300, workers=1)


def test_hd_corpus_is_h264_at_full_size_with_scaled_truth(tmp_path):
    root = generate_hd_corpus(tmp_path / "hd", TINY, progress=False)
    meta = json.loads((root / "metadata.json").read_text())
    small = json.loads((root / ".rendered" / "metadata.json").read_text())
    assert meta == small and len(meta) >= 2  # an original and its fakes, labels as generated
    for name in meta:
        with av.open(str(root / name)) as c:
            s = c.streams.video[0]
            assert s.codec_context.name == "h264" and s.frames == TINY.seconds * TINY.fps
            assert {(s.width, s.height)} <= {(192, 108), (108, 192)}
    truth = pd.read_parquet(root / "ground_truth.parquet")
    small_truth = pd.read_parquet(root / ".rendered" / "ground_truth.parquet")
    ratio = (truth["x1"] - truth["x0"]) / (small_truth["x1"] - small_truth["x0"])
    assert ratio.round(6).eq(TINY.upscale).all()
    again = generate_hd_corpus(tmp_path / "hd", TINY, progress=False)  # finished: reused, not redone
    assert again == root and (root / name).stat().st_mtime_ns == (again / name).stat().st_mtime_ns
