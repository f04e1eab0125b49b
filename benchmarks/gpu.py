"""The GPU path, timed in one run: `python -m benchmarks.gpu [--set key=value] [--oof-set ...] [--stack-set ...]`.

    python -m benchmarks.gpu                                     # one GPU: the embedded corpus, 1080p scoring
    python -m benchmarks.gpu --set device=cpu --set face_processes=[1,2] --oof-set select=[meso4]

Stages, each timed and appended to a JSON-lines file as it ends (`log`, default
<workdir>/gpu_bench.jsonl), so a run cut short still tells where its time went:

1. corpus: the embedded corpus (features.synth, written with OpenCV: no PyAV anywhere here);
2. oof: `oof.py --profile full` on it, one epoch, the five families from scratch (`pretrained:
   false`), `faces.decoder: opencv`; its own stage times, and one record per learner x fold unit
   as its unit folder is finished (train seconds, faces/s);
3. stack: `stack.py --profile full` on that run (it packages the detector);
4. hd: generated 1080p videos (features.synth.hd, `writer: opencv`);
5. score_w<N>: `pipelines.predict.run` on them with N face processes, from a cold face cache:
   seconds per video by step (faces, level 0, level 1) and videos per second;
6. decode: the same videos only decoded (the detector's decoder and frame count, one process):
   decoding's share of the one-process scoring time, the bound it puts on throughput.

A sampler thread adds, every `sample_s`, the GPU's busy share and memory from `nvidia-smi` (when
present) and this process's `torch.cuda` memory; each stage's record carries the mean busy share
over the stage and `torch.cuda.max_memory_allocated` (this process: training and level 0; face
processes have their own). Each oof run gets a fresh folder under <workdir>/runs (the corpora are
reused), so nothing is timed from a cache.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator

import torch

from features.common import ConfigError, from_dict, to_dict
from features.corpus.readers import VIDEO_EXTENSIONS
from features.faces.decode import read_frames
from features.synth import SynthConfig
from features.synth.hd import HDConfig, generate_hd_corpus
from pipelines import oof, predict, stack
from pipelines.config import WORK_DIR, apply_override, build_config, exit_on_user_error, setup_logging

log = logging.getLogger(__name__)
PROFILE = "full"
TIMM_FAMILIES = ("resnext", "xception", "efficientnet")
SMI_QUERY = ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"]


@dataclass
class GPUBenchConfig:
    """What the benchmark runs; `--set` overrides these, `--oof-set`/`--stack-set` the profiles."""

    device: str = "cuda"  # faces, training and scoring
    epochs: int = 1  # every learner (the profile's train_overrides included)
    synth: SynthConfig = field(default_factory=SynthConfig)  # the embedded corpus (BENCH_DEFAULTS: all cores)
    hd: HDConfig = field(default_factory=HDConfig)  # the 1080p videos (BENCH_DEFAULTS: OpenCV, all cores)
    face_processes: list[int] = field(default_factory=lambda: [1, 4, 8])
    workdir: str | None = None  # None: WORK_DIR/bench_gpu
    log: str | None = None  # None: <workdir>/gpu_bench.jsonl
    sample_s: float = 2.0


# applied before --set, so they hold whatever else of a section is overridden: a GPU machine has no
# PyAV (OpenCV writes the videos) and many cores (the generators use them all)
BENCH_DEFAULTS = {"synth": {"workers": os.cpu_count() or 1}, "hd": {"writer": "opencv", "workers": os.cpu_count() or 1}}


class Recorder:
    """Appends one JSON object a line to `path` (written through at once: a killed run keeps every
    line before it) and logs a short line of it; `records` holds this run's."""

    def __init__(self, path: Path):
        self.path, self.t0, self.lock, self.records = path, time.perf_counter(), threading.Lock(), []
        path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, event: str, **data) -> dict:
        rec = {"t": round(time.perf_counter() - self.t0, 3), "event": event, **data}
        with self.lock, self.path.open("a") as fh:
            fh.write(json.dumps(rec, default=str) + "\n")
            self.records.append(rec)
        if event != "sample":
            log.info("%7.1f s  %s %s", rec["t"], event, {k: v for k, v in data.items() if k != "table"})
        return rec


def gpu_sample() -> dict:
    """GPU busy % and memory now: nvidia-smi where present, and this process's torch.cuda memory."""
    out: dict = {}
    if shutil.which(SMI_QUERY[0]):
        try:
            text = subprocess.run(SMI_QUERY, capture_output=True, text=True, timeout=10, check=True).stdout
            rows = [[float(x) for x in line.split(",")] for line in text.strip().splitlines()]
            out.update(gpu_busy_pct=[r[0] for r in rows], gpu_mem_mib=[r[1] for r in rows])
        except (OSError, subprocess.SubprocessError, ValueError) as err:  # a wedged or odd driver: no sample
            out["smi_error"] = str(err)
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["torch_mem_mib"] = torch.cuda.memory_allocated() / 2**20
    return out


