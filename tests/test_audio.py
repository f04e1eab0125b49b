"""Soundtracks: decoding statuses, frame-aligned windows, the cache, log-mel, the audio CNN, synthetic
voices and remuxing. Tiny clips written by OpenCV, their audio added by features.synth.sound.add_audio."""

from __future__ import annotations

import dataclasses
import json

import av
import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from base_learners.audio import WINDOW_PREDS_COLUMNS, AudioCNN, AudioTrainConfig, fit_audio_cnn, predict_audio_logits, train_predict_fold
from features import audio as A
from features.aggregate import AggregateConfig, learner_stats
from features.synth import sound as S

FPS, N_FRAMES, W, H = 25, 50, 64, 48  # a 2 s clip
SR = 16_000
CFG = A.AudioConfig(n_mels=32, window_s=0.5, min_duration_s=0.5)


def write_clip(path, n=N_FRAMES):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (W, H))
    rng = np.random.default_rng(0)
    for _ in range(n):
        writer.write(rng.integers(0, 255, (H, W, 3), dtype=np.uint8))
    writer.release()
    return path


def corrupt_audio(src, dst):
    """Copy `src` with every audio packet's payload replaced by noise: the container opens, the
    audio decoder fails."""
    rng = np.random.default_rng(1)
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        for packet in inp.demux():
            if packet.dts is None:
                continue
            target = streams[packet.stream.index]
            if packet.stream.type == "audio":
                bad = av.Packet(rng.integers(0, 256, packet.size, dtype=np.uint8).tobytes())
                bad.pts, bad.dts, bad.time_base = packet.pts, packet.dts, packet.time_base
                packet = bad
            packet.stream = target
            out.mux(packet)
    return dst


