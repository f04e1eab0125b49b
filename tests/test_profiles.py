"""The shipped profiles end to end on CPU: `oof.py --profile P` then `stack.py --profile P`, through
their `main(argv)`, on a tiny corpus.

Why: CI has no GPU, and nothing else runs the `full` profile's code path (PyAV's reference-frame
decoder, detect_every, JPEG crops, the three full-size timm families, the full stack sweep with
LightGBM's CV-chosen trees and inner_k 5), nor the `temporal` and `real` profiles as shipped. The
overrides here only shrink a profile: CPU, AMP off, tiny inputs and crops, few frames, one epoch,
no pretrained timm weights (CI is offline), in-process face and unit work, fewer folds and
originals, fewer plots and reports. The decoder, face settings, variants, views and sweep stay the
profile's own; only the temporal and real runs leave out the leave-one-learner-out subsets (the
same code as the full run's, where they stay: they were two thirds of those runs' time). Two folds
leave out nested selection (tests/test_stack.py runs it). One MLflow store serves the module
(creating one takes seconds); every run is read back by its id.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_stack import make_oof_dir

from pipelines import oof, stack
from pipelines.config import build_config

FULL_LEARNERS = ("meso4", "mesoinception4", "resnext", "xception", "efficientnet")
TIMM = ("resnext", "xception", "efficientnet")
# the embedded corpus shrunk: one fake an original (each group still holds both classes), few frames
# (pyav_ref decodes at reference frames only where a stream has >= 2 frames per sample)
TINY_SYNTH = ["synth.n_test_originals=1", "synth.fakes_per_original=[1,1]", "synth.donor_pool_extra=2",
              "synth.n_frames=10", "synth.fps_choices=[15]", "synth.landscape_sizes=[[256,192]]",
              "synth.portrait_sizes=[[192,256]]", "synth.workers=1"]
# batch sizes stay the profiles': at these few faces an epoch is one step
TINY_TRAIN = ["train.device=cpu", "train.amp=false", "train.epochs=1", "train.num_workers=0", "train.num_threads=1",
              "unit_workers=1", "progress=false"]
TINY_STACK = ["n_jobs=1", "plots=false", "explain_top=1"]
NO_LOO = ["sweep.leave_one_out=false", "explain_top=0"]  # temporal, real: covered by the full run


@pytest.fixture(scope="module")
def uri(tmp_path_factory) -> str:
    """A file sqlite tracking store for the module's runs."""
    return f"sqlite:///{(tmp_path_factory.mktemp('mlruns') / 'mlflow.db').as_posix()}"


def _argv(profile: str, sets: list[str], *flags: str) -> list[str]:
    return ["--profile", profile, *flags, *[a for s in sets for a in ("--set", s)]]


def _run(profile: str, tmp, uri: str, oof_sets: list[str], stack_sets: list[str], data: list[str] = ()):
    """oof.py then stack.py (reading that oof run from MLflow), both through main(argv)."""
    data_flags = ("--data", *map(str, data)) if data else ()
    run = oof.main(_argv(profile, oof_sets, "--workdir", str(tmp / "work"), "--tracking-uri", uri, *data_flags))
    res = stack.main(_argv(profile, [f"output_dir={tmp / 'stack'}", *TINY_STACK, *stack_sets],
                           "--oof-run", run.run_id, "--tracking-uri", uri))
    return run, res


def _check_stack(res, profile: str, learners: tuple[str, ...], detector: bool = True, loo: bool = False) -> None:
    """The profile's whole sweep ran: every meta-learner with every calibration on all learners,
    a packaged detector (not from a face-image set), and a submission of every test video."""
    sweep = build_config(stack.StackConfig, "stack", profile).sweep
    names = {r.spec.name for r in res.results}
    assert {f"{m}+{c}+clip_{sweep.clip}[all]" for m in sweep.metas for c in sweep.calibrations} <= names
    if loo:
        assert {f"logreg+none+clip_{sweep.clip}[-{l}]" for l in learners} <= names
    assert set(res.video_features.filter(like="__").columns.str.split("__").str[0]) >= set(learners)
    assert np.isfinite(res.best.metrics["cv_log_loss"])
    assert bool(res.detector_uri) == detector, res.detector_note
    sub = pd.read_csv(res.output_dir / "submission.csv")
    assert len(sub) == len(res.submission) > 0 and sub["label"].between(0, 1).all()


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, uri):
    """The full profile on 12 originals in 2 folds: each fold costs the three full-size timm
    families 10-15 s on 2 shared cores even at 32 px (a training step is ~1 s: their 20M weights), so
    the fewest folds; the stack's inner_k stays the profile's 5, which 6 originals an outer
    training part can feed. Counts PyAV opens: the profile's pyav_ref decoder must really decode."""
    tmp = tmp_path_factory.mktemp("full")
    opened = []
    mp = pytest.MonkeyPatch()
    import av  # the decoder imports it on first use (features.faces.decode._pyav)

    real_open = av.open
    mp.setattr(av, "open", lambda path, *a, **kw: opened.append(path) or real_open(path, *a, **kw))
    learners = [f"learners.{n}.input_size=32" for n in FULL_LEARNERS] + [f"learners.{n}.pretrained=false" for n in TIMM]
    overs = [f"train_overrides.{n}.epochs=1" for n in ("meso4", "mesoinception4")]
    oof_sets = ["synth.n_originals=12", *TINY_SYNTH, "synth.n_frames=6", "faces.n_frames=3", "faces.crop_size=48",
                "faces.workers=1", "faces.device=cpu", "folds.k=2", *learners, *TINY_TRAIN, *overs]
    try:
        run, res = _run("full", tmp, uri, oof_sets, [])
    finally:
        mp.undo()
    return tmp, run, res, opened