class Sampler(threading.Thread):
    """Every `every` s: a GPU sample, and a record for each unit folder finished since (its
    metrics.json is written last), so per-unit times survive a run that is cut short."""

    def __init__(self, record: Recorder, every: float):
        super().__init__(daemon=True)
        self.record, self.every, self.stop, self.busy = record, every, threading.Event(), []
        self.units_dir: Path | None = None
        self.seen: set[Path] = set()

    def run(self) -> None:
        while not self.stop.wait(self.every):
            self.tick()

    def tick(self) -> None:
        sample = gpu_sample()
        if "gpu_busy_pct" in sample:
            self.busy.append(sum(sample["gpu_busy_pct"]) / len(sample["gpu_busy_pct"]))
        self.record("sample", **sample)
        for path in sorted(self.units_dir.glob("*/*/metrics.json")) if self.units_dir else []:
            if path not in self.seen:
                self.seen.add(path)
                info = json.loads(path.read_text())
                self.record("unit", learner=info["learner"], fold=info["fold"], train_seconds=info["train_seconds"],
                            epochs=len(info["history"]), **info.get("throughput", {}))


@contextmanager
def stage(name: str, record: Recorder, sampler: Sampler, cuda: bool) -> Iterator[dict]:
    """Times the block; its record (written on the way out, also when it fails) takes what the block
    puts in the yielded dict, the mean GPU busy share and this process's peak torch.cuda memory."""
    record("start", stage=name)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    sampler.busy.clear()
    extra: dict = {}
    t0, ok = time.perf_counter(), False
    try:
        yield extra
        ok = True
    finally:
        if cuda:
            extra["torch_max_mem_mib"] = torch.cuda.max_memory_allocated() / 2**20
        if sampler.busy:
            extra["gpu_busy_mean_pct"] = sum(sampler.busy) / len(sampler.busy)
        record("stage", stage=name, seconds=round(time.perf_counter() - t0, 3), ok=ok, **extra)


def oof_overrides(cfg: GPUBenchConfig, extra: list[str]) -> list[str]:
    """The full profile made to run anywhere: the bench's device, OpenCV decoding, `epochs` for every
    learner, the timm families from scratch; `extra` last, so it wins."""
    profile = build_config(oof.OOFConfig, oof.PIPELINE, PROFILE)
    sets = [f"faces.device={cfg.device}", "faces.decoder=opencv", f"train.device={cfg.device}",
            f"train.epochs={cfg.epochs}", "progress=false"]
    sets += [f"train_overrides.{name}.epochs={cfg.epochs}" for name in profile.train_overrides]
    sets += [f"learners.{name}.pretrained=false" for name in TIMM_FAMILIES if name in profile.learners]
    return sets + extra


def decode_seconds(paths: list[str], faces: dict) -> float:
    """Seconds to decode `paths` as the detector's face stage does (its decoder and sample), one process."""
    t0 = time.perf_counter()
    for path in paths:
        read_frames(path, faces["n_frames"], threads=faces.get("decode_threads", 1), decoder=faces["decoder"],
                    clip_len=faces.get("clip_len", 1))
    return time.perf_counter() - t0


