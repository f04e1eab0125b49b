"""`python pipelines/oof.py`: level-0 out-of-fold frame predictions, tracked in MLflow.

corpus (embedded generator or --data folders) -> videos -> grouped folds -> faces (cached) ->
every learner x fold unit (base_learners.oof; resumable) -> frame_preds, a summary table, and one
MLflow parent run with a nested run per unit. The stack stage reads the tables of the latest
finished parent run (tag fakestack.stage=oof).

    python pipelines/oof.py                                  # demo profile, embedded corpus
    python pipelines/oof.py --data /data/dfdc/part_0 /data/dfdc/part_1 --profile full
    python pipelines/oof.py --set folds.k=5 --set train.epochs=2 --set select=[meso4]
    python pipelines/oof.py --profile real --data FACE_SET --test-data VIDEO_CORPUS   # cross-dataset

A face set (pre-extracted crops) mixes with videos, and packages a detector, when the face settings
that made its crops are known: stated (`--set face_images.margin=M`) or estimated from the images
(features.faces.face_sets); its videos are then cropped with that margin.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
import torch
import yaml

import mlflow
from base_learners.audio_oof import STATUS_TABLE as AUDIO_STATUS
from base_learners.audio_oof import AudioStageConfig, run_audio_stage, with_audio_preds, with_audio_units
from base_learners.inputs import FRAME, PAIR, PAIR_FRAMES, PAIR_TRACK, input_kind, item_members
from base_learners.lipsync_corr import LANDMARK_POINTS, MOUTH_LANDMARKS
from base_learners.lipsync_oof import run_lipsync_stage
from base_learners.oof import OOFResult, Unit, UnitResult, merge_train_config, prior_log_loss, run_oof, score_preds, units_table
from base_learners.registry import LearnerConfig, build_learner
from base_learners.timm_learners import PretrainedUnavailableError
from base_learners.train import TrainConfig, resolve_device
from features.common import ConfigError, added_field, atomic_write_parquet, atomic_write_text, config_hash, runtime_field, to_dict
from features.contract import RUN_TABLES, TABLES, frames_table, unit_name
from features.corpus.face_csv import MEDIA_FACES
from features.corpus.folds import FoldConfig, check_folds, make_folds
from features.corpus.layouts import AUTO, read_videos, with_test_corpora
from features.corpus.options import CorpusOptions
from features.devices import check_device
from features.engines import LOCAL_ENGINE, Engine, check_engine
from features.faces.config import FaceConfig
from features.faces.extract import FaceResult, extract_faces
from features.faces.face_sets import SETTINGS_FILE as FACE_SETTINGS_FILE
from features.faces.face_sets import FaceImagesConfig, FaceSetSettings, cropping_config, merge_face_results, resolve_face_set, write_settings
from features.faces.images import import_faces
from features.faces.source import CropSource
from features.synth import SynthConfig, generate_corpus
from features.synth.corpus import corpus_key
from pipelines.config import WORK_DIR, add_config_args, build_config, exit_on_user_error, setup_logging
from pipelines.tracking import MLFLOW_DIR, OOF_EXPERIMENT, git_commit, setup_tracking, ui_hint

PIPELINE = "oof"
STAGE_TAG = "fakestack.stage"
UNIT_STAGE = "oof-unit"  # nested runs: never mistaken for a parent by the stack stage
SUMMARY_METRICS = ("frame_log_loss", "video_log_loss", "video_auc")
PRIOR_ROW = "constant prior"
EPOCH_METRICS = ("train_loss", "inner_val_loss", "lr", "seconds")
NUMBERED_GPU = re.compile(r"cuda:\d+")
THROUGHPUT_NAN = {"train_faces_per_s": float("nan"), "predict_faces_per_s": float("nan")}


DEFAULT_LEARNERS = ("meso4", "mesoinception4", "resnext", "xception", "efficientnet")  # the five CNN families


def _default_learners() -> dict[str, LearnerConfig]:
    """Without a profile, the five families; other registered learners (`spectrum`) are opt-in."""
    return {name: LearnerConfig(name=name) for name in DEFAULT_LEARNERS}


@dataclass
class OOFConfig:
    """Everything `oof.py` does; defaults here, profiles and --set override them."""

    data: list[str] = field(default_factory=list)  # corpus folders (any layout); empty: the embedded corpus
    test_data: list[str] = field(default_factory=list)  # cross-dataset: corpora scored as test videos only
    test_layout: str = AUTO  # the test corpora's layout
    synth: SynthConfig = field(default_factory=SynthConfig)  # the embedded corpus (when no data)
    layout: str = AUTO  # features.corpus.layouts: dfdc | face_csv | ... | auto (from what the folders hold)
    corpus: CorpusOptions = field(default_factory=CorpusOptions)  # settings of the layout readers
    link_parts: bool = False  # one group per corpus folder (leakage rule 1's extra links)
    on_missing: str = "error"  # error | status: a missing video file stops the run or gets a status
    faces: FaceConfig = field(default_factory=FaceConfig)
    # how a face set's crops were made (stated or estimated): videos cropped to match them, and a
    # detector packaged from face images (features.faces.face_sets)
    face_images: FaceImagesConfig = added_field(FaceImagesConfig())
    folds: FoldConfig = field(default_factory=FoldConfig)
    learners: dict[str, LearnerConfig] = field(default_factory=_default_learners)  # key: name in tables
    select: list[str] = field(default_factory=list)  # run only these learners (empty: all)
    train: TrainConfig = field(default_factory=TrainConfig)
    train_overrides: dict[str, dict] = field(default_factory=dict)  # learner -> partial TrainConfig
    unit_workers: int = runtime_field(1)  # processes training learner x fold units (0: one per core; CPU only)
    engine: str = runtime_field("local")  # features.engines: local (a process pool here) | ray (tasks on a Ray cluster)
    ray_address: str | None = runtime_field(None)  # engine=ray: the cluster to join (None: RAY_ADDRESS, else a local Ray)
    audio: AudioStageConfig = added_field(AudioStageConfig())  # soundtracks (and lip sync) as level-0 learners (profile audio)
    refit: bool = False  # also one model per learner on every labelled video (a test-time choice; README)
    workdir: str | None = runtime_field(None)  # corpus, face cache, units, outputs; None: WORK_DIR (./.fakestack)
    tracking_uri: str | None = runtime_field(None)  # None: MLFLOW_TRACKING_URI or the local sqlite store
    progress: bool = runtime_field(True)


@dataclass
class OOFRun:
    output_dir: Path
    run_id: str
    frame_preds: pd.DataFrame
    summary: pd.DataFrame
    throughput: pd.DataFrame
    timings: dict[str, float]
    units: list[UnitResult]


# ---------------------------------------------------------------- config helpers


def active_learners(cfg: OOFConfig) -> dict[str, LearnerConfig]:
    unknown = sorted(set(cfg.select) - set(cfg.learners))
    unknown_over = sorted(set(cfg.train_overrides) - set(cfg.learners))
    if unknown or unknown_over:
        raise ConfigError(f"unknown learner(s) {unknown + unknown_over} in select/train_overrides; "
                          f"configured: {sorted(cfg.learners)}")
    chosen = {k: v for k, v in cfg.learners.items() if not cfg.select or k in cfg.select}
    if not chosen:
        raise ConfigError("no learners to run")
    try:
        pairs = sorted(k for k, v in chosen.items() if input_kind(v) in (PAIR, PAIR_TRACK))
    except KeyError as err:  # an unknown view
        raise ConfigError(f"learners: {err.args[0]}") from None
    if pairs and cfg.faces.clip_len < PAIR_FRAMES:
        raise ConfigError(f"learner(s) {pairs} read pairs of consecutive frames (view delta): set "
                          f"faces.clip_len >= {PAIR_FRAMES} (it is {cfg.faces.clip_len})")
    return chosen


def check_items(frames: pd.DataFrame, learners: dict[str, LearnerConfig]) -> None:
    """Before any unit: every pair or track learner has items in every fold (a face set of one image
    per video, or faces never tracked through two consecutive frames, gives a pair learner none)."""
    folds = sorted(frames["fold"].dropna().unique())
    for key, lcfg in learners.items():
        kind = input_kind(lcfg)
        if kind == FRAME:
            continue
        rows, _, _ = item_members(frames, kind)
        have = set(frames["fold"].iloc[rows].dropna().unique())
        empty = [int(k) for k in folds if k not in have]
        if empty:
            raise ConfigError(f"learner {key!r} ({kind} items) has none in fold(s) {empty}: its faces never "
                              "show in two consecutive frames of a clip (faces.clip_len, a face set of one "
                              "image per video, or faces the tracker does not link)")


def train_configs(cfg: OOFConfig, learners: dict[str, LearnerConfig]) -> dict[str, TrainConfig]:
    return {k: merge_train_config(cfg.train, cfg.train_overrides.get(k), f"train_overrides.{k}")
            for k in learners}


def flatten(data: Any, prefix: str = "") -> dict[str, str]:
    """Nested config -> {"a.b.c": "value"} for MLflow params."""
    if isinstance(data, dict):
        out: dict[str, str] = {}
        for k, v in data.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): str(data)}


def run_key(cfg: OOFConfig) -> str:
    """Names the output folder: the config minus settings that do not change results."""
    return config_hash(cfg)  # config_hash leaves the runtime fields out


# ---------------------------------------------------------------- stages


def corpus_roots(cfg: OOFConfig, workdir: Path) -> list[str]:
    """The corpus folders; the embedded corpus is generated (resumably) under workdir/corpus."""
    if cfg.data:
        return list(cfg.data)
    root = workdir / "corpus" / corpus_key(cfg.synth)  # `workers` does not change the corpus
    generate_corpus(root, cfg.synth, progress=cfg.progress)
    return [str(root)]


def check_lipsync_faces(cfg: OOFConfig) -> None:
    """The lip-sync learner reading mouths from landmarks needs the face stage to find them."""
    lips = cfg.audio.lipsync
    if lips.enabled and lips.train.mouth_input == MOUTH_LANDMARKS and cfg.faces.landmarks != LANDMARK_POINTS:
        raise ConfigError(f"audio.lipsync.train.mouth_input landmarks needs faces.landmarks={LANDMARK_POINTS} "
                          f"(the inner lips), got {cfg.faces.landmarks}")


def check_learners(learners: dict[str, LearnerConfig]) -> None:
    """Build every learner once before any work: an unknown name, variant or encoder or a setting
    it refuses stops the run at once with one message, and pretrained weights are fetched here
    (timm caches them for the units), so an offline machine stops with the ways on, not after the
    face stage."""
    for key, lcfg in learners.items():
        try:
            model = build_learner(lcfg)
            if getattr(model, "untrainable", None):  # loads from a checkpoint, cannot train
                raise ValueError(model.untrainable)
        except (KeyError, ValueError) as err:
            raise ConfigError(f"learners.{key}: {err.args[0] if err.args else err}") from None


def face_stage(videos: pd.DataFrame, cfg: OOFConfig, workdir: Path, engine: Engine = LOCAL_ENGINE,
               face_set: FaceSetSettings | None = None) -> FaceResult:
    """Faces of every video: detected in video files, or imported where the corpus ships face images.
    With a face set's settings, videos are cropped with its margin; a run holding both (cross-dataset)
    imports one part, extracts the other and merges the two caches into one folder."""
    fcfg = cropping_config(cfg.faces, face_set)
    is_image = (videos["media"] == MEDIA_FACES).to_numpy()
    if is_image.all():
        return import_faces(videos, fcfg, workdir / "faces", progress=cfg.progress, engine=engine)
    if not is_image.any():
        return extract_faces(videos, fcfg, workdir / "faces", progress=cfg.progress, engine=engine)
    if face_set is None:
        raise ConfigError("face images and videos in one run: their face settings are unknown (state "
                          "face_images.margin, or leave face_images.estimate on)")
    parts = [import_faces(videos[is_image], fcfg, workdir / "faces", progress=cfg.progress, engine=engine),
             extract_faces(videos[~is_image], fcfg, workdir / "faces", progress=cfg.progress, engine=engine)]
    return merge_face_results(parts, videos["video_id"].tolist(), workdir / "faces", fcfg.crop_format)


def build_engine(cfg: OOFConfig, workdir: Path, tcfgs: dict[str, TrainConfig]) -> Engine:
    """The engine of `cfg`, started (a Ray engine connects and checks the workdir is shared)."""
    check_engine(cfg.engine)
    engine = Engine(cfg.engine, cfg.ray_address, workdir)
    numbered = sorted({d for d in [cfg.faces.device, *(t.device for t in tcfgs.values())] if NUMBERED_GPU.fullmatch(d)})
    if engine.distributed and numbered:
        raise ConfigError(f"engine={cfg.engine} gives each task its own GPU; set device cuda (or auto), not {numbered}")
    if not engine.distributed:  # a cluster's GPUs are on its workers, not necessarily here
        for where, device in [("faces.device", cfg.faces.device), *((f"train.device ({n})", t.device) for n, t in tcfgs.items())]:
            try:
                check_device(device)
            except ConfigError as err:
                raise ConfigError(f"{where}: {err}") from None
    engine.start()
    return engine


@contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    t0 = time.perf_counter()
    yield
    timings[name] = time.perf_counter() - t0


class _MlflowUnitHooks:
    """A nested run's logging: per-epoch losses live, the rest when the unit is done or loaded."""

    def __init__(self) -> None:
        self.live_epochs = 0

    def on_epoch(self, epoch: int, metrics: dict) -> None:
        self.live_epochs += 1
        mlflow.log_metrics({k: float(metrics[k]) for k in EPOCH_METRICS if metrics.get(k) is not None}, step=epoch)

    def on_done(self, result: UnitResult) -> None:
        info = result.info
        mlflow.set_tag("cached", str(result.cached).lower())
        params = {"learner": result.unit.learner, "fold": result.unit.fold, "seed": result.unit.seed,
                  "unit_key": result.unit.key, "n_train": info["n_train"], "n_oof": info["n_oof"],
                  "n_test": info["n_test"], "n_train_videos": len(info["train_video_ids"])}
        params.update(flatten(info["learner_config"], "learner."))
        params.update(flatten(info["train_config"], "train."))
        mlflow.log_params(params)
        if self.live_epochs == 0:  # loaded, or trained by a pool: replay the stored history
            for h in info["history"]:
                mlflow.log_metrics({k: float(h[k]) for k in EPOCH_METRICS if h.get(k) is not None}, step=h["epoch"])
        mlflow.log_metrics({f"fold_{k}": v for k, v in info["metrics"].items()})
        mlflow.log_metric("unit_seconds", info["train_seconds"])
        mlflow.log_metrics(info.get("throughput", {}))


