"""Writing the embedded corpus: plan, render each original with its fakes, encode, write metadata.

Layout (DFDC): `*.mp4` and `metadata.json` with `{"x.mp4": {"label", "split", "original"}}` for train
videos and `{"split": "test"}` only for test videos, whose labels go to `test_labels.csv`
(filename,label; 1 FAKE). `ground_truth.parquet` (per frame face boxes) and `fake_params.parquet`
(donor and artifact strengths per fake) are for measurement and tests only: no stage may read them.

The unit of work is a *group*: one original and its fakes, rendered from one scene. Each group is
planned up front from the seed (names, identities, donors, a group seed), so the output does not
depend on worker count or order. A finished group leaves a part file; a rerun skips it. The metadata
is written last, so a corpus folder with `metadata.json` is complete.
"""

from __future__ import annotations

import json
import shutil
import string
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from features.common import atomic_write_json, atomic_write_parquet, atomic_write_text, atomic_write_with, config_hash, result_dict, to_dict
from features.synth.config import FACE_SWAP, SynthConfig
from features.synth.fake import sample_fake, swap_frames
from features.synth.identity import Identity, sample_identity
from features.synth.scene import Scene, camera, make_scene, render_scene
from features.synth.soundtrack import NO_KIND, add_soundtrack, draw_kind, group_sound, sound_row

GENERATOR_VERSION = 3  # bump when rendering changes, so cached corpora are rebuilt
NAME_LETTERS = 10
CONFIG_FILE = "synth_config.json"
PARTS_DIR = ".synth_parts"
IN_FRAME_MIN_VISIBLE = 0.8  # a face counts as in the frame when this share of its box is visible
SOUND_TABLE = "soundtracks.parquet"  # with sound on: video_id, fake_kind ("" for originals), has_audio
OUTPUTS = ("metadata.json", "test_labels.csv", "ground_truth.parquet", "fake_params.parquet", SOUND_TABLE)


@dataclass(frozen=True)
class GroupJob:
    index: int
    split: str
    original: str
    fakes: tuple[str, ...]
    ident: Identity
    donors: tuple[Identity, ...]
    seed: int


def _names(rng: np.random.Generator, n: int) -> list[str]:
    """Random-looking unique video file names: they reveal neither label nor group."""
    letters = np.array(list(string.ascii_lowercase))
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < n:
        name = "".join(rng.choice(letters, NAME_LETTERS)) + ".mp4"
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def plan(cfg: SynthConfig) -> list[GroupJob]:
    """Every group's names, identities, donors and seed, drawn from the master seed."""
    rng = np.random.default_rng(cfg.seed)
    splits = ["train"] * cfg.n_originals + ["test"] * cfg.n_test_originals
    idents = [sample_identity(rng) for _ in splits]
    extras = {s: [sample_identity(rng) for _ in range(cfg.donor_pool_extra)] for s in ("train", "test")}
    counts = rng.integers(cfg.fakes_per_original[0], cfg.fakes_per_original[1] + 1, len(splits))
    names = _names(rng, len(splits) + int(counts.sum()))
    seeds = rng.integers(2**62, size=len(splits))
    jobs, k = [], len(splits)
    for g, split in enumerate(splits):
        pool = [idents[j] for j, s in enumerate(splits) if s == split and j != g] + extras[split]
        if int(counts[g]) > 0 and not pool:
            raise ValueError(f"no donor identities for the {split} split: raise donor_pool_extra")
        pick = rng.choice(len(pool), int(counts[g]), replace=int(counts[g]) > len(pool)) if pool else []
        jobs.append(GroupJob(g, split, names[g], tuple(names[k:k + counts[g]]), idents[g],
                             tuple(pool[int(i)] for i in pick), int(seeds[g])))
        k += int(counts[g])
    return jobs


def write_video(path: Path, frames_bgr: list[np.ndarray], fps: int) -> None:
    """Encode with OpenCV's 'mp4v' (available everywhere opencv-python-headless is), atomically."""
    def write(tmp: Path) -> None:
        h, w = frames_bgr[0].shape[:2]
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        if not writer.isOpened():
            raise RuntimeError(f"OpenCV cannot open an mp4v writer for {path}")
        for f in frames_bgr:
            writer.write(f)
        writer.release()

    atomic_write_with(path, write)


