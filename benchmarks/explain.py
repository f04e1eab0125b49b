"""Honest maps: does each learner's heat map sit on the swapped region of the embedded corpus's fakes?

    python -m benchmarks.explain                       # the newest stack.py run's detector
    python -m benchmarks.explain --model runs:/RUN/detector --methods gradcam lime --lime-faces 2

For every test fake of the embedded corpus the detector trained on, the swap's blending mask is
re-rendered from the generator's own per-video parameters (the corpus stores only face boxes and
artifact strengths, so the generator's plan is replayed: each group's seed gives its scene and each
fake's FakeSpec, checked against `fake_params.parquet`; the mask is recovered exactly by running
the swap once over black and once over white frames: out_white - out_black = 1 - mask). The fakes
are scored by the packaged detector, each detected face's mask is cropped exactly as the face
stage cropped the face (features.faces.detect.crop_face), and the swapped region is mask > 0.5.
Faces whose crop holds less than MIN_REGION_SHARE of it (the other person of a two-person video, a
missed face) are left out.

Per learner and map method: `mass_in` = mean share of heat-map mass inside the swapped region,
`region_share` = mean share of the crop the region covers, and `view_share` = its share of the
central part of the crop the learner sees (crop_frac). Maps are zero outside that view, so a map
spread evenly over what the learner sees scores `view_share`: that is the chance level. `lift` =
mass_in / view_share (`lift_vs_crop` against the whole crop, which flatters any learner with
crop_frac < 1 when the swap is central), `faces_above` = share of faces whose mass_in beats their
own view_share. A map that does not beat view_share is no better than chance at pointing at the
swap: the table says `fails`, it is not hidden.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from base_learners.explain import MAP_METHODS, MapConfig, face_maps
from base_learners.inputs import FRAME, model_input_kind
from benchmarks.learners import show_table
from features.common import from_dict
from features.corpus.readers import read_test_labels
from features.faces.detect import crop_face
from features.faces.extract import load_crops
from features.synth.config import SynthConfig
from features.synth.corpus import CONFIG_FILE, plan
from features.synth.fake import ARTIFACTS, sample_fake, swap_frames
from features.synth.scene import make_scene
from pipelines.config import WORK_DIR, exit_on_user_error
from pipelines.predict import MODEL_ERRORS, latest_detector_uri, load_detector
from pipelines.scoring.inputs import collect_paths
from pipelines.tracking import MLFLOW_DIR, STACK_EXPERIMENT, setup_tracking

REGION_ALPHA = 0.5  # the swapped region: blending mask above this
MIN_REGION_SHARE = 0.05  # faces whose crop holds less of the region are not the swapped face
DEFAULT_LIME_FACES = 2  # LIME is ~100x Grad-CAM's cost: this many faces per fake video
DIGITS = 3
OUT_DIR = WORK_DIR / "bench_explain"
OUTPUT_TAG = "fakestack.output_dir"


class BenchInputError(ValueError):
    """No embedded corpus to measure on (a real corpus has no swap masks)."""


def corpus_root(detector) -> Path:
    """The corpus the detector's oof run read (its videos table's root), which must be embedded."""
    oof_run = detector.spec.info.get("oof_run_id")
    if not oof_run or oof_run == "none":
        raise BenchInputError("the detector names no oof run; pass --corpus DIR")
    out = MlflowClient().get_run(oof_run).data.tags.get(OUTPUT_TAG)
    videos = pd.read_parquet(Path(out) / "videos.parquet")
    return Path(str(videos["root"].dropna().iloc[0]))


def fake_masks(root: Path, fakes: list[str]) -> dict[str, np.ndarray]:
    """video_id -> (n_frames, H, W) float32 blending mask, re-rendered (see the module docstring)."""
    info = json.loads((root / CONFIG_FILE).read_text())
    cfg = from_dict(SynthConfig, info["config"], where=str(root / CONFIG_FILE))
    params = pd.read_parquet(root / "fake_params.parquet").set_index("video_id")
    wanted, masks = set(fakes), {}
    for job in plan(cfg):
        if not wanted & set(job.fakes):
            continue
        rng = np.random.default_rng(job.seed)  # the draws of features.synth.corpus.render_group, in order
        portrait = rng.random() < cfg.portrait_share
        sizes = cfg.portrait_sizes if portrait else cfg.landscape_sizes
        w, h = (int(x) for x in sizes[int(rng.integers(len(sizes)))])
        fps = int(cfg.fps_choices[int(rng.integers(len(cfg.fps_choices)))])
        scene = make_scene(rng, cfg, job.ident, (w, h), fps)
        for name, donor in zip(job.fakes, job.donors):
            spec = sample_fake(rng, donor, cfg)
            stored = params.loc[name, list(ARTIFACTS)].to_numpy(dtype=float)
            if not np.allclose(stored, [spec.strengths()[a] for a in ARTIFACTS]):
                raise BenchInputError(f"{name}: replaying the generator does not give its stored artifact strengths; "
                                      "the generator changed since this corpus was written")
            if name in wanted:
                black = swap_frames(scene, [np.zeros((h, w, 3), np.float32)] * scene.n_frames, spec)
                white = swap_frames(scene, [np.ones((h, w, 3), np.float32)] * scene.n_frames, spec)
                masks[name] = np.stack([1.0 - (b1[..., 0] - b0[..., 0]) for b0, b1 in zip(black, white)])
    missing = wanted - set(masks)
    if missing:
        raise BenchInputError(f"no generator plan for {sorted(missing)[:3]}: not this corpus's fakes")
    return masks


def face_regions(detector, root: Path, fakes: list[str], masks: dict, cache: Path) -> tuple[np.ndarray, np.ndarray, list]:
    """Crops (N, C, C, 3), their swapped regions (N, C, C) bool and (video, frame) per face."""
    rows = collect_paths([str(root / f) for f in fakes])
    detector.score(rows, cache_dir=cache)
    batch = detector.spec.faces
    faces, crops_dir = detector.last_batch.faces.faces, detector.last_batch.faces.crops_dir
    crops, regions, keys = [], [], []
    for vid_key, g in faces.groupby("video_id", sort=False):
        name = Path(vid_key.split(":", 1)[1]).name
        video_crops = load_crops(crops_dir, vid_key)
        for r in g.itertuples(index=False):
            alpha = crop_face(masks[name][int(r.frame_idx)], (r.x0, r.y0, r.x1, r.y1), batch["margin"],
                              batch["crop_size"])
            region = alpha > REGION_ALPHA
            if region.mean() >= MIN_REGION_SHARE:
                crops.append(video_crops[int(r.crop_idx)])
                regions.append(region)
                keys.append((name, int(r.frame_idx)))
    return np.stack(crops), np.stack(regions), keys


def central(region: np.ndarray, frac: float) -> np.ndarray:
    side = region.shape[-1]
    keep = max(1, round(side * frac))
    start = (side - keep) // 2
    return region[..., start:start + keep, start:start + keep]


def measure(detector, crops, regions, keys, methods: list[str], lime_faces: int, lime_samples: int) -> pd.DataFrame:
    rows = []
    lime_pick = pd.DataFrame(keys, columns=["video", "frame"]).groupby("video").head(lime_faces).index.to_numpy()
    for learner in detector.spec.learners:
        models = detector.models(learner)
        if model_input_kind(models[0]) != FRAME:  # pairs and tracks: no map of a single face
            continue
        frac = float(getattr(models[0], "crop_frac", 1.0))
        for method in methods:
            pick = lime_pick if method == "lime" else np.arange(len(crops))
            maps = face_maps(models, crops[pick], MapConfig(method=method, lime_samples=lime_samples))
            reg = regions[pick]
            total = maps.sum(axis=(1, 2))
            ok = total > 0
            mass = (maps * reg).sum(axis=(1, 2))[ok] / total[ok]
            share = reg.mean(axis=(1, 2))[ok]
            view = central(reg, frac).mean(axis=(1, 2))[ok]
            rows.append({"learner": learner, "method": method, "faces": int(ok.sum()), "empty_maps": int((~ok).sum()),
                         "mass_in": float(mass.mean()), "region_share": float(share.mean()),
                         "view_share": float(view.mean()), "lift": float(mass.mean() / view.mean()),
                         "lift_vs_crop": float(mass.mean() / share.mean()),
                         "faces_above": float((mass > view).mean()),
                         "verdict": "passes" if mass.mean() > view.mean() else "fails"})
    return pd.DataFrame(rows)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="detector URI (default: the newest stack.py run's)")
    ap.add_argument("--corpus", type=Path, help="the embedded corpus folder (default: the detector's oof run's)")
    ap.add_argument("--methods", nargs="+", default=["gradcam", "lime"], choices=MAP_METHODS.names())
    ap.add_argument("--lime-faces", type=int, default=DEFAULT_LIME_FACES, help="LIME faces per fake video")
    ap.add_argument("--lime-samples", type=int, default=MapConfig.lime_samples)
    ap.add_argument("--max-videos", type=int, help="only the first N test fakes")
    ap.add_argument("--tracking-uri")
    return ap.parse_args(argv)


def main(argv=None) -> pd.DataFrame:
    args = parse_args(argv)
    with exit_on_user_error("bench.explain", MODEL_ERRORS + (BenchInputError,)):
        setup_tracking(STACK_EXPERIMENT, args.tracking_uri, MLFLOW_DIR)
        uri = args.model or latest_detector_uri()
        detector, _ = load_detector(uri, "cpu")
        root = args.corpus or corpus_root(detector)
        if not (root / CONFIG_FILE).is_file():
            raise BenchInputError(f"{root}: not an embedded corpus (no {CONFIG_FILE}); only it knows its swap masks")
        labels = read_test_labels(root)
        fakes = sorted(labels.loc[labels["label"] == 1, "video_id"].astype(str))[:args.max_videos]
        if not fakes:
            raise BenchInputError(f"{root}: no test fakes")
        masks = fake_masks(root, fakes)
        with tempfile.TemporaryDirectory(prefix="fakestack-bench-explain-") as tmp:
            crops, regions, keys = face_regions(detector, root, fakes, masks, Path(tmp))
            table = measure(detector, crops, regions, keys, args.methods, args.lime_faces, args.lime_samples)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    table.to_csv(OUT_DIR / "explain.csv", index=False)
    print(f"model {uri}; corpus {root}; {len(fakes)} test fakes, {len(crops)} faces holding the swapped region")
    show_table(table, None, DIGITS)
    print(f"written: {OUT_DIR / 'explain.csv'}")
    return table


if __name__ == "__main__":
    main()
