"""benchmarks.gpu on CPU, as CI can run it: every stage on a tiny corpus, without PyAV.

Why: the benchmark is meant for a GPU machine that is sent the project without PyAV and is lent
for minutes; whatever would break there (an `import av`, a stage that fails, a record not written)
must break here first.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import gpu

ROOT = Path(__file__).resolve().parent.parent
STAGES = ["corpus", "oof", "stack", "hd", "score_w1", "score_w2", "decode"]
TINY = ["device=cpu", "face_processes=[1,2]", "sample_s=0.5", "synth.n_originals=4", "synth.n_test_originals=1",
        "synth.fakes_per_original=[1,1]", "synth.donor_pool_extra=2", "synth.n_frames=6", "synth.fps_choices=[15]",
        "synth.landscape_sizes=[[256,192]]", "synth.portrait_sizes=[[192,256]]", "synth.workers=1",
        "hd.n_originals=1", "hd.width=192", "hd.height=108", "hd.upscale=2", "hd.seconds=1", "hd.fps=10",
        "hd.workers=1"]
TINY_OOF = ["select=[meso4,mesoinception4]", "learners.meso4.input_size=32", "learners.mesoinception4.input_size=32",
            "folds.k=2", "faces.n_frames=3", "faces.crop_size=48", "faces.workers=1", "faces.batch_size=16",
            "train.batch_size=16", "train.num_workers=0", "train.num_threads=1", "train.amp=false", "unit_workers=1"]
TINY_STACK = ["n_jobs=1", "inner_k=2", "nested=false", "sweep.metas=[logreg]", "sweep.calibrations=[none]",
              "sweep.leave_one_out=false", "plots=false", "explain_top=0", "registry_name="]


@pytest.mark.slow  # a fresh interpreter importing torch and MLflow: seconds
def test_pipelines_import_without_pyav():
    """A fresh interpreter with `av` unimportable still imports every pipeline and the benchmark."""
    code = ("import sys; sys.modules['av'] = None\n"
            "import pipelines.oof, pipelines.stack, pipelines.predict, features.synth.hd, benchmarks.gpu")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.slow
def test_benchmark_runs_every_stage_on_cpu_without_pyav(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # as on the GPU machine: any `import av` fails
    argv = [a for s in [*TINY, f"workdir={tmp_path}"] for a in ("--set", s)]
    argv += [a for s in TINY_OOF for a in ("--oof-set", s)] + [a for s in TINY_STACK for a in ("--stack-set", s)]
    records = gpu.main(argv)
    assert [r["stage"] for r in records] == STAGES and all(r["ok"] for r in records)
    lines = [json.loads(line) for line in (tmp_path / "gpu_bench.jsonl").read_text().splitlines()]
    units = [r for r in lines if r["event"] == "unit"]
    assert {(u["learner"], u["fold"]) for u in units} == {(l, k) for l in ("meso4", "mesoinception4") for k in (0, 1)}
    assert all(u["train_seconds"] > 0 for u in units)
    by = {r["stage"]: r for r in records}
    assert by["oof"]["units"] == 4 and set(by["oof"]["timings"]) >= {"faces", "units"}
    assert by["hd"]["videos"] >= 2 and by["score_w1"]["videos"] == by["hd"]["videos"]
    for w in (1, 2):
        assert by[f"score_w{w}"]["videos_per_s"] > 0 and by[f"score_w{w}"]["face_processes"] == w
    assert 0 < by["decode"]["decode_share_of_w1_scoring"] < 1
    assert any(r["event"] == "sample" for r in lines)
