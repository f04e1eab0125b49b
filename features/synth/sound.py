"""Procedural voices for the synthetic corpus, audio fakes, and adding a soundtrack to a written video.

Why it looks like this:

* **Source-filter speech.** A voice is a glottal pulse train (Rosenberg pulses at a pitch that
  rises and falls) through a cascade of formant resonators (Klatt's two-pole digital resonators),
  with breath noise. What one voice has that another lacks is exactly what a soundtrack learner can
  pick up: pitch, vocal-tract length (all formants scaled together), formant bandwidths,
  breathiness and the glottal pulse's shape. Vowels change the formants syllable by syllable.
* **What is said is separate from who says it.** A `SpeechPlan` (when each syllable starts, its
  length, vowel and stress) is drawn from a voice's syllable rate; `speak(voice, plan)` renders
  it. A voice swap renders the original's plan with another voice, so the lips still follow the
  sound and only the voice changes, as in DFDC's swapped-audio fakes. The plan's amplitude envelope
  is what a talking head's mouth follows (`mouth_track`), so a lip-sync fake (the audio of another
  clip, `fit_length`) is one whose envelope no longer matches the mouth.
* **Vocoder traces.** `resynthesise` mimics a neural vocoder / codec chain: the spectrum is
  band-limited (nothing above a cutoff) and its log magnitude quantised in steps, the traces a
  spectrogram learner sees even when the voice is the same person's.
* **Remux, never re-encode.** OpenCV writes the corpus's videos and carries no audio. `add_audio`
  copies the video packets byte for byte into a new container beside an AAC or PCM track, so a
  video's pixels (and every figure computed from them) do not change when a soundtrack is added.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from scipy.signal import istft, lfilter, stft

from features.common import atomic_write_with, config_hash
from features.synth.config import FAKE_KINDS  # noqa: F401 - re-exported: what a fake changed

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
# vowel formants F1-F3 in Hz of an average adult (Peterson & Barney 1952, rounded)
VOWELS = np.array([(730, 1090, 2440), (530, 1840, 2480), (270, 2290, 3010), (570, 840, 2410), (300, 870, 2240)],
                  dtype=np.float64)
FORMANT_BANDWIDTHS = np.array([80.0, 100.0, 150.0])  # Hz, scaled per voice
F0_RANGE = (85.0, 255.0)  # Hz: low male to high female pitch
PITCH_RANGE = (0.05, 0.2)  # relative intonation excursion
INTONATION_HZ = 0.7  # pitch rises and falls about once a phrase
TRACT_RANGE = (0.85, 1.25)  # formant scale: shorter vocal tracts have higher formants
BANDWIDTH_RANGE = (0.8, 1.6)
SYLLABLE_RATE_RANGE = (3.0, 6.0)  # syllables per second
BREATH_RANGE = (0.0, 0.3)  # aspiration noise relative to the voiced source
OPEN_QUOTIENT_RANGE = (0.4, 0.7)  # open share of a glottal period
PULSE_RISE_SHARE = 0.6  # Rosenberg: opening takes this share of the open phase
JITTER = 0.01  # pitch wobble (relative standard deviation) ...
WOBBLE_POLE = 0.99  # ... low-passed: it wanders over ~100 samples, a few glottal cycles
SYLLABLE_JITTER = 0.3  # syllable intervals vary +-30 %
SYLLABLE_FILL = 0.8  # a syllable sounds for this share of its interval
PHRASE_MEAN_S = 2.0  # mean length of a phrase (exponential) ...
PAUSE_RANGE_S = (0.2, 0.8)  # ... and of the pause after it
STRESS_RANGE = (0.6, 1.0)
FRICATIVE_S = 0.05  # a consonant's noise burst at each syllable onset ...
FRICATIVE_GAIN = 0.15  # ... relative to the peak of the voiced part: speech's energy above 4 kHz
PEAK = 0.5  # output peak amplitude: headroom for AAC
MAX_FORMANT_SHARE = 0.45  # of the sample rate: resonators stay below Nyquist
VOCODER_FFT, VOCODER_HOP = 512, 128
VOCODER_CUTOFF_HZ = (3000.0, 5500.0)  # band limit drawn in this range
VOCODER_STEP_DB = (2.0, 6.0)  # log-magnitude quantisation step drawn in this range
DB = 20.0  # amplitude dB per decade
MAG_FLOOR = 1e-8
AUDIO_CHUNK = 1024  # samples per encoded frame (AAC's frame size)
PCM_SCALE = 32767
AUDIO_CODECS = {"aac": "fltp", "pcm_s16le": "s16"}  # codec -> the sample format its encoder takes


@dataclass(frozen=True)
class Voice:
    """Everything that makes one procedural voice sound unlike another."""

    f0: float  # mean pitch, Hz
    pitch_range: float
    tract: float
    bandwidth: float
    syllable_rate: float
    breath: float
    open_quotient: float


@dataclass(frozen=True)
class SpeechPlan:
    """What is said and when: syllable onsets and lengths (s), vowel index and stress of each."""

    duration_s: float
    onsets: np.ndarray
    lengths: np.ndarray
    vowels: np.ndarray
    stress: np.ndarray


@dataclass
class Speech:
    """Rendered speech: mono float32 audio and its amplitude envelope in [0, 1] at the same rate."""

    audio: np.ndarray
    envelope: np.ndarray
    sample_rate: int


def sample_voice(rng: np.random.Generator) -> Voice:
    u = lambda r: float(rng.uniform(*r))  # noqa: E731 - one draw from a named range
    return Voice(u(F0_RANGE), u(PITCH_RANGE), u(TRACT_RANGE), u(BANDWIDTH_RANGE), u(SYLLABLE_RATE_RANGE),
                 u(BREATH_RANGE), u(OPEN_QUOTIENT_RANGE))


def voice_of(identity) -> Voice:
    """The voice of a synthetic identity (any dataclass): the same person always sounds the same."""
    return sample_voice(np.random.default_rng(int(config_hash(identity), 16)))


def plan_speech(voice: Voice, duration_s: float, rng: np.random.Generator) -> SpeechPlan:
    """Phrases of syllables at the voice's rate, separated by pauses."""
    onsets, t = [], float(rng.uniform(0, PAUSE_RANGE_S[1]))
    while t < duration_s:
        phrase_end = t + rng.exponential(PHRASE_MEAN_S)
        while t < min(phrase_end, duration_s):
            onsets.append(t)
            t += (1 + rng.uniform(-SYLLABLE_JITTER, SYLLABLE_JITTER)) / voice.syllable_rate
        t += rng.uniform(*PAUSE_RANGE_S)
    onsets = np.asarray(onsets)
    gaps = np.diff(np.append(onsets, duration_s))
    lengths = np.minimum(SYLLABLE_FILL / voice.syllable_rate, gaps)
    return SpeechPlan(duration_s, onsets, lengths, rng.integers(len(VOWELS), size=len(onsets)),
                      rng.uniform(*STRESS_RANGE, size=len(onsets)))