def ground_truth(scene: Scene, video_id: str, swapped: bool) -> pd.DataFrame:
    rows = []
    for p, track in enumerate(scene.tracks):
        for i in range(scene.n_frames):
            x0, y0, x1, y1 = track.face_box(i)
            area = max((x1 - x0) * (y1 - y0), 1e-6)
            vis = max(0.0, min(x1, scene.width) - max(x0, 0)) * max(0.0, min(y1, scene.height) - max(y0, 0)) / area
            rows.append((video_id, i, p, x0, y0, x1, y1, vis, vis >= IN_FRAME_MIN_VISIBLE, swapped and p == 0))
    cols = ["video_id", "frame_idx", "person", "x0", "y0", "x1", "y1", "visible_frac", "in_frame", "swapped"]
    return pd.DataFrame(rows, columns=cols)


def render_group(job: GroupJob, cfg: SynthConfig, root: Path) -> tuple[pd.DataFrame, list[dict], list[dict]]:
    """Render and write one original and its fakes; return ground truth, fake parameters and (with
    sound on) one soundtracks row per video."""
    rng = np.random.default_rng(job.seed)
    portrait = rng.random() < cfg.portrait_share
    sizes = cfg.portrait_sizes if portrait else cfg.landscape_sizes
    w, h = (int(x) for x in sizes[int(rng.integers(len(sizes)))])
    fps = int(cfg.fps_choices[int(rng.integers(len(cfg.fps_choices)))])
    scene = make_scene(rng, cfg, job.ident, (w, h), fps)
    gs = group_sound(job.seed, job.ident, scene, cfg.sound) if cfg.sound.enabled else None
    frames = render_scene(scene)
    write_video(root / job.original, camera(scene, frames), fps)
    truth = [ground_truth(scene, job.original, False)]
    params, sounds = [], []
    if gs is not None:
        sounds.append(sound_row(job.original, NO_KIND, add_soundtrack(root / job.original, root / job.original,
                                                                       gs, NO_KIND, None)))
    for name, donor in zip(job.fakes, job.donors):
        spec = sample_fake(rng, donor, cfg)
        kind = draw_kind(gs) if gs is not None else FACE_SWAP
        if kind == FACE_SWAP:
            write_video(root / name, camera(scene, swap_frames(scene, frames, spec)), fps)
        truth.append(ground_truth(scene, name, kind == FACE_SWAP))
        strengths = spec.strengths() if kind == FACE_SWAP else dict.fromkeys(spec.strengths(), 0.0)
        params.append({"video_id": name, "original": job.original, "split": job.split, **strengths})
        if gs is not None:  # other kinds keep the original's pixels: its video packets, another sound
            src = root / (name if kind == FACE_SWAP else job.original)
            params[-1]["fake_kind"] = kind
            sounds.append(sound_row(name, kind, add_soundtrack(src, root / name, gs, kind, donor)))
    return pd.concat(truth, ignore_index=True), params, sounds


def _part_paths(root: Path, key: str, index: int) -> tuple[Path, Path]:
    stem = root / PARTS_DIR / f"{key}-{index:05d}"
    return stem.with_suffix(".gt.parquet"), stem.with_suffix(".fakes.json")


def _sound_part(root: Path, key: str, index: int) -> Path:
    return (root / PARTS_DIR / f"{key}-{index:05d}").with_suffix(".sound.json")


def _run_group(job: GroupJob, cfg: SynthConfig, root: Path, key: str) -> int:
    truth, params, sounds = render_group(job, cfg, root)
    gt_path, fakes_path = _part_paths(root, key, job.index)
    atomic_write_json(params, fakes_path)
    if cfg.sound.enabled:
        atomic_write_json(sounds, _sound_part(root, key, job.index))
    atomic_write_parquet(truth, gt_path)  # written last: marks the group finished
    return 1 + len(job.fakes)


def corpus_key(cfg: SynthConfig) -> str:
    """Hash of everything that changes the corpus (not `workers`)."""
    settings = result_dict(cfg)
    return config_hash({"version": GENERATOR_VERSION, **settings})


