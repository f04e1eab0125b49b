"""A group's soundtracks in the embedded corpus: the original's speech and each fake's audio.

Why it looks like this:

* **Its own random stream.** Every draw here comes from `rng([group seed, SOUND_STREAM])`, never
  from the group's image stream, so turning sound on changes no draw of the renderer (and
  benchmarks that replay those draws, benchmarks.explain, still can).
* **The voice moves the lips.** The original's speech is planned before its frames are rendered
  and its envelope replaces the first person's `mouth_open` (features.synth.sound.mouth_track), so a
  face swap, which renders the donor with the original's expressions, moves its lips with the sound
  too; only a lip-sync fake breaks that link.
* **A registry of fake kinds** (FAKE_AUDIO): kind -> the fake's soundtrack from the group's speech.
  Every kind but the face swap keeps the original's pixels (features.synth.corpus copies its video
  packets), so only the sound tells it from its original.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from features.common import Registry
from features.synth.config import FACE_SWAP, FAKE_KINDS, SoundConfig
from features.synth.identity import Identity
from features.synth.scene import Scene
from features.synth.sound import (
    SAMPLE_RATE,
    Speech,
    SpeechPlan,
    Voice,
    add_audio,
    fit_length,
    mouth_track,
    plan_speech,
    resynthesise,
    speak,
    voice_of,
    voice_swap,
)

log = logging.getLogger(__name__)

SOUND_STREAM = 0x50_55_4E_44  # second entropy word of the sound RNG: independent of the image stream
SPEAKER = 0  # the track whose mouth follows the voice (the first person, the one swapped)
NO_KIND = ""  # fake_kind of an original


@dataclass
class GroupSound:
    """What one group sounds like; `voice` None: a silent group."""

    cfg: SoundConfig
    rng: np.random.Generator
    voice: Voice | None = None
    plan: SpeechPlan | None = None
    speech: Speech | None = None

    @property
    def silent(self) -> bool:
        return self.voice is None


FAKE_AUDIO: Registry[Callable[[GroupSound, Identity], np.ndarray]] = Registry("fake kind")


@FAKE_AUDIO.register("face_swap")
def _same_voice(gs: GroupSound, donor: Identity) -> np.ndarray:
    return gs.speech.audio


@FAKE_AUDIO.register("voice_swap")
def _donor_voice(gs: GroupSound, donor: Identity) -> np.ndarray:
    """The same words at the same times in the donor's voice."""
    return voice_swap(gs.plan, voice_of(donor), gs.rng).audio


@FAKE_AUDIO.register("voice_resynth")
def _vocoded(gs: GroupSound, donor: Identity) -> np.ndarray:
    """The original's own voice with vocoder-like traces (band limit, quantised magnitudes)."""
    return resynthesise(gs.speech.audio, SAMPLE_RATE, gs.rng)


@FAKE_AUDIO.register("lip_sync")
def _other_clip(gs: GroupSound, donor: Identity) -> np.ndarray:
    """The same voice saying other words at other times: another clip's audio on this one."""
    other = speak(gs.voice, plan_speech(gs.voice, gs.plan.duration_s, gs.rng), gs.rng)
    return fit_length(other.audio, len(gs.speech.audio))


def group_sound(seed: int, ident: Identity, scene: Scene, cfg: SoundConfig) -> GroupSound:
    """Draw the group's speech (or its silence) and make the speaker's mouth follow it (`scene`
    is changed in place, before any frame is rendered)."""
    gs = GroupSound(cfg, np.random.default_rng([seed, SOUND_STREAM]))
    if gs.rng.random() < cfg.silent_share:
        return gs
    gs.voice = voice_of(ident)
    gs.plan = plan_speech(gs.voice, scene.n_frames / scene.fps, gs.rng)
    gs.speech = speak(gs.voice, gs.plan, gs.rng)
    track = scene.tracks[SPEAKER]
    scene.tracks[SPEAKER] = dataclasses.replace(track, mouth_open=mouth_track(gs.speech, scene.n_frames, scene.fps))
    return gs


def draw_kind(gs: GroupSound) -> str:
    """A fake's kind: by `kind_weights`; a silent group's fakes are all face swaps."""
    if gs.silent:
        return FACE_SWAP
    weights = np.asarray(gs.cfg.kind_weights, dtype=np.float64)
    return FAKE_KINDS[int(gs.rng.choice(len(FAKE_KINDS), p=weights / weights.sum()))]


def add_soundtrack(src: Path, dst: Path, gs: GroupSound, kind: str, donor: Identity | None) -> bool:
    """Write `dst`: `src`'s video packets and the soundtrack of `kind` (the original's speech for an
    original: kind NO_KIND). A silent group writes nothing; returns whether `dst` has sound."""
    if gs.silent:
        return False
    audio = gs.speech.audio if kind == NO_KIND else FAKE_AUDIO.get(kind)(gs, donor)
    add_audio(src, dst, audio, SAMPLE_RATE, gs.cfg.codec)
    return True


def sound_row(video_id: str, kind: str, has_audio: bool) -> dict:
    """A row of the corpus's soundtracks.parquet (measurement only, like fake_params)."""
    return {"video_id": video_id, "fake_kind": kind, "has_audio": bool(has_audio)}