@contextmanager
def _mlflow_unit_scope(unit: Unit) -> Iterator[_MlflowUnitHooks]:
    tags = {STAGE_TAG: UNIT_STAGE, "learner": unit.learner, "fold": str(unit.fold)}
    with mlflow.start_run(run_name=f"{unit.learner}-{unit_name(unit.fold)}", nested=True, tags=tags):
        yield _MlflowUnitHooks()


def summarize(frame_preds: pd.DataFrame, videos: pd.DataFrame) -> pd.DataFrame:
    """Per learner over all OOF rows: frame/video log loss, video AUC; plus the constant prior."""
    oof = frame_preds[frame_preds["fold"].notna()].merge(videos[["video_id", "label"]], on="video_id")
    rows = []
    for learner, part in oof.groupby("learner", sort=False):
        s = score_preds(part)
        rows.append({"learner": learner, **{k: s[k] for k in SUMMARY_METRICS}, "n_videos": int(s["n_videos"])})
    n_videos = oof["video_id"].nunique()
    rows.append({"learner": PRIOR_ROW, "frame_log_loss": float("nan"),
                 "video_log_loss": prior_log_loss(frame_preds, videos), "video_auc": 0.5, "n_videos": n_videos})
    return pd.DataFrame(rows)


def throughput_table(units: list[UnitResult], devices: dict[str, str]) -> pd.DataFrame:
    """Per learner: faces/s through training and prediction, the mean over its units (as measured
    when each unit was trained; units trained before throughput was recorded give NaN)."""
    rows = [{"learner": r.unit.learner, **THROUGHPUT_NAN, **r.info.get("throughput", {})} for r in units]
    table = pd.DataFrame(rows).groupby("learner", sort=False).mean().reset_index()
    table.insert(1, "device", table["learner"].map(devices))
    return table


