"""benchmarks.swap_diff: where a face set's fakes differ from their originals, every fake accounted for."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks import swap_diff
from features.corpus.face_csv import CSV_NAME

SIDE = 64
HEADER = "videoname,label,original\n"


def _face_set(root: Path, swap: slice, n_originals: int = 3, extra_lines: str = "") -> Path:
    """Originals of noise; each fake is its original with a brighter square at `swap` (both axes)."""
    rng = np.random.default_rng(0)
    (root / "faces").mkdir(parents=True)
    lines = [HEADER]
    for i in range(n_originals):
        real = rng.integers(60, 120, (SIDE, SIDE, 3)).astype(np.uint8)
        fake = real.copy()
        fake[swap, swap] += 80
        cv2.imwrite(str(root / "faces" / f"r{i}.png"), real)
        cv2.imwrite(str(root / "faces" / f"f{i}.png"), fake)
        lines += [f"r{i}.mp4,REAL,\n", f"f{i}.mp4,FAKE,r{i}.mp4\n"]
    (root / CSV_NAME).write_text("".join(lines) + extra_lines)
    return root


def test_a_swap_in_the_middle_shows_in_the_centre_not_the_border(tmp_path):
    root = _face_set(tmp_path / "set", slice(SIDE // 4, 3 * SIDE // 4))
    result = swap_diff.main(["--data", str(root), "--out", str(tmp_path / "map.png")])
    assert result.counts[swap_diff.USED] == 3
    assert result.centre > 60 and result.border < 20
    assert cv2.imread(str(tmp_path / "map.png"), cv2.IMREAD_GRAYSCALE).shape == (SIDE, SIDE)


def test_a_swap_reaching_the_edges_shows_in_the_border_too(tmp_path):
    result = swap_diff.main(["--data", str(_face_set(tmp_path, slice(0, SIDE)))])
    assert result.border > 60


def test_every_drawn_fake_is_counted_with_why_it_was_not_used(tmp_path):
    root = _face_set(tmp_path, slice(16, 48), extra_lines="f9.mp4,FAKE,gone.mp4\nfx.mp4,FAKE,r0.mp4\n")
    cv2.imwrite(str(root / "faces" / "f9.png"), np.zeros((SIDE, SIDE, 3), np.uint8))
    (root / "faces" / "fx.png").write_bytes(b"not an image")
    cv2.imwrite(str(root / "faces" / "r2.png"), np.zeros((SIDE // 2, SIDE // 2, 3), np.uint8))
    result = swap_diff.swap_difference(swap_diff.read_face_csv([root], on_missing="status"), n_pairs=100)
    assert result.counts == {swap_diff.USED: 2, swap_diff.NO_IMAGE: 0, swap_diff.NO_ORIGINAL: 1,
                             swap_diff.UNREADABLE: 1, swap_diff.SIZE_DIFFERS: 1}


def test_a_folder_that_is_no_face_set_is_one_message_and_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        swap_diff.main(["--data", str(tmp_path)])
    assert exit_.value.code == 2
    assert str(tmp_path) in capsys.readouterr().err


def test_a_video_given_as_a_folder_of_frames_is_read_by_its_first_frame(tmp_path):
    root = _face_set(tmp_path, slice(16, 48), n_originals=1)
    (root / "faces" / "f0").mkdir()
    (root / "faces" / "f0.png").rename(root / "faces" / "f0" / "000.png")
    cv2.imwrite(str(root / "faces" / "f0" / "001.png"), np.zeros((SIDE, SIDE, 3), np.uint8))
    result = swap_diff.main(["--data", str(root)])
    assert result.counts[swap_diff.USED] == 1 and result.centre > 60


def test_no_pairs_asked_is_a_usage_error(tmp_path):
    with pytest.raises(SystemExit) as exit_:
        swap_diff.main(["--data", str(tmp_path), "--pairs", "0"])
    assert exit_.value.code == 2