def ramp(seconds, rate=SR):
    """Each sample's value is its own time (scaled to [0, 0.9]): a window's centre tells where it was cut."""
    return (np.arange(int(seconds * rate)) / (seconds * rate) * 0.9).astype(np.float32)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("audio_clips")
    silent = write_clip(root / "silent.mp4")
    rng = np.random.default_rng(0)
    voice = S.sample_voice(rng)
    speech = S.speak(voice, S.plan_speech(voice, N_FRAMES / FPS, rng), rng, SR)
    S.add_audio(silent, root / "aac.mp4", speech.audio, SR, "aac")
    S.add_audio(silent, root / "ramp.mov", ramp(N_FRAMES / FPS), SR, "pcm_s16le")
    S.add_audio(silent, root / "short.mp4", speech.audio[: SR // 10], SR, "aac")
    corrupt_audio(root / "aac.mp4", root / "broken.mp4")
    (root / "truncated.mp4").write_bytes((root / "aac.mp4").read_bytes()[:2000])
    names = ["silent.mp4", "aac.mp4", "ramp.mov", "short.mp4", "broken.mp4", "truncated.mp4", "gone.mp4"]
    videos = pd.DataFrame({"video_id": [n.split(".")[0] for n in names], "root": str(root), "path": names})
    return root, videos


# ---- decoding and statuses -------------------------------------------------------------------------

def test_statuses_cover_every_video(clips, tmp_path):
    root, videos = clips
    result = A.audio_table(videos, CFG, tmp_path / "cache")
    t = result.table.set_index("video_id")
    assert list(result.table["video_id"]) == list(videos["video_id"])
    assert list(result.table.columns) == list(A.TABLE_COLUMNS)
    expected = {"silent": "no_audio", "aac": "ok", "ramp": "ok", "short": "short_audio",
                "broken": "decode_error", "truncated": "decode_error", "gone": "missing_file"}
    assert t["status"].to_dict() == expected
    assert t.loc["broken", "message"] and t.loc["truncated", "message"]  # the reason is kept
    assert t.loc["aac", "duration_s"] == pytest.approx(N_FRAMES / FPS, abs=0.1)
    assert t.loc["aac", "n_windows"] == A.DEFAULT_N_FRAMES and t.loc["silent", "n_windows"] == 0
    assert np.isnan(t.loc["silent", "duration_s"])


def test_decode_resamples_to_mono_at_config_rate(clips):
    root, _ = clips
    status, samples = A.decode_audio("ramp", root / "ramp.mov", A.AudioConfig(sample_rate=8000))
    assert status["status"] == "ok" and samples.dtype == np.float32 and samples.ndim == 1
    assert len(samples) == pytest.approx(8000 * N_FRAMES / FPS, rel=0.01)
    assert status["fps"] == pytest.approx(FPS)


# ---- windows ----------------------------------------------------------------------------------------

def test_windows_centre_on_frame_times(clips):
    """On the time-ramp track each window's centre sample encodes the time it was cut at."""
    root, _ = clips
    status, samples = A.decode_audio("ramp", root / "ramp.mov", CFG)
    frame_idx = [10, 20, 30, 40]
    windows, kept = A.windows_of(status, samples, frame_idx, CFG)
    assert windows.shape == (4, CFG.window_samples) and list(kept) == frame_idx
    centre_value = windows[:, CFG.window_samples // 2]
    seconds = N_FRAMES / FPS
    assert centre_value / 0.9 * seconds == pytest.approx(np.array(frame_idx) / FPS, abs=3 / SR)


def test_windows_stay_inside_audio_and_drop_frames_past_its_end():
    samples = ramp(1.0)  # 1 s of audio under a longer video
    marker = {"video_id": "v", "fps": 10.0, "offset_s": 0.0}
    windows, kept = A.windows_of(marker, samples, [0, 9, 15], CFG)
    assert list(kept) == [0, 9]  # frame 15 is at 1.5 s, after the audio
    assert windows[0, 0] == samples[0] and windows[1, -1] == samples[-1]  # shifted in, not zero-padded


# ---- cache ------------------------------------------------------------------------------------------

def test_cache_resumes_without_decoding(clips, tmp_path, monkeypatch):
    root, videos = clips
    first = A.audio_table(videos, CFG, tmp_path)
    markers = sorted(first.audio_dir.glob(f"*{A.MARKER_SUFFIX}"))
    assert len(markers) == len(videos) - 1  # missing_file is not cached
    mtimes = {p: p.stat().st_mtime_ns for p in first.audio_dir.iterdir()}
    calls = []
    monkeypatch.setattr(A, "decode_audio", lambda *a, **k: calls.append(a) or pytest.fail("decoded again"))
    second = A.audio_table(videos, CFG, tmp_path)
    assert calls == [] and {p: p.stat().st_mtime_ns for p in first.audio_dir.iterdir()} == mtimes
    pd.testing.assert_frame_equal(first.table, second.table)
    assert json.loads((first.audio_dir / A.CONFIG_FILE).read_text())["n_mels"] == CFG.n_mels


def test_cache_redoes_an_unfinished_video_only(clips, tmp_path, monkeypatch):
    root, videos = clips
    one = videos[videos["video_id"].isin(["aac", "ramp"])]
    first = A.audio_table(one, CFG, tmp_path)
    A.marker_path(first.audio_dir, "ramp").unlink()  # killed before its marker was written
    decoded, real = [], A.decode_audio
    monkeypatch.setattr(A, "decode_audio", lambda *a, **k: decoded.append(a[0]) or real(*a, **k))
    again = A.audio_table(one, CFG, tmp_path)
    assert decoded == ["ramp"]
    pd.testing.assert_frame_equal(first.table, again.table)
    assert A.audio_dir_for(tmp_path, CFG) != A.audio_dir_for(tmp_path, A.AudioConfig(n_mels=40))


def test_frames_table_sets_the_windows(clips, tmp_path):
    root, videos = clips
    frames = pd.DataFrame({"video_id": ["aac", "aac", "aac", "ramp"], "frame_idx": [0, 25, 49, 3]})
    result = A.audio_table(videos, CFG, tmp_path, frames=frames)
    assert result.table.set_index("video_id")["n_windows"].to_dict()["aac"] == 3
    windows, index = A.collect_windows(result, CFG)
    assert windows.shape == (4, CFG.window_samples)
    assert list(index.columns) == A.WINDOW_INDEX_COLUMNS and list(index["frame_idx"]) == [0, 25, 49, 3]


# ---- log-mel ------------------------------------------------------------------------------------------

def test_log_mel_shapes_finite_and_tone_in_its_band():
    t = np.arange(CFG.window_samples) / SR
    tone = 0.5 * np.sin(2 * np.pi * 1000 * t)
    mel = A.log_mel(np.stack([tone, np.zeros_like(tone)]), CFG)
    assert mel.dtype == torch.float32 and mel.shape == (2, CFG.n_mels, 1 + CFG.window_samples // CFG.hop_length)
    assert torch.isfinite(mel).all()
    fb = A.mel_filterbank(SR, CFG.n_fft, CFG.n_mels, CFG.f_min, CFG.top_hz)
    centre_hz = (fb * torch.linspace(0, SR / 2, fb.shape[1])).sum(1)  # unit-area filters: mean frequency
    assert (fb.sum(1) > 0).all()
    peak_band = int(mel[0].mean(1).argmax())
    assert abs(centre_hz[peak_band] - 1000) < 150
    assert A.log_mel(np.zeros((0, CFG.window_samples)), CFG).shape[0] == 0


# ---- learner ----------------------------------------------------------------------------------------------

def _voice_windows(voice, n_videos, rng, kind):
    """n_videos 2 s clips of `voice`, two windows each centred on a syllable (a window inside a pause
    holds nothing to tell voices apart), as log-mel."""
    mels, ids = [], []
    for i in range(n_videos):
        plan = S.plan_speech(voice, 2.0, rng)
        speech = S.speak(voice, plan, rng, SR)
        middles = plan.onsets + plan.lengths / 2
        frame_idx = np.round(middles[[0, len(middles) // 2]] * FPS).astype(int)
        w, kept = A.windows_of({"video_id": f"{kind}{i}", "fps": FPS, "offset_s": 0.0}, speech.audio, frame_idx, CFG)
        mels.append(A.log_mel(w, CFG))
        ids += [(f"{kind}{i}", k, f) for k, f in enumerate(kept)]
    return torch.cat(mels), ids


def test_cnn_separates_a_voice_from_its_swap():
    """Two clearly different voices (a low long-tract one, a high short-tract one): any voice pair
    is not separable from a dozen clips, but this one must be."""
    rng = np.random.default_rng(3)
    real_voice = dataclasses.replace(S.sample_voice(rng), f0=S.F0_RANGE[0] * 1.2, tract=S.TRACT_RANGE[1] * 0.95)
    donor = dataclasses.replace(S.sample_voice(rng), f0=S.F0_RANGE[1] * 0.85, tract=S.TRACT_RANGE[0] * 1.05)
    real, real_ids = _voice_windows(real_voice, 12, rng, "real")
    swapped, swap_ids = _voice_windows(donor, 12, rng, "swap")
    mel = torch.cat([real, swapped])
    index = pd.DataFrame(real_ids + swap_ids, columns=A.WINDOW_INDEX_COLUMNS)
    labels = pd.Series({v: float(v.startswith("swap")) for v in index["video_id"]})
    videos = sorted(labels.index)
    held = [v for v in videos if v.endswith(("0", "1", "2"))]
    model, preds, history = train_predict_fold(mel, index, labels, [v for v in videos if v not in held], held,
                                               fold=0, cfg=AudioTrainConfig(epochs=12, batch_size=8, channels=(8, 16)))
    assert isinstance(model, AudioCNN) and history[-1]["train_loss"] < history[0]["train_loss"]
    assert list(preds.columns) == WINDOW_PREDS_COLUMNS and set(preds["video_id"]) == set(held)
    accuracy = ((preds["prob"] > 0.5) == preds["video_id"].map(labels).astype(bool)).mean()
    assert accuracy >= 0.9
    stats = learner_stats(preds.drop(columns="window_idx"), AggregateConfig())  # aggregates like frames
    assert len(stats) == len(held)


def test_cnn_rejects_wrong_input_and_training_leak():
    with pytest.raises(ValueError, match="log-mel"):
        AudioCNN(32)(torch.zeros(2, 40, 10))
    index = pd.DataFrame({"video_id": ["a", "b"], "window_idx": [0, 0], "frame_idx": [0, 0]})
    with pytest.raises(ValueError, match="both"):
        train_predict_fold(torch.zeros(2, 32, 10), index, pd.Series({"a": 0.0, "b": 1.0}), ["a", "b"], ["a"], 0,
                           AudioTrainConfig(epochs=1))


# ---- synthetic voices and remux -----------------------------------------------------------------------------

def test_voices_are_per_identity_and_envelope_drives_the_mouth():
    from features.synth.identity import sample_identity
    ident = sample_identity(np.random.default_rng(0))
    assert S.voice_of(ident) == S.voice_of(ident)
    assert S.voice_of(ident) != S.voice_of(sample_identity(np.random.default_rng(1)))
    rng = np.random.default_rng(0)
    voice = S.voice_of(ident)
    plan = S.plan_speech(voice, 2.0, rng)
    speech, swap = S.speak(voice, plan, rng), S.voice_swap(plan, S.sample_voice(rng), rng)
    assert np.isfinite(speech.audio).all() and np.abs(speech.audio).max() == pytest.approx(S.PEAK, rel=1e-3)
    np.testing.assert_array_equal(speech.envelope, swap.envelope)  # same words, same times: lips still match
    mouth = S.mouth_track(speech, N_FRAMES, FPS)
    assert mouth.shape == (N_FRAMES,) and mouth.min() >= 0 and mouth.max() <= 1 and mouth.max() > 0.3
    other = S.speak(voice, S.plan_speech(voice, 2.0, np.random.default_rng(9)), rng)
    assert len(S.fit_length(other.audio, 100)) == 100 and len(S.fit_length(other.audio[:10], 100)) == 100


def test_resynthesis_band_limits_the_spectrum():
    rng = np.random.default_rng(0)
    voice = S.sample_voice(rng)
    speech = S.speak(voice, S.plan_speech(voice, 2.0, rng), rng)
    cutoff, margin_hz = 4000.0, 200.0
    fake = S.resynthesise(speech.audio, SR, rng, cutoff_hz=cutoff)
    high = lambda x: np.square(np.abs(np.fft.rfft(x)))[int(len(x) * (cutoff + margin_hz) / SR):].sum()  # noqa: E731
    assert fake.shape == speech.audio.shape and high(fake) < 0.01 * high(speech.audio)
    assert np.corrcoef(fake, speech.audio)[0, 1] > 0.9  # the same speech, with traces


@pytest.mark.parametrize("codec, suffix", [("aac", ".mp4"), ("pcm_s16le", ".mov")])
def test_remux_copies_video_packets_byte_for_byte(clips, tmp_path, codec, suffix):
    root, _ = clips
    dst = S.add_audio(root / "silent.mp4", tmp_path / f"out{suffix}", ramp(1.0), SR, codec)

    def video_packets(path):
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            return [(bytes(p), float(p.pts * p.time_base)) for p in c.demux(s) if p.dts is not None]

    assert video_packets(dst) == video_packets(root / "silent.mp4")
    with av.open(str(dst)) as c:
        assert c.streams.audio[0].codec_context.name == codec
    with pytest.raises(ValueError, match="codec"):
        S.add_audio(root / "silent.mp4", tmp_path / "x.mp4", ramp(1.0), SR, "mp3")


def test_cnn_training_is_deterministic_for_a_seed():
    mel = torch.randn(12, 32, 20, generator=torch.Generator().manual_seed(0))
    labels = np.array([0.0, 1.0] * 6)
    cfg = AudioTrainConfig(epochs=2, batch_size=4, channels=(4,))
    runs = [predict_audio_logits(fit_audio_cnn(mel, labels, cfg)[0], mel) for _ in range(2)]
    np.testing.assert_array_equal(runs[0], runs[1])