@pytest.mark.slow
def test_full_profile_runs_end_to_end_on_cpu(full_run):
    tmp, run, res, opened = full_run
    cfg = build_config(oof.OOFConfig, "oof", "full")
    assert (cfg.faces.decoder, cfg.faces.detect_every, cfg.faces.crop_format) == ("pyav_ref", 4, "jpg")
    assert len(opened) >= len(pd.read_parquet(run.output_dir / "videos.parquet"))  # every video through PyAV
    faces = tmp / "work" / "faces"
    assert list(faces.rglob("*.jpg/000000.jpg")) and not list(faces.rglob("*.npy"))  # the JPEG crop store
    assert set(run.summary["learner"]) >= set(FULL_LEARNERS)
    assert {u.unit.learner for u in run.units} == set(FULL_LEARNERS) and len(run.units) == 2 * len(FULL_LEARNERS)
    used = pd.read_parquet(run.output_dir / "units.parquet")
    assert len(used) == len(run.units)
    _check_stack(res, "full", FULL_LEARNERS, loo=True)
    lgbm = [r for r in res.results if r.spec.meta == "lgbm"]
    assert lgbm and all(r.ensemble.meta_.n_trees_ >= 1 for r in lgbm)  # n_trees: cv chose a number


def test_corpus_too_small_for_inner_k_is_one_line_and_exit_2(tmp_path, uri, capsys):
    """Not sklearn's `n_splits=5 greater than the number of groups` minutes into the sweep: one line
    naming the setting and the group count, exit status 2, before any configuration is fitted."""
    oof_dir, _ = make_oof_dir(tmp_path, n_groups=6)  # 3 folds of 2 groups: 4 in an outer training part
    with pytest.raises(SystemExit) as exit_:
        stack.main(_argv("full", ["n_jobs=1", f"output_dir={tmp_path / 'out'}"], "--oof-dir", str(oof_dir),
                         "--tracking-uri", uri))
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("stack.py: error:")]
    assert len(lines) == 1 and "Traceback" not in err
    assert "inner_k=5" in lines[0] and "4 groups" in lines[0]


def test_lgbm_cv_k_shortfall_names_its_setting(tmp_path, uri, capsys):
    oof_dir, _ = make_oof_dir(tmp_path, n_groups=6)
    with pytest.raises(SystemExit) as exit_:
        stack.main(_argv("full", ["n_jobs=1", "inner_k=2", "nested=false", f"output_dir={tmp_path / 'out'}"],
                         "--oof-dir", str(oof_dir), "--tracking-uri", uri))
    assert exit_.value.code == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("stack.py: error: sweep.meta_params.lgbm.cv_k=3") and "2 groups" in line


@pytest.mark.slow
def test_temporal_profile_runs_end_to_end_on_cpu(tmp_path, uri):
    """Clips of consecutive frames, the delta view and the sequence learners, and the temporal sweep
    with its `frames` subset (2 folds of 8 originals: inner_k 3 has 4 groups an outer part)."""
    learners = build_config(oof.OOFConfig, "oof", "temporal").learners
    overs = [f"train_overrides.{n}.epochs=1" for n in learners]
    sets = ["synth.n_originals=8", *TINY_SYNTH, "synth.n_frames=8", "faces.n_frames=2", "faces.workers=1", "folds.k=2",
            *TINY_TRAIN, *overs]  # 2 clips of the profile's 4 frames a video
    run, res = _run("temporal", tmp_path, uri, sets, NO_LOO)
    assert {u.unit.learner for u in run.units} == set(learners)
    _check_stack(res, "temporal", tuple(learners))
    assert any(r.spec.subset == "frames" for r in res.results)


def _face_set(root, n_originals: int) -> None:
    """A face-image set as the real profile reads (face_csv: metadata.csv and one crop a video):
    random 64 px faces, an original and one fake per group; the last group is the test split."""
    import cv2

    from features.corpus.face_csv import CSV_NAME

    rng = np.random.default_rng(0)
    (root / "faces").mkdir(parents=True)
    lines = ["videoname,original_width,original_height,label,original,split"]
    for g in range(n_originals + 1):
        for name, label, orig in ((f"r{g:03d}.mp4", "REAL", ""), (f"f{g:03d}.mp4", "FAKE", f"r{g:03d}.mp4")):
            cv2.imwrite(str(root / "faces" / name.replace(".mp4", ".jpg")),
                        rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
            lines.append(f"{name},64,64,{label},{orig},{'test' if g == n_originals else 'train'}")
    (root / CSV_NAME).write_text("\n".join(lines) + "\n")


@pytest.mark.slow
def test_real_profile_runs_end_to_end_on_cpu(tmp_path, uri):
    """The real profile reads a face-image set (no videos, no detection); its O-Nets keep their
    shipped face weights (facenet-pytorch's, offline). 2 folds of 12 originals: inner_k 3 and
    LightGBM's cv_k 3 inside it have enough groups."""
    _face_set(tmp_path / "faceset", 12)
    learners = build_config(oof.OOFConfig, "oof", "real").learners
    overs = [f"train_overrides.{n}.epochs=1" for n in learners]
    run, res = _run("real", tmp_path, uri, ["folds.k=2", "faces.workers=1", *TINY_TRAIN, *overs], NO_LOO,
                    data=[tmp_path / "faceset"])
    assert {u.unit.learner for u in run.units} == set(learners)
    assert (run.frame_preds["frame_idx"] == 0).all()  # one image a video
    _check_stack(res, "real", tuple(learners), detector=False)  # face images: no detector to package
