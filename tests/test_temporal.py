"""Temporal level-0 learners (issue 16): clips of consecutive frames in the face stage, the delta
view, the sequence learner, and their out-of-fold units.

The unit tests use a small faces table built here (two clips of two frames per video, a second face
in some first frames, so tracks have unequal lengths); the face-stage tests run MTCNN on tiny
generated videos.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from unit_data import kill_during_second_unit

from base_learners.inputs import FRAME, PAIR, PAIR_TRACK, TRACK, input_kind, learner_inputs
from base_learners.oof import OOFIntegrityError, check_oof, run_oof
from base_learners.registry import LearnerConfig, build_learner
from base_learners.sequence import SequenceConfig
from base_learners.train import TrainConfig, predict_logits
from base_learners.views import HIGHPASS_MID, build_view
from features.contract import FACE_KEY, frames_table
from features.faces import cache
from features.faces.config import FaceConfig
from features.faces.decode import clip_indices, sample_indices
from features.faces.extract import cache_fields, extract_faces
from features.synth import SynthConfig
from features.synth.fake import FakeSpec, swap_frames
from features.synth.identity import sample_identity
from features.synth.scene import camera, make_scene, render_scene

N_VIDEOS, N_LABELLED, SIZE = 24, 20, 32
CLIP_FRAMES = ((0, 1), (10, 11))  # two clips of two consecutive frames
FAKE_EVERY = 5
TWO_FACES_EVERY = 3  # every 3rd video shows a second face in its first frame only: a track of one
SEQ = LearnerConfig("sequence", input_size=SIZE, sequence=SequenceConfig(encoder="meso4", hidden=8))
SEQ_DELTA = replace(SEQ, view="delta")
DELTA = LearnerConfig("meso4", input_size=SIZE, view="delta")
LEARNERS = {"seq": SEQ, "delta": DELTA}
TRAIN = TrainConfig(epochs=1, batch_size=8, device="cpu", num_threads=1, tta_flip=True)
CROPS_KEY = "temporal-test-crops"


def make_tables():
    videos, faces = [], []
    for v in range(N_VIDEOS):
        vid, labelled = f"v{v:02d}.mp4", v < N_LABELLED
        videos.append(dict(video_id=vid, label=int(v % FAKE_EVERY != 0) if labelled else pd.NA,
                           group=v // 2, fold=(v // 2) % 2 if labelled else pd.NA))
        for clip, frames in enumerate(CLIP_FRAMES):
            for f in frames:
                faces.append(dict(video_id=vid, frame_idx=f, face_idx=0, clip_idx=clip))
        if v % TWO_FACES_EVERY == 0:
            faces.append(dict(video_id=vid, frame_idx=CLIP_FRAMES[0][0], face_idx=1, clip_idx=0))
    faces = pd.DataFrame(faces).sort_values(FACE_KEY, ignore_index=True)
    faces["crop_idx"] = np.arange(len(faces))
    videos = pd.DataFrame(videos).astype({"label": "Int8", "fold": "Int64"})
    return faces, videos.drop(columns="fold"), videos[["video_id", "fold"]]


def make_crops(frames: pd.DataFrame) -> np.ndarray:
    """Noise; a fake's face carries a red square that jumps between consecutive frames (flicker)."""
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (len(frames), SIZE, SIZE, 3), dtype=np.uint8)
    for i, (label, frame) in enumerate(zip(frames["label"].fillna(0).to_numpy(int), frames["frame_idx"])):
        if label:
            at = SIZE // 4 + 2 * (frame % 2)
            crops[i, at:at + SIZE // 2, at:at + SIZE // 2, 0] = 255
    return crops


@pytest.fixture(scope="module")
def data():
    faces, videos, folds = make_tables()
    frames = frames_table(faces, videos, folds)
    return frames, make_crops(frames)


def run_units(units_dir: Path, scope) -> None:
    """The run the kill test interrupts: the sequence learner's two fold units."""
    faces, videos, folds = make_tables()
    frames = frames_table(faces, videos, folds)
    run_oof(frames, make_crops(frames), {"seq": SEQ}, {"seq": TRAIN}, units_dir, CROPS_KEY, unit_scope=scope, progress=False)


@pytest.fixture(scope="module")
def first_run(data, tmp_path_factory):
    frames, crops = data
    units_dir = tmp_path_factory.mktemp("units")
    return run_oof(frames, crops, LEARNERS, {k: TRAIN for k in LEARNERS}, units_dir, CROPS_KEY, progress=False)


# ---------------------------------------------------------------- clips in the face stage


def test_clip_indices_are_consecutive_evenly_spaced_and_never_overlap():
    idx, clip = clip_indices(100, 3, 4)
    assert idx == [0, 1, 2, 3, 48, 49, 50, 51, 96, 97, 98, 99] and clip == [0] * 4 + [1] * 4 + [2] * 4
    idx, clip = clip_indices(12, 3, 4)  # exactly as long as the clips: every frame, once
    assert idx == list(range(12)) and clip == [0] * 4 + [1] * 4 + [2] * 4
    idx, clip = clip_indices(10, 5, 4)  # too short for 5 clips: as many as fit
    assert idx == [0, 1, 2, 3, 6, 7, 8, 9] and clip == [0] * 4 + [1] * 4
    assert clip_indices(3, 2, 4) == ([0, 1, 2], [0, 0, 0])  # shorter than one clip
    assert clip_indices(0, 3, 4) == ([], [])
    assert clip_indices(300, 32, 1) == (sample_indices(300, 32), list(range(32)))  # clip_len 1: as before
    for n_stream in range(1, 60):
        idx, _ = clip_indices(n_stream, 4, 3)
        assert len(set(idx)) == len(idx) and idx == sorted(idx) and max(idx) < n_stream


@pytest.fixture(scope="module")
def clip_faces(tmp_path_factory):
    """A tiny generated corpus's faces in 2 clips of 3 consecutive frames per video."""
    from features.corpus.layouts import read_videos
    from features.synth import generate_corpus

    tmp = tmp_path_factory.mktemp("clips")
    generate_corpus(tmp / "corpus", SynthConfig.tiny(n_originals=1, n_test_originals=0), progress=False)
    videos = read_videos([tmp / "corpus"])
    cfg = FaceConfig(n_frames=2, clip_len=3, crop_size=48, workers=1, det_prob=0.7)
    return videos, cfg, tmp / "cache", extract_faces(videos, cfg, tmp / "cache", progress=False)


def test_faces_table_and_cache_carry_clips_of_consecutive_frames(clip_faces):
    videos, cfg, cache_dir, result = clip_faces
    faces = result.faces
    assert (result.status["status"] == "ok").sum() >= len(videos) - 1 and set(faces["clip_idx"]) == {0, 1}
    for (vid, clip, face), track in faces.groupby(["video_id", "clip_idx", "face_idx"]):
        frames = track["frame_idx"].to_numpy()
        assert np.all(np.diff(frames) == 1), (vid, clip, frames)  # consecutive frames of one clip
    for vid, rows in faces.groupby("video_id"):  # the main track follows one face through a clip: its
        main = rows[rows["face_idx"] == 0].sort_values("frame_idx")  # box barely moves frame to frame
        centre = (main[["x0", "y0"]].to_numpy() + main[["x1", "y1"]].to_numpy()) / 2
        same_clip = np.diff(main["clip_idx"].to_numpy()) == 0
        width = (main["x1"] - main["x0"]).to_numpy()[1:]
        assert (np.linalg.norm(np.diff(centre, axis=0), axis=1)[same_clip] < 0.25 * width[same_clip]).all(), vid
    again = extract_faces(videos, cfg, cache_dir, progress=False)  # read back from the cache
    pd.testing.assert_frame_equal(again.faces, faces)
    assert cache.read_faces(result.crops_dir, faces["video_id"].iloc[0])["clip_idx"].notna().all()


def test_single_frame_sampling_keeps_its_cache_key_and_old_tables_read(clip_faces):
    videos, cfg, cache_dir, _ = clip_faces
    assert "clip_len" not in cache_fields(replace(cfg, clip_len=1))
    assert cache_fields(cfg)["clip_len"] == 3
    single = extract_faces(videos, replace(cfg, clip_len=1), cache_dir, progress=False)
    vid = single.faces["video_id"].iloc[0]
    path = cache.faces_path(single.crops_dir, vid)
    cache.atomic_write_parquet(pd.read_parquet(path).drop(columns="clip_idx"), path)  # as cached before clips
    old = extract_faces(videos, replace(cfg, clip_len=1), cache_dir, progress=False)
    pd.testing.assert_frame_equal(old.faces, single.faces)  # each frame with a face is its own clip
    with pytest.raises(ValueError, match="clip_len > 1 only with decoder opencv"):
        FaceConfig(clip_len=2, decoder="pyav_ref")


def _static_scene(seed: int = 3):
    """A generated scene frozen in time: every per-frame motion, expression and light value held at
    its first frame's, and no sensor noise, so its original renders identical frames."""
    rng = np.random.default_rng(seed)
    cfg = SynthConfig.tiny(n_frames=6)
    scene = make_scene(rng, cfg, sample_identity(rng), (256, 192), 15)
    for track in scene.tracks:
        for name in ("cx", "cy", "roll", "zoom", "yaw", "pitch", "eye_open", "mouth_open", "gaze"):
            values = getattr(track, name)
            setattr(track, name, np.full_like(values, values[0]))
    scene.gain = np.full_like(scene.gain, scene.gain[0])
    scene.noise = 0.0
    return scene, sample_identity(rng)


def _write_intra(path: Path, frames_bgr: list[np.ndarray], fps: int) -> None:
    """Motion JPEG: every frame coded alone, so identical frames decode identically (an inter-frame
    codec such as mp4v lets a static scene drift by a few grey levels)."""
    h, w = frames_bgr[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for frame in frames_bgr:
        writer.write(frame)
    writer.release()


def test_delta_view_of_a_static_video_is_zero_and_of_a_flickering_swap_is_not(tmp_path):
    scene, donor = _static_scene()
    frames = render_scene(scene)
    flicker = FakeSpec(donor=donor, seam=0.0, colour=0.0, resolution=0.0, flicker=1.0, seed=7)
    _write_intra(tmp_path / "static.avi", camera(scene, frames), scene.fps)
    _write_intra(tmp_path / "flicker.avi", camera(scene, swap_frames(scene, frames, flicker)), scene.fps)
    videos = pd.DataFrame({"video_id": ["static.avi", "flicker.avi"], "root": str(tmp_path),
                           "path": ["static.avi", "flicker.avi"]})
    cfg = FaceConfig(n_frames=1, clip_len=6, crop_size=64, workers=1, det_prob=0.7)
    result = extract_faces(videos, cfg, tmp_path / "cache", progress=False)
    view = build_view("delta")
    change = {}
    for vid in videos["video_id"]:
        faces = result.faces[(result.faces["video_id"] == vid) & (result.faces["face_idx"] == 0)]
        assert len(faces) == cfg.clip_len, vid
        crops = np.stack([cache.CROP_STORES.get("npy").read(result.crops_dir, vid, 64)[i] for i in faces["crop_idx"]])
        pairs = torch.from_numpy(np.concatenate([crops[:-1], crops[1:]], axis=-1)).permute(0, 3, 1, 2).float() / 255
        change[vid] = (view(pairs) - HIGHPASS_MID).abs()
    assert change["static.avi"].max() == 0  # nothing moved: the view is mid-grey, exactly
    assert change["flicker.avi"].mean() > 0.01 and change["flicker.avi"].max() > 0.2


# ---------------------------------------------------------------- items, the sequence learner


def test_each_learner_reads_its_own_items(data):
    frames, crops = data
    assert (input_kind(LearnerConfig("meso4")), input_kind(DELTA), input_kind(SEQ)) == (FRAME, PAIR, TRACK)
    same, same_crops = learner_inputs(frames, crops, FRAME)
    assert same is frames and same_crops is crops
    pairs, pair_crops = learner_inputs(frames, crops, PAIR)
    n_tracks = N_VIDEOS * len(CLIP_FRAMES)
    assert len(pairs) == n_tracks and set(pairs["frame_idx"]) == {f for f, _ in CLIP_FRAMES}
    row = frames.set_index(FACE_KEY)["crop_idx"]
    for i in (0, len(pairs) - 1):
        key = tuple(pairs.loc[i, FACE_KEY])
        nxt = (key[0], key[1] + 1, key[2])
        np.testing.assert_array_equal(pair_crops[i], crops[[row[key], row[nxt]]])
    tracks, track_crops = learner_inputs(frames, crops, TRACK)
    lengths = track_crops.lengths()
    n_single = len(range(0, N_VIDEOS, TWO_FACES_EVERY))
    assert len(tracks) == n_tracks + n_single and sorted(set(lengths)) == [1, 2]
    assert (lengths == 1).sum() == n_single and (tracks.loc[lengths == 1, "face_idx"] == 1).all()
    assert not tracks.duplicated(FACE_KEY).any()
    assert input_kind(SEQ_DELTA) == PAIR_TRACK  # a sequence over the delta view: tracks of >= 2 faces
    pair_tracks, pt_crops = learner_inputs(frames, crops, PAIR_TRACK)
    assert len(pair_tracks) == n_tracks and set(pt_crops.lengths()) == {2}
    (steps, step_lengths), _ = pt_crops.collate([(torch.from_numpy(pt_crops[i]), torch.tensor(0.0)) for i in (0, 1)])
    assert steps.shape == (2, 2, SIZE, SIZE, 3) and step_lengths.tolist() == [1, 1]  # one pair per 2-face track
    missed = frames[~((frames["video_id"] == "v00.mp4") & (frames["frame_idx"] == CLIP_FRAMES[0][0] + 1))]
    gap = missed.assign(frame_idx=missed["frame_idx"].where(missed["video_id"] != "v00.mp4", missed["frame_idx"] * 2))
    for kind in (PAIR, PAIR_TRACK):  # a pair is one frame apart: a missed detection leaves no pair
        keys = set(map(tuple, learner_inputs(gap, crops[: len(gap)], kind)[0][FACE_KEY].to_numpy()))
        assert not any(v == "v00.mp4" for v, _, _ in keys), kind


@pytest.mark.parametrize("rnn,bidirectional,view", [("gru", True, "rgb"), ("lstm", False, "rgb"),
                                                    ("gru", True, "delta")])
def test_sequence_forward_over_unequal_tracks_matches_each_track_alone(data, rnn, bidirectional, view):
    frames, crops = data
    torch.manual_seed(0)
    cfg = replace(SEQ, view=view,
                  sequence=SequenceConfig(encoder="meso4", rnn=rnn, hidden=8, bidirectional=bidirectional))
    model = build_learner(cfg).eval()
    kind = input_kind(cfg)
    if kind == PAIR_TRACK:  # in every other video, a run of 3 faces (2 pairs) beside those of 2 (1 pair)
        longer = (frames["frame_idx"] == CLIP_FRAMES[1][0]) & (frames["video_id"].str[1:3].astype(int) % 2 == 0)
        frames = frames.assign(clip_idx=np.where(longer, 0, frames["clip_idx"]),
                               frame_idx=np.where(longer, CLIP_FRAMES[0][1] + 1, frames["frame_idx"]))
    _, tracks = learner_inputs(frames, crops, kind)
    batch = predict_logits(model, tracks, TRAIN)  # one batch of tracks of unequal lengths
    alone = np.concatenate([predict_logits(model, tracks[[i]], TRAIN) for i in range(len(tracks))])
    assert len(set(tracks.lengths())) == 2
    np.testing.assert_allclose(batch, alone, rtol=1e-5, atol=1e-6)
    x = torch.randn(5, 3, SIZE, SIZE)
    with torch.no_grad():  # order in the batch does not matter either, and padding never reaches it
        z = model(x, torch.tensor([3, 2]))
        swapped = model(torch.cat([x[3:], x[:3]]), torch.tensor([2, 3]))
    torch.testing.assert_close(z, swapped.flip(0), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="frames for tracks"):
        model(x, torch.tensor([3, 3]))


def test_sequence_learner_config_errors():
    with pytest.raises(ValueError, match="valid: meso4, mesoinception4"):
        build_learner(replace(SEQ, sequence=SequenceConfig(encoder="spectrum")))
    with pytest.raises(ValueError, match="valid: gru, lstm"):
        SequenceConfig(rnn="transformer")


# ---------------------------------------------------------------- out-of-fold units


def test_every_labelled_item_is_predicted_once_by_a_model_that_never_saw_it(data, first_run):
    frames, _ = data
    fp = first_run.frame_preds
    fold_of = dict(zip(frames["video_id"], frames["fold"]))
    for learner, kind in (("seq", TRACK), ("delta", PAIR)):
        items, _ = learner_inputs(frames, None, kind)
        rows = fp[fp["learner"] == learner]
        oof, test = rows[rows["fold"].notna()], rows[rows["fold"].isna()]
        merged = oof.merge(items[items["fold"].notna()], on=FACE_KEY, suffixes=("", "_true"), validate="one_to_one")
        assert len(merged) == len(oof) == items["fold"].notna().sum()
        assert (merged["fold"] == merged["fold_true"]).all()
        assert sorted(map(tuple, test[FACE_KEY].to_numpy())) == sorted(map(tuple, items.loc[items["fold"].isna(), FACE_KEY].to_numpy()))
    for r in first_run.units:
        assert all(fold_of[v] != r.unit.fold for v in r.info["train_video_ids"])
    for r in (r for r in first_run.units if r.unit.learner == "seq"):  # throughput counts faces, not tracks
        n_items, n_faces = r.info["n_train"], ((frames["fold"] != r.unit.fold) & frames["fold"].notna()).sum()
        steps = n_items // TRAIN.batch_size  # the loader drops a last, partial batch
        assert steps * TRAIN.batch_size < r.info["history"][0]["train_samples"] <= n_faces


def test_check_oof_knows_each_learners_items(data, first_run):
    frames, _ = data
    fp = first_run.frame_preds
    check_oof(fp, frames, first_run.units)
    seq_oof = fp.index[(fp["learner"] == "seq") & fp["fold"].notna()]
    with pytest.raises(OOFIntegrityError, match="track item"):
        check_oof(fp.drop(index=seq_oof[0]), frames, first_run.units)
    last_frames = fp.assign(frame_idx=fp["frame_idx"] + 1)  # pairs keyed by their second face: wrong items
    with pytest.raises(OOFIntegrityError, match="pair item"):
        check_oof(pd.concat([fp[fp["learner"] != "delta"], last_frames[last_frames["learner"] == "delta"]]),
                  frames, first_run.units)


def test_sequence_units_resume_after_a_kill(data, tmp_path):
    frames, crops = data
    units_dir = tmp_path / "units"
    done = kill_during_second_unit("test_temporal", units_dir, tmp_path)
    assert len(done) == 1
    resumed = run_oof(frames, crops, {"seq": SEQ}, {"seq": TRAIN}, units_dir, CROPS_KEY, progress=False)
    assert [r.cached for r in resumed.units] == [True, False]
    fresh = run_oof(frames, crops, {"seq": SEQ}, {"seq": TRAIN}, tmp_path / "fresh", CROPS_KEY, progress=False)
    pd.testing.assert_frame_equal(resumed.frame_preds, fresh.frame_preds, check_exact=True)


def test_frame_learner_unit_keys_ignore_clips(data, tmp_path):
    """Clips change what pair and track learners read, not what a frame learner reads: its units
    (and those trained before clips existed) stay valid."""
    from base_learners.oof import plan_units

    frames, _ = data
    learners = {"m": LearnerConfig("meso4", input_size=SIZE), **LEARNERS}
    tcfgs = {k: TRAIN for k in learners}
    base = {(u.learner, u.fold): u.key for u in plan_units(frames, learners, tcfgs, tmp_path, CROPS_KEY)}
    reclipped = frames.assign(clip_idx=frames["frame_idx"])
    other = {(u.learner, u.fold): u.key for u in plan_units(reclipped, learners, tcfgs, tmp_path, CROPS_KEY)}
    without = {(u.learner, u.fold): u.key for u in plan_units(frames.drop(columns="clip_idx"), learners, tcfgs,
                                                               tmp_path, CROPS_KEY)}
    assert all(base[k] == other[k] == without[k] for k in base if k[0] == "m")
    assert all(base[k] != other[k] for k in base if k[0] != "m")


# ---------------------------------------------------------------- through both pipelines and the detector

TEMPORAL_OOF = ("faces.n_frames=2", "faces.clip_len=3", "faces.workers=1", "select=[meso4, delta, seq]",
                "learners.delta={name: meso4, input_size: 32, view: delta}",
                "learners.seq={name: sequence, input_size: 32, sequence: {encoder: meso4, hidden: 8}}")


def test_temporal_learners_run_through_oof_stack_and_the_packaged_detector(tmp_path, monkeypatch):
    """oof.py trains the pair and track learners on clips, stack.py stacks their video features
    (a named `frames` subset beside them) and packages them, and the detector scores new videos
    with them exactly as submission.csv did."""
    import json

    from tiny_runs import tiny_oof, tiny_stack

    import mlflow
    from features.synth import generate_corpus

    corpus = generate_corpus(tmp_path / "corpus", SynthConfig.tiny(n_originals=6), progress=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = tiny_oof([corpus], tmp_path / "work", uri, TEMPORAL_OOF)
    fp = run.frame_preds
    assert set(fp["learner"]) == {"meso4", "delta", "seq"}
    per_video = fp.groupby("learner")["video_id"].count()
    assert per_video["meso4"] > per_video["delta"] > per_video["seq"]  # faces > pairs > tracks
    res = tiny_stack(run, tmp_path / "stack", uri, ("sweep.subsets={pair: [meso4, delta, absent], solo: [seq]}",))
    subsets = {r.spec.subset: r.spec.learners for r in res.results if r.spec.meta == "logreg"}
    assert subsets == {"all": ("delta", "meso4", "seq"), "pair": ("delta", "meso4")}  # solo: one learner, skipped
    assert {"seq__mean", "delta__mean", "meso4__mean"} <= set(res.video_features.columns)
    mlflow.set_tracking_uri(uri)
    monkeypatch.setenv("FAKESTACK_ALLOWED_ROOTS", str(corpus))  # path requests are refused without it
    model = mlflow.pyfunc.load_model(res.detector_uri)
    meta = json.loads((corpus / "metadata.json").read_text())
    paths = [str(corpus / name) for name in res.submission["filename"] if name in meta]
    out = model.predict(pd.DataFrame({"path": paths}))
    np.testing.assert_allclose(out["p_fake"].to_numpy(), res.submission["label"].to_numpy(), rtol=0, atol=1e-6)
    assert [c for c in out.columns if c.startswith("score_")] == [f"score_{n}" for n in res.best.ensemble.meta_.learners_]


@pytest.mark.parametrize("settings,message", [
    (["learners.d={name: meso4, view: delta}", "select=[d]"], "faces.clip_len >= 2"),
    (["faces.clip_len=2", "faces.decoder=pyav_ref"], "clip_len > 1 only with decoder opencv"),
    (["learners.s={name: sequence, sequence: {encoder: spectrum}}", "select=[s]"], "unknown encoder 'spectrum'"),
    (["learners.s={name: sequence, sequence: {rnn: transformer}}", "select=[s]"], "valid: gru, lstm"),
    (["learners.d={name: meso4, view: sobel}", "select=[d]"], "unknown view 'sobel'"),
])
def test_temporal_setting_mistakes_exit_2_with_one_message(settings, message, tmp_path, capsys):
    from pipelines import oof

    argv = ["--workdir", str(tmp_path), "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]
    with pytest.raises(SystemExit) as exit_:
        oof.main(argv + [arg for s in settings for arg in ("--set", s)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "corpus").exists()  # stopped before any work


def test_a_pair_learner_without_pairs_stops_before_any_unit(data):
    """Faces that never show in two consecutive frames of a clip (a face set of one image per
    video) give a pair learner no items: one message naming it, before any unit trains."""
    from features.common import ConfigError
    from pipelines.oof import check_items

    frames, _ = data
    check_items(frames, LEARNERS)  # two consecutive frames per clip: items in every fold
    single = frames.assign(clip_idx=np.arange(len(frames)))  # every face its own clip
    check_items(single, {"seq": SEQ})  # tracks of one face are still tracks
    with pytest.raises(ConfigError, match="learner 'delta' .pair items. has none in fold"):
        check_items(single, LEARNERS)


def test_sequence_encoder_starts_from_a_frame_learners_checkpoint(tmp_path):
    frame = build_learner(LearnerConfig("meso4", input_size=SIZE))
    torch.save(frame.state_dict(), tmp_path / "meso4.pt")
    seq = build_learner(replace(SEQ, sequence=replace(SEQ.sequence, encoder_weights=str(tmp_path / "meso4.pt"))))
    mine = seq.encoder.state_dict()
    assert all(torch.equal(mine[k], v) for k, v in frame.state_dict().items())
    fresh = build_learner(SEQ).encoder.state_dict()
    assert not all(torch.equal(fresh[k], v) for k, v in frame.state_dict().items())


def test_detector_tells_a_pair_learner_without_pairs_from_drift():
    """A batch where no face shows in two consecutive frames has no delta columns: NaN, as for a
    video without faces. A frame learner's column missing once faces were scored is drift."""
    from pipelines.scoring.detector import Detector, DetectorSpec, LearnerSpec

    learners = {"meso4": LearnerSpec({"name": "meso4"}, {}, [0]),
                "delta": LearnerSpec({"name": "meso4", "view": "delta"}, {}, [0])}
    spec = DetectorSpec(faces={}, aggregate={}, learners=learners,
                        columns=["n_faces", "meso4__mean", "meso4__max", "delta__mean"])
    detector = Detector(spec, ensemble=None, checkpoints=".")
    vf = pd.DataFrame({"n_faces": [3.0], "meso4__mean": [0.9], "meso4__max": [0.95]})
    features = detector._features(1, pd.Index([0]), vf)
    assert features.loc[0, "meso4__mean"] == 0.9 and np.isnan(features.loc[0, "delta__mean"])
    with pytest.raises(KeyError, match="meso4__max"):  # a frame learner's stat gone: drift
        detector._features(1, pd.Index([0]), vf.drop(columns="meso4__max"))
    with pytest.raises(KeyError, match="meso4__mean"):  # pairs scored but the frame learner has none
        detector._features(1, pd.Index([0]), vf.drop(columns=["meso4__mean", "meso4__max"]).assign(delta__mean=0.5))
    no_faces = detector._features(1, pd.Index([0]), pd.DataFrame({"n_faces": [0.0]}))
    assert no_faces.loc[0, ["meso4__mean", "meso4__max", "delta__mean"]].isna().all()
