"""The embedded synthetic corpus: procedural talking heads, face-swap fakes, DFDC layout.

`generate_corpus(root, SynthConfig(...))` writes mp4 files, `metadata.json`, `test_labels.csv` and
measurement-only ground truth; `SynthConfig.tiny()` is the test-data factory for every stage.
`SynthConfig(sound=SoundConfig(enabled=True))` adds soundtracks and audio fakes (features.synth.soundtrack).
"""

from features.synth.config import SynthConfig
from features.synth.corpus import generate_corpus

__all__ = ["SynthConfig", "generate_corpus"]
