"""Whole-video scoring benchmark: seconds per video per step and videos per minute of `predict.py`.

    python -m benchmarks.predict                          # the generated 1080p corpus, newest detector
    python -m benchmarks.predict --data DIR --model models:/fakestack/3 --workers 1 2

Scores every video of the corpus with the packaged detector (as `pipelines/predict.py` does, from
a cold face cache each time) once per face-process count, and prints per video: the face stage
(open, decode, detect, crop), level 0 (every learner's fold models), aggregation and level 1, their
sum, and videos per minute over the scored part (loading the model once is reported apart; Python's
own start, importing torch and MLflow, is not in any figure). The DFDC budget is 8 s per video.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

import pandas as pd

from benchmarks.faces import bench_corpus
from features.corpus.readers import VIDEO_EXTENSIONS
from pipelines.predict import PredictConfig, run

SECONDS_PER_MINUTE = 60.0
BUDGET_S = 8.0  # DFDC: about 8 s per video for everything on one P100


def bench(paths: list[str], cfg: PredictConfig, workers: list[int]) -> pd.DataFrame:
    rows = []
    for w in workers:
        with tempfile.TemporaryDirectory(prefix="fakestack-bench-predict-") as tmp:
            res = run(paths, replace(cfg, workers=w, cache_dir=str(Path(tmp) / "faces"),
                                     out=str(Path(tmp) / "out.csv"), progress=False))
        n = len(res.table)
        t = res.timings
        scored = t["faces_s"] + t["level0_s"] + t["level1_s"]
        rows.append({"face_processes": w, "videos": n, "ok": int((res.table["status"] == "ok").sum()),
                     "load_s": t["load_s"], "faces_s_per_video": t["faces_s"] / n,
                     "level0_s_per_video": t["level0_s"] / n, "level1_s_per_video": t["level1_s"] / n,
                     "s_per_video": scored / n, "videos_per_min": SECONDS_PER_MINUTE * n / scored,
                     "within_budget": scored / n <= BUDGET_S})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="a folder of videos (default: the generated 1080p corpus)")
    p.add_argument("--model", help="detector URI (default: the newest stack.py run's)")
    p.add_argument("--tracking-uri")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="face processes to try")
    args = p.parse_args(argv)
    root = bench_corpus(args.data)
    paths = sorted(str(f) for f in root.iterdir() if f.suffix.lower() in VIDEO_EXTENSIONS)
    if not paths:
        raise SystemExit(f"bench.predict: error: no videos in {root}")
    table = bench(paths, PredictConfig(model=args.model, tracking_uri=args.tracking_uri), args.workers)
    print(f"{len(paths)} videos of {root}")
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3g}"))
    return table


if __name__ == "__main__":
    main()