def device_names(tcfgs: dict[str, TrainConfig]) -> dict[str, str]:
    """learner -> the device it trains on, in words (the GPU's model name on CUDA)."""
    def name(dev: str) -> str:
        d = resolve_device(dev)
        return f"{d.type}: {torch.cuda.get_device_name(d)}" if d.type == "cuda" else d.type

    return {k: name(t.device) for k, t in tcfgs.items()}


def write_outputs(out: Path, tables: dict[str, pd.DataFrame], cfg: OOFConfig, summary: pd.DataFrame,
                  throughput: pd.DataFrame) -> None:
    for name, table in tables.items():
        atomic_write_parquet(table, out / f"{name}.parquet")
    atomic_write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False), out / "config.yaml")
    atomic_write_text(summary.to_csv(index=False), out / "summary.csv")
    atomic_write_text(throughput.to_csv(index=False), out / "throughput.csv")


def _log_parent(out: Path, summary: pd.DataFrame, timings: dict[str, float]) -> None:
    for name in TABLES + RUN_TABLES:
        if name in TABLES or (out / f"{name}.parquet").is_file():  # RUN_TABLES: only where the run made them
            mlflow.log_artifact(str(out / f"{name}.parquet"), artifact_path="tables")
    mlflow.log_artifact(str(out / "config.yaml"))
    if (out / FACE_SETTINGS_FILE).is_file():  # a face set's face settings (stack.py packages with them)
        mlflow.log_artifact(str(out / FACE_SETTINGS_FILE))
    mlflow.log_artifact(str(out / "summary.csv"))
    mlflow.log_artifact(str(out / "throughput.csv"))
    for row in summary.itertuples(index=False):
        prefix = "prior" if row.learner == PRIOR_ROW else row.learner
        mlflow.log_metrics({f"{prefix}.oof_{k}": float(getattr(row, k)) for k in SUMMARY_METRICS
                            if not pd.isna(getattr(row, k))})
    mlflow.log_metrics({f"time_{k}_s": v for k, v in timings.items()})