def run(cfg: GPUBenchConfig, oof_sets: list[str] = (), stack_sets: list[str] = ()) -> list[dict]:
    """All stages (module docstring); returns the stage records."""
    bench = (Path(cfg.workdir) if cfg.workdir else WORK_DIR / "bench_gpu").resolve()
    record = Recorder(Path(cfg.log) if cfg.log else bench / "gpu_bench.jsonl")
    cuda = cfg.device.startswith("cuda") and torch.cuda.is_available()
    sampler = Sampler(record, cfg.sample_s)
    sampler.start()
    run_dir = bench / "runs" / time.strftime("%Y%m%d-%H%M%S")
    uri = f"sqlite:///{(bench / 'mlruns' / 'mlflow.db').as_posix()}"
    (bench / "mlruns").mkdir(parents=True, exist_ok=True)
    record("config", device=cfg.device, cuda=cuda, gpu=torch.cuda.get_device_name() if cuda else None,
           run_dir=str(run_dir), oof_set=list(oof_sets), stack_set=list(stack_sets))
    try:
        ocfg = build_config(oof.OOFConfig, oof.PIPELINE, PROFILE, oof_overrides(cfg, list(oof_sets)))
        with stage("corpus", record, sampler, cuda) as out:
            roots = oof.corpus_roots(replace(ocfg, synth=cfg.synth, data=[]), bench)
            out["videos"] = len(json.loads((Path(roots[0]) / "metadata.json").read_text()))
        ocfg = replace(ocfg, data=ocfg.data or roots, workdir=str(run_dir), tracking_uri=uri)
        sampler.units_dir = run_dir / "oof" / "units"
        with stage("oof", record, sampler, cuda) as out:
            result = oof.run(ocfg, profile=PROFILE)
            out.update(timings=result.timings, units=len(result.units),
                       throughput=result.throughput.to_dict("records"))
        sampler.tick()  # the last units' records before the stage's
        scfg = build_config(stack.StackConfig, "stack", PROFILE, list(stack_sets))
        with stage("stack", record, sampler, cuda) as out:
            res = stack.run(replace(scfg, oof_run_id=result.run_id, tracking_uri=uri,
                                    output_dir=str(run_dir / "stack")), progress=False)
            out.update(configurations=len(res.results), best=res.best.spec.name,
                       cv_log_loss=res.best.metrics["cv_log_loss"], detector=res.detector_uri)
        if not res.detector_uri:
            raise ConfigError(f"stack.py packaged no detector to score with: {res.detector_note}")
        with stage("hd", record, sampler, cuda) as out:
            hd = generate_hd_corpus(bench / "hd", cfg.hd, progress=False)
            paths = sorted(str(p) for p in hd.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS)
            out.update(videos=len(paths), size=[cfg.hd.width, cfg.hd.height], frames=cfg.hd.seconds * cfg.hd.fps)
        scored = {}
        for w in cfg.face_processes:
            with stage(f"score_w{w}", record, sampler, cuda) as out, \
                    tempfile.TemporaryDirectory(prefix="fakestack-bench-gpu-") as tmp:
                pres = predict.run(paths, predict.PredictConfig(
                    model=res.detector_uri, tracking_uri=uri, workers=w, device=cfg.device,
                    cache_dir=str(Path(tmp) / "faces"), out=str(Path(tmp) / "out.csv"), progress=False))
                t = pres.timings
                busy = t["faces_s"] + t["level0_s"] + t["level1_s"]
                out.update(face_processes=w, videos=len(paths), load_s=t["load_s"],
                           **{f"{k[:-2]}_s_per_video": v / len(paths) for k, v in t.items() if k != "load_s"},
                           s_per_video=busy / len(paths), videos_per_s=len(paths) / busy,
                           videos_ok=int((pres.table["status"] == "ok").sum()))
                scored[w] = dict(out)
        with stage("decode", record, sampler, cuda) as out:
            faces = to_dict(ocfg.faces)  # what the detector packaged: the training face settings
            per_video = decode_seconds(paths, faces) / len(paths)
            out.update(decoder=faces["decoder"], n_frames=faces["n_frames"], decode_s_per_video=per_video,
                       decode_bound_videos_per_s_per_process=1 / per_video)
            if 1 in scored:  # one process: decode, detect, crop and level 0 in series
                out["decode_share_of_w1_scoring"] = per_video / scored[1]["s_per_video"]
    finally:
        sampler.stop.set()
        sampler.join()
        record("end")
    return [r for r in record.records if r["event"] == "stage"]


def summary(records: list[dict]) -> str:
    """The stage table printed at the end (the JSON lines hold everything)."""
    lines = ["", f"{'stage':<12} {'seconds':>9}  notes"]
    for r in records:
        note = ""
        if r["stage"].startswith("score_w") and r["ok"]:
            note = (f"{r['videos_per_s']:.2f} videos/s, {r['s_per_video']:.2f} s/video "
                    f"(faces {r['faces_s_per_video']:.2f}, level 0 {r['level0_s_per_video']:.2f})")
        elif r["stage"] == "decode" and r["ok"]:
            share = r.get("decode_share_of_w1_scoring", float("nan"))
            note = f"{r['decode_s_per_video']:.2f} s/video decoding alone; {share:.0%} of 1-process scoring"
        elif r["stage"] == "oof" and r["ok"]:
            note = ", ".join(f"{k} {v:.0f}" for k, v in r["timings"].items())
        if "gpu_busy_mean_pct" in r:
            note += f"; GPU busy {r['gpu_busy_mean_pct']:.0f} %"
        if "torch_max_mem_mib" in r:
            note += f"; peak {r['torch_max_mem_mib']:.0f} MiB"
        lines.append(f"{r['stage']:<12} {r['seconds']:9.1f}  {note}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> tuple[GPUBenchConfig, list[str], list[str]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="a benchmark setting, e.g. --set device=cpu --set hd.seconds=2 (repeatable)")
    p.add_argument("--oof-set", action="append", default=[], metavar="KEY=VALUE", help="an oof.py override")
    p.add_argument("--stack-set", action="append", default=[], metavar="KEY=VALUE", help="a stack.py override")
    args = p.parse_args(argv)
    data: dict = json.loads(json.dumps(BENCH_DEFAULTS))  # a deep copy
    try:
        for o in args.overrides:
            apply_override(data, o)
        cfg = from_dict(GPUBenchConfig, data, where="benchmarks.gpu")
    except (ConfigError, ValueError, TypeError) as err:
        p.error(f"config: {err}")
    return cfg, args.oof_set, args.stack_set


def main(argv: list[str] | None = None) -> list[dict]:
    cfg, oof_sets, stack_sets = parse_args(argv)
    setup_logging()
    with exit_on_user_error("benchmarks.gpu", (stack.StackInputError,)):
        records = run(cfg, oof_sets, stack_sets)
    print(summary(records))
    return records


if __name__ == "__main__":
    main()