def _config_record(cfg: SynthConfig) -> dict:
    """The config as synth_config.json records it: added fields only when set (a silent corpus's
    record is what it was before sound existed)."""
    record = to_dict(cfg)
    return {k: v for k, v in record.items() if k != "sound" or cfg.sound.enabled}


def _check_root(root: Path, key: str, overwrite: bool) -> bool:
    """True when `root` already holds this exact corpus; clears or refuses a different one."""
    cfg_path = root / CONFIG_FILE
    if not cfg_path.exists():
        if (root / "metadata.json").exists():
            raise FileExistsError(f"{root} holds a metadata.json not written by the generator; choose an empty folder")
        return False
    try:
        old = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{cfg_path} is not valid JSON ({err}); delete the folder to regenerate") from None
    if old.get("hash") == key:
        return (root / "metadata.json").exists()
    if not overwrite:
        raise FileExistsError(
            f"{root} holds a corpus from another config (hash {old.get('hash')}, this one {key}); "
            "pass overwrite=True (--overwrite) or choose another folder")
    for name in list(old.get("videos", [])) + list(OUTPUTS):
        (root / name).unlink(missing_ok=True)
    shutil.rmtree(root / PARTS_DIR, ignore_errors=True)
    return False


def _assemble(root: Path, jobs: list[GroupJob], key: str, sound: bool = False) -> None:
    """Merge the part files and write the tables, then metadata.json last. With sound, train
    entries of metadata.json carry `fake_kind` (the stages never read it; test entries stay bare,
    as their labels do) and soundtracks.parquet lists every video's kind and whether it has sound."""
    truth, params, sounds = [], [], []
    for job in jobs:
        gt_path, fakes_path = _part_paths(root, key, job.index)
        truth.append(pd.read_parquet(gt_path))
        params.extend(json.loads(fakes_path.read_text()))
        if sound:
            sounds.extend(json.loads(_sound_part(root, key, job.index).read_text()))
    atomic_write_parquet(pd.concat(truth, ignore_index=True), root / "ground_truth.parquet")
    atomic_write_parquet(pd.DataFrame(params), root / "fake_params.parquet")
    kinds = {r["video_id"]: r["fake_kind"] for r in sounds}
    if sound:
        atomic_write_parquet(pd.DataFrame(sounds), root / SOUND_TABLE)
    meta, labels = {}, []
    for job in jobs:
        for name, fake in [(job.original, False)] + [(f, True) for f in job.fakes]:
            if job.split == "test":
                meta[name] = {"split": "test"}
                labels.append((name, int(fake)))
            else:
                meta[name] = {"label": "FAKE" if fake else "REAL", "split": "train",
                              "original": job.original if fake else None}
                if fake and name in kinds:
                    meta[name]["fake_kind"] = kinds[name]
    csv = "filename,label\n" + "".join(f"{n},{y}\n" for n, y in sorted(labels))
    atomic_write_text(csv, root / "test_labels.csv")
    atomic_write_json(meta, root / "metadata.json")


def generate_corpus(root: Path | str, cfg: SynthConfig | None = None, progress: bool = True,
                    overwrite: bool = False) -> Path:
    """Write (or finish, or reuse) the synthetic DFDC-layout corpus in `root`; returns `root`."""
    cfg = cfg or SynthConfig()
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    key = corpus_key(cfg)
    if _check_root(root, key, overwrite):
        return root
    jobs = plan(cfg)
    videos = [n for j in jobs for n in (j.original, *j.fakes)]
    atomic_write_json({"hash": key, "version": GENERATOR_VERSION, "config": _config_record(cfg), "videos": videos},
                      root / CONFIG_FILE)
    todo = [j for j in jobs if not _part_paths(root, key, j.index)[0].exists()]
    bar = tqdm(total=len(videos), initial=len(videos) - sum(1 + len(j.fakes) for j in todo),
               desc="synth videos", unit="video", disable=not progress)
    if cfg.workers > 1 and len(todo) > 1:
        with ProcessPoolExecutor(max_workers=cfg.workers) as pool:
            futures = [pool.submit(_run_group, j, cfg, root, key) for j in todo]
            for fut in as_completed(futures):
                bar.update(fut.result())
    else:
        for job in todo:
            bar.update(_run_group(job, cfg, root, key))
    bar.close()
    _assemble(root, jobs, key, cfg.sound.enabled)
    return root