def _log_corpus(videos: pd.DataFrame, roots: list[str]) -> None:
    source = roots[0] if len(roots) == 1 else ";".join(roots)
    table = videos.astype({c: "object" for c in videos.columns if str(videos[c].dtype) == "string"})
    table = table.astype({"label": "float64"})  # nullable Int8 -> float with NaN for the schema
    with warnings.catch_warnings():  # "source can be interpreted in multiple ways": it is a local folder
        warnings.simplefilter("ignore", UserWarning)
        dataset = mlflow.data.from_pandas(table, source=source, name=f"corpus-{config_hash(table)}")
    mlflow.log_input(dataset, context="corpus")


# ---------------------------------------------------------------- run


def run(cfg: OOFConfig, profile: str = "custom", mlflow_dir: Path = MLFLOW_DIR) -> OOFRun:
    """The whole stage (see the module docstring); returns the tables and where they went."""
    learners = active_learners(cfg)
    tcfgs = train_configs(cfg, learners)
    check_learners(learners)
    check_lipsync_faces(cfg)
    workdir = (Path(cfg.workdir) if cfg.workdir else WORK_DIR).resolve()  # tasks on other nodes get absolute paths
    out = workdir / "oof" / run_key(cfg)
    engine = build_engine(cfg, workdir, tcfgs)  # before any work: a wrong ray_address fails in seconds
    setup_tracking(OOF_EXPERIMENT, cfg.tracking_uri, mlflow_dir)
    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    tags = {STAGE_TAG: PIPELINE, "fakestack.git_commit": git_commit(), "fakestack.profile": profile,
            "fakestack.output_dir": str(out)}
    with mlflow.start_run(run_name=f"oof-{profile}", tags=tags) as parent:
        mlflow.log_params(flatten(to_dict(cfg)))
        with _timed(timings, "corpus"):
            roots = corpus_roots(cfg, workdir)
        with _timed(timings, "folds"):
            videos = read_videos(roots, cfg.layout, on_missing=cfg.on_missing, link_parts=cfg.link_parts,
                                 options=cfg.corpus)
            if cfg.test_data:
                test = read_videos(cfg.test_data, cfg.test_layout, on_missing=cfg.on_missing,
                                   link_parts=cfg.link_parts, options=cfg.corpus)
                videos = with_test_corpora(videos, test, link_parts=cfg.link_parts, mixed_media=True)
            folds = make_folds(videos, cfg.folds)
            check_folds(videos, folds)
            face_set, why = resolve_face_set(videos, cfg.faces, cfg.face_images)
            if face_set is None and videos["media"].nunique() > 1:
                raise ConfigError(f"face images and videos in one run need the face set's face settings: {why}")
            if face_set is not None:
                mlflow.log_params({f"face_set.{k}": v for k, v in face_set.to_dict().items()})
                mlflow.set_tag("fakestack.face_set", face_set.describe())
        _log_corpus(videos, roots)
        with _timed(timings, "faces"):
            faces = face_stage(videos, cfg, workdir, engine, face_set)
            frames = frames_table(faces.faces, videos, folds)
            check_items(frames, learners)
            crops = CropSource.from_table(frames, faces.crops_dir)  # rows only: read per batch
        with _timed(timings, "units"):
            result: OOFResult = run_oof(frames, crops, learners, tcfgs, workdir / "oof" / "units",
                                        faces.crops_dir.name, unit_scope=_mlflow_unit_scope,
                                        progress=cfg.progress, workers=cfg.unit_workers, engine=engine)
            refit = OOFResult(result.frame_preds.iloc[:0])
            if cfg.refit:
                refit = run_oof(frames, crops, learners, tcfgs, workdir / "oof" / "units", faces.crops_dir.name,
                                unit_scope=_mlflow_unit_scope, progress=cfg.progress, workers=cfg.unit_workers,
                                refit=True, engine=engine)
        audio = None
        if cfg.audio.enabled:  # base_learners.audio_oof: the same folds, its rows appended to frame_preds
            with _timed(timings, "audio"):
                audio = run_audio_stage(videos, folds, cfg.audio, workdir, cfg.faces.n_frames, cfg.progress)
                result = dataclasses.replace(result, frame_preds=with_audio_preds(result.frame_preds, audio.preds))
            if cfg.audio.lipsync.enabled:  # base_learners.lipsync_oof: the face stage's crops against those windows
                with _timed(timings, "lipsync"):
                    lips = run_lipsync_stage(videos, folds, frames, faces.crops_dir, cfg.audio, workdir, cfg.progress)
                    result = dataclasses.replace(result, frame_preds=with_audio_preds(result.frame_preds, lips.preds))
                    audio.units.extend(lips.units)
        for name in learners:
            timings[f"learner_{name}"] = sum(r.seconds for r in result.units + refit.units
                                             if r.unit.learner == name)
        with _timed(timings, "outputs"):
            summary = summarize(result.frame_preds, videos)
            speed = throughput_table(result.units, device_names(tcfgs))
            tables = {"videos": videos, "folds": folds, "faces": faces.faces, "face_status": faces.status,
                      "frame_preds": result.frame_preds,
                      "units": with_audio_units(units_table(result.units + refit.units, out), audio.units if audio else [], out),
                      "refit_preds": refit.frame_preds, **({AUDIO_STATUS: audio.status} if audio else {})}
            write_outputs(out, tables, cfg, summary, speed)
            write_settings(face_set, out)
        timings["total"] = time.perf_counter() - t_start
        _log_parent(out, summary, timings)
        run_id = parent.info.run_id
    return OOFRun(out, run_id, result.frame_preds, summary, speed, timings, result.units)


