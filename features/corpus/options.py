"""`CorpusOptions`: the settings of the layout readers that need more than a folder."""

from __future__ import annotations

from dataclasses import dataclass, field

COMPRESSIONS = ("raw", "c23", "c40")  # FaceForensics++ quality levels


@dataclass
class CorpusOptions:
    """Reader settings; a layout ignores the ones it has no use for."""

    compression: str = "c23"  # FF++ (and DeeperForensics' FF++ reals): raw | c23 | c40
    methods: list[str] = field(default_factory=list)  # FF++ methods / DeeperForensics variants; empty: all found
    split_dir: str | None = None  # official split files (FF++ train/val/test.json); None: the layout's default place
    real_root: str | None = None  # DeeperForensics: the FF++ folder whose youtube originals are its reals
    # one group per person (Celeb-DF ids, FF++ / DeeperForensics identities): no model is scored on a
    # face it trained on. False keeps only video -- original links, as the official splits assume
    # (they would otherwise refuse to run: a person on both sides).
    link_identities: bool = True
