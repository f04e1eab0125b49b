"""The generator's one typed config: corpus size, video formats, camera and artifact distributions.

Defaults are the demo corpus, sized so the demo profile's whole pipeline (face extraction, five CNN
learners x 3 folds, stacking) runs in minutes on 2 CPU cores. Every distribution that sets how hard
the fakes are is a field here, so difficulty can be tuned without touching the renderer.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from features.common import added_field, runtime_field

FAKE_KINDS = ("face_swap", "voice_swap", "voice_resynth", "lip_sync")  # what a fake changed, for metadata
FACE_SWAP = FAKE_KINDS[0]


@dataclass(frozen=True)
class SoundConfig:
    """Soundtracks of the embedded corpus (features.synth.sound). Off by default, and then left out
    of every hash: the demo corpus (silent, written by OpenCV) stays byte for byte what it was.

    On, each group speaks in its identity's voice, whose envelope drives the talking head's mouth,
    and each fake is one of FAKE_KINDS, drawn by `kind_weights`: a face swap keeps the original's
    soundtrack; the others keep the original's pixels (its video packets copied) and change the
    sound: the same words in the donor's voice, the original's voice through a vocoder-like chain,
    or the same voice saying other words at other times (a lip-sync fake: the lips no longer follow
    the sound). A `silent_share` of groups has no soundtrack at all, originals and fakes alike (all
    face swaps), so silence says nothing about the label."""

    enabled: bool = False
    kind_weights: tuple[float, ...] = (0.4, 0.2, 0.2, 0.2)  # one per FAKE_KINDS
    silent_share: float = 0.1  # groups without sound
    codec: str = "aac"  # features.synth.sound.AUDIO_CODECS

    def __post_init__(self) -> None:
        if len(self.kind_weights) != len(FAKE_KINDS) or min(self.kind_weights) < 0 or sum(self.kind_weights) <= 0:
            raise ValueError(f"sound.kind_weights: one weight >= 0 per kind {FAKE_KINDS}, not all 0; "
                             f"got {self.kind_weights}")
        if not 0.0 <= self.silent_share <= 1.0:
            raise ValueError(f"sound.silent_share must lie in [0, 1], got {self.silent_share}")


@dataclass(frozen=True)
class SynthConfig:
    seed: int = 0
    n_originals: int = 80  # train originals (distinct identities; more of them, not more frames,
    # is what made the demo's from-scratch learners generalise: 44 -> 88 took resnext 0.42 -> 0.38)
    n_test_originals: int = 8  # held-out originals; they and their fakes form the test split
    fakes_per_original: tuple[int, int] = (4, 5)  # inclusive range
    donor_pool_extra: int = 8  # donor-only identities per split, besides the split's originals
    n_frames: int = 12  # the demo samples 6; generation time is per frame
    fps_choices: tuple[int, ...] = (15, 24, 25, 30)
    landscape_sizes: tuple[tuple[int, int], ...] = ((320, 240), (360, 270), (384, 288))  # (w, h)
    portrait_sizes: tuple[tuple[int, int], ...] = ((240, 320), (270, 360))
    portrait_share: float = 0.2
    face_height_range: tuple[float, float] = (0.34, 0.46)  # face height / frame short side
    two_person_share: float = 0.1  # of landscape videos
    exit_share: float = 0.12  # videos where the face leaves the frame for a few frames
    # camera, applied alike to an original and its fakes
    noise_sigma_range: tuple[float, float] = (0.5, 4.0)
    blur_sigma_range: tuple[float, float] = (0.0, 0.8)
    jpeg_quality_range: tuple[int, int] = (60, 95)
    # artifact strengths of the fakes
    # fakes with every strength in [0, invisible_max]: no detector can tell them from reals, so
    # they set a floor on every log loss. At 0.05 that floor (16 of 359 demo fakes) was 0.099, 70 %
    # of the best learner's 0.141, and hid every comparison above it; > 0 gives DFDC-like noise.
    invisible_share: float = 0.0
    invisible_max: float = 0.05
    artifact_presence: float = 1.0  # chance that a visible fake carries a given artifact
    strength_power: float = 0.4  # strength = max * U(0,1)**power: > 1 skews towards subtle
    seam_max: float = 1.0
    colour_max: float = 1.0
    resolution_max: float = 1.0
    flicker_max: float = 1.0
    sound: SoundConfig = added_field(SoundConfig())  # soundtracks and audio fakes (profile `audio`)
    workers: int = runtime_field(1)  # processes; does not change the output

    def __post_init__(self) -> None:
        lo, hi = self.fakes_per_original
        if not 0 <= lo <= hi:
            raise ValueError(f"fakes_per_original must be (lo, hi) with 0 <= lo <= hi, got {self.fakes_per_original}")
        if self.n_originals < 1 or self.n_test_originals < 0 or self.n_frames < 1:
            raise ValueError("n_originals >= 1, n_test_originals >= 0 and n_frames >= 1 are required")

    @classmethod
    def tiny(cls, **overrides) -> "SynthConfig":
        """A corpus small enough for unit tests of any stage: 2 train + 1 test original."""
        base = dict(n_originals=2, n_test_originals=1, n_frames=12, fps_choices=(15,),
                    landscape_sizes=((256, 192), (288, 216)), portrait_sizes=((192, 256),),
                    donor_pool_extra=2)
        base.update(overrides)
        return cls(**base)

    def replace(self, **changes) -> "SynthConfig":
        return dataclasses.replace(self, **changes)