def report(result: OOFRun) -> str:
    """What the user reads at the end: scores, stage times, where everything is."""
    lines = ["", "OOF scores (all out-of-fold rows; video = mean of frame probabilities):",
             result.summary.to_string(index=False, float_format=lambda x: f"{x:.4f}"), "",
             "throughput (faces/s; mean over each learner's units, as measured when trained):",
             result.throughput.to_string(index=False, float_format=lambda x: f"{x:.1f}"), "",
             "wall time per stage (learner_*: the sum of its units' times; they overlap in a unit pool):"]
    lines += [f"  {k:<24} {v:8.1f} s" for k, v in result.timings.items()]
    n_cached = sum(r.cached for r in result.units)
    lines += [f"  units: {len(result.units)} ({n_cached} loaded from cache)", "",
              f"outputs:    {result.output_dir}", f"mlflow run: {result.run_id}  ({ui_hint()})"]
    return "\n".join(lines)


def parse_config(argv: list[str] | None = None) -> tuple[OOFConfig, str]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", metavar="PATH", help="corpus folder(s) to train on (any layout)")
    parser.add_argument("--test-data", nargs="+", metavar="PATH",
                        help="cross-dataset: corpus folder(s) whose every video is only scored (test)")
    parser.add_argument("--workdir", help="working folder (default: repo/.fakestack)")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite under mlflow/)")
    add_config_args(parser)
    args = parser.parse_args(argv)
    try:
        cfg = build_config(OOFConfig, PIPELINE, args.profile, args.overrides)
        active_learners(cfg)
        check_engine(cfg.engine)
    except (ConfigError, ValueError, TypeError) as err:  # unknown keys, bad values, missing fields
        parser.error(f"config: {err}")
    given = {"data": args.data, "test_data": args.test_data, "workdir": args.workdir,
             "tracking_uri": args.tracking_uri}
    return dataclasses.replace(cfg, **{k: v for k, v in given.items() if v}), args.profile


def main(argv: list[str] | None = None) -> OOFRun:
    cfg, profile = parse_config(argv)
    setup_logging()
    with exit_on_user_error("oof.py", (PretrainedUnavailableError,)):  # offline without a weights file
        result = run(cfg, profile=profile)
    print(report(result))
    return result



def cli() -> None:
    """The `fakestack-oof` console script: main() with exit status 0 (its result is for callers)."""
    main()


if __name__ == "__main__":
    main()
