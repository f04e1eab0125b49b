"""benchmarks.transfer: predict.py's output joined to a labelled corpus, every video accounted for."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from benchmarks import transfer


def dfdc_part(folder, n_originals: int = 12):
    """A DFDC-layout part: originals o<i> and one fake f<i> of each (empty files: nothing decodes them)."""
    folder.mkdir()
    meta = {}
    for i in range(n_originals):
        meta[f"o{i}.mp4"] = {"label": "REAL", "split": "train"}
        meta[f"f{i}.mp4"] = {"label": "FAKE", "split": "train", "original": f"o{i}.mp4"}
    for name in meta:
        (folder / name).write_bytes(b"")
    (folder / "metadata.json").write_text(json.dumps(meta))
    return folder


def test_transfer_joins_labels_and_counts_unscored(tmp_path, capsys):
    part = dfdc_part(tmp_path / "part")
    names = sorted(p.name for p in part.glob("*.mp4"))
    p = np.array([0.8 if n.startswith("f") else 0.3 for n in names])
    status = ["ok"] * len(names)
    p[0], status[0] = np.nan, "no_face"  # a video without a score is counted, not dropped silently
    pd.DataFrame({"path": [str(part / n) for n in names], "p_fake": p, "status": status}).to_csv(tmp_path / "pred.csv")
    rated = transfer.main(["--pred", str(tmp_path / "pred.csv"), "--data", str(part), "--replicates", "50"])
    out = capsys.readouterr().out
    assert "24 labelled videos (12 fake) in 12 groups" in out and "'no_face': 1" in out and "23 with a score" in out
    assert rated.loc[0, "n"] == 23 and rated.loc[0, "auc"] == 1.0


def test_transfer_refuses_predictions_that_miss_videos(tmp_path):
    part = dfdc_part(tmp_path / "part")
    pd.DataFrame({"path": [str(part / "o0.mp4")], "p_fake": [0.5], "status": ["ok"]}).to_csv(tmp_path / "pred.csv")
    with pytest.raises(SystemExit) as err:
        transfer.main(["--pred", str(tmp_path / "pred.csv"), "--data", str(part)])
    assert err.value.code == 2