def plan_envelope(plan: SpeechPlan, sample_rate: int) -> np.ndarray:
    """Amplitude in [0, 1] per sample: a raised-cosine bump per syllable, scaled by its stress."""
    n = int(round(plan.duration_s * sample_rate))
    env = np.zeros(n, np.float64)
    for onset, length, stress in zip(plan.onsets, plan.lengths, plan.stress):
        a, b = int(onset * sample_rate), min(int((onset + length) * sample_rate), n)
        if b > a:
            env[a:b] = np.maximum(env[a:b], stress * np.hanning(b - a + 2)[1:-1])
    return env


def glottal_source(voice: Voice, n: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Differentiated Rosenberg pulses (the glottal flow as the lips radiate it) plus breath noise."""
    t = np.arange(n) / sample_rate
    wobble = JITTER * lfilter([np.sqrt(1 - WOBBLE_POLE ** 2)], [1, -WOBBLE_POLE], rng.standard_normal(n))
    intonation = voice.pitch_range * np.sin(2 * np.pi * INTONATION_HZ * t + rng.uniform(0, 2 * np.pi))
    f0 = voice.f0 * (1 + intonation) * (1 + wobble)
    phase = np.cumsum(f0 / sample_rate) % 1.0
    rise, fall = PULSE_RISE_SHARE * voice.open_quotient, (1 - PULSE_RISE_SHARE) * voice.open_quotient
    flow = np.where(phase < rise, 0.5 * (1 - np.cos(np.pi * phase / rise)),
                    np.where(phase < rise + fall, np.cos(0.5 * np.pi * (phase - rise) / fall), 0.0))
    voiced = np.diff(flow, prepend=0.0)
    return voiced / (np.abs(voiced).max() + MAG_FLOOR) + voice.breath * flow * rng.standard_normal(n)


def resonator(freq: float, bandwidth: float, sample_rate: int) -> tuple[list, list]:
    """Klatt's two-pole resonator at `freq` Hz (unit gain at 0 Hz) as lfilter (b, a)."""
    c = -np.exp(-2 * np.pi * bandwidth / sample_rate)
    b = 2 * np.exp(-np.pi * bandwidth / sample_rate) * np.cos(2 * np.pi * freq / sample_rate)
    return [1 - b - c], [1.0, -b, -c]


def formant_filter(source: np.ndarray, voice: Voice, plan: SpeechPlan, sample_rate: int) -> np.ndarray:
    """The source through the formants of each syllable's vowel, filter state carried across
    syllables (coefficients change at syllable onsets, where the envelope is zero). Before the first
    onset the first syllable's vowel is used."""
    onsets = (plan.onsets * sample_rate).astype(int)
    bounds = np.unique(np.clip(np.concatenate([[0], onsets, [len(source)]]), 0, len(source)))
    out, state = np.empty_like(source), [np.zeros(2) for _ in FORMANT_BANDWIDTHS]
    for a, b in zip(bounds[:-1], bounds[1:]):
        syllable = max(int(np.searchsorted(onsets, a, side="right")) - 1, 0)
        vowel = VOWELS[plan.vowels[syllable]] if len(plan.vowels) else VOWELS[0]
        formants = np.minimum(vowel * voice.tract, MAX_FORMANT_SHARE * sample_rate)
        y = source[a:b]
        for k, (f, bw) in enumerate(zip(formants, FORMANT_BANDWIDTHS * voice.bandwidth)):
            num, den = resonator(f, bw, sample_rate)
            y, state[k] = lfilter(num, den, y, zi=state[k])
        out[a:b] = y
    return out


def fricatives(plan: SpeechPlan, n: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """High-passed noise bursts (first difference of white noise) at syllable onsets, in [-1, 1]."""
    out, length = np.zeros(n), int(FRICATIVE_S * sample_rate)
    for onset, stress in zip(plan.onsets, plan.stress):
        a = int(onset * sample_rate)
        b = min(a + length, n)
        if b > a:
            out[a:b] = stress * np.diff(rng.standard_normal(b - a + 1)) / 2 * np.hanning(b - a + 2)[1:-1]
    return out


def speak(voice: Voice, plan: SpeechPlan, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE) -> Speech:
    """Render `plan` in `voice`: source, formants, the syllable envelope, consonant noise; peak-normalised."""
    env = plan_envelope(plan, sample_rate)
    sound = formant_filter(glottal_source(voice, len(env), sample_rate, rng), voice, plan, sample_rate) * env
    sound *= 1.0 / (np.abs(sound).max() + MAG_FLOOR)
    sound += FRICATIVE_GAIN * fricatives(plan, len(env), sample_rate, rng)
    sound *= PEAK / (np.abs(sound).max() + MAG_FLOOR)
    return Speech(sound.astype(np.float32), env.astype(np.float32), sample_rate)


def mouth_track(speech: Speech, n_frames: int, fps: float) -> np.ndarray:
    """Mouth opening per video frame in [0, 1]: the envelope's mean over each frame's interval, the
    form features.synth.scene's `mouth_open` takes."""
    edges = np.minimum(np.round(np.arange(n_frames + 1) / fps * speech.sample_rate).astype(int), len(speech.envelope))
    sums = np.concatenate([[0.0], np.cumsum(speech.envelope, dtype=np.float64)])
    return ((sums[edges[1:]] - sums[edges[:-1]]) / np.maximum(edges[1:] - edges[:-1], 1)).astype(np.float32)


# ---- fakes ------------------------------------------------------------------------------------------

def voice_swap(plan: SpeechPlan, donor: Voice, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE) -> Speech:
    """The same words at the same times in another identity's voice: lips still match, voice does not."""
    return speak(donor, plan, rng, sample_rate)


def resynthesise(audio: np.ndarray, sample_rate: int, rng: np.random.Generator, cutoff_hz: float | None = None,
                 step_db: float | None = None) -> np.ndarray:
    """Vocoder-like traces: band-limited at `cutoff_hz` and log magnitude quantised in `step_db`
    steps (each drawn from its named range when None); the phase is kept, so timing and pitch stay.
    scipy's STFT, not torch's: corpus workers are forked, and torch's thread pool does not survive a
    fork (a forked generator worker hung in torch.stft)."""
    cutoff = rng.uniform(*VOCODER_CUTOFF_HZ) if cutoff_hz is None else cutoff_hz
    step = rng.uniform(*VOCODER_STEP_DB) if step_db is None else step_db
    x = np.asarray(audio, np.float64)
    freqs, _, spec = stft(x, sample_rate, window="hann", nperseg=VOCODER_FFT, noverlap=VOCODER_FFT - VOCODER_HOP)
    db = DB * np.log10(np.maximum(np.abs(spec), MAG_FLOOR))
    mag = 10 ** (np.round(db / step) * step / DB) * (freqs <= cutoff)[:, None]
    _, out = istft(mag * np.exp(1j * np.angle(spec)), sample_rate, window="hann", nperseg=VOCODER_FFT,
                   noverlap=VOCODER_FFT - VOCODER_HOP)
    return fit_length(out.astype(np.float32), len(x))


def fit_length(audio: np.ndarray, n: int) -> np.ndarray:
    """`audio` cut or zero-padded to `n` samples: another clip's soundtrack on this clip (lip-sync fake)."""
    return np.pad(np.asarray(audio, np.float32)[:n], (0, max(n - len(audio), 0)))


# ---- remux ------------------------------------------------------------------------------------------

def _encode_audio(out, stream, audio: np.ndarray, sample_rate: int, codec: str) -> None:
    """Encode mono float audio in [-1, 1] into `stream` of `out` and mux its packets."""
    import av

    fmt = AUDIO_CODECS[codec]
    audio = np.clip(np.asarray(audio, np.float32), -1.0, 1.0)
    for start in range(0, len(audio), AUDIO_CHUNK):
        chunk = audio[start:start + AUDIO_CHUNK]
        data = (chunk * PCM_SCALE).astype(np.int16) if fmt == "s16" else chunk
        frame = av.AudioFrame.from_ndarray(data[None, :], format=fmt, layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = sample_rate, start, Fraction(1, sample_rate)
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))


def add_audio(src: Path | str, dst: Path | str, audio: np.ndarray, sample_rate: int, codec: str = "aac") -> Path:
    """Write `dst`: the first video stream of `src`, its packets copied unchanged (no re-encoding),
    and `audio` (mono float32) as an `aac` or `pcm_s16le` track. Other streams of `src` are dropped.
    The container follows `dst`'s suffix (.mp4, .mov, .mkv); the file appears whole or not at all."""
    import av

    if codec not in AUDIO_CODECS:
        raise ValueError(f"unknown audio codec {codec!r}; valid: {sorted(AUDIO_CODECS)}")

    def write(tmp: Path) -> None:
        with av.open(str(src)) as inp, av.open(str(tmp), "w") as out:
            if not inp.streams.video:
                raise ValueError(f"{src}: no video stream to keep")
            video_in = inp.streams.video[0]
            video_out = out.add_stream_from_template(video_in)
            audio_out = out.add_stream(codec, rate=sample_rate, layout="mono")  # before the header is written
            n = 0
            for packet in inp.demux(video_in):
                if packet.dts is None:  # the demuxer's end-of-stream marker, not data
                    continue
                packet.stream = video_out
                out.mux(packet)
                n += 1
            _encode_audio(out, audio_out, audio, sample_rate, codec)
            log.debug("%s: %d video packets copied, %d audio samples as %s", dst, n, len(audio), codec)

    return atomic_write_with(Path(dst), write)
