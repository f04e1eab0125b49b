"""Corpus layouts: which reader turns a folder into the videos table, by name or by what it holds.

`read_videos(roots, layout="auto")` picks one reader for all the folders: `dfdc` (metadata.json,
or a plain folder of videos read as unlabelled test videos; features.corpus.readers), `face_csv`
(pre-extracted face images with metadata.csv), `deepfakebench` (its preprocessed faces with a
dataset JSON), `ffpp` (FaceForensics++), `celebdf` (Celeb-DF v1/v2) or `deeperforensics`
(DeeperForensics-1.0 with FF++ reals), each in its own module. Every reader
returns the same table (features.corpus.readers.videos_table); its `media` column says whether the
rows are `video` files or `face_images`. A reader is `reader(roots, on_missing, link_parts, options)`
with `options` a CorpusOptions, and `DETECTORS` tells from a folder's files whether it is in a layout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from features.common import Registry
from features.corpus.celebdf import is_celebdf, read_celebdf
from features.corpus.deeperforensics import is_deeperforensics, read_deeperforensics
from features.corpus.deepfakebench import is_deepfakebench, read_deepfakebench
from features.corpus.face_csv import is_face_csv, read_face_csv
from features.corpus.ffpp import is_ffpp, read_ffpp
from features.corpus.folds import TEST_SPLIT, connected_groups
from features.corpus.options import CorpusOptions
from features.corpus.readers import CorpusError, check_roots, listing, read_corpora

AUTO = "auto"
NAMES_ONLY = ("deepfakebench",)  # layouts whose groups come from identity links alone
LAYOUTS: Registry[Callable[..., pd.DataFrame]] = Registry("corpus layout")


@LAYOUTS.register("dfdc")
def _dfdc(roots, on_missing: str, link_parts: bool, options: CorpusOptions) -> pd.DataFrame:
    return read_corpora(roots, on_missing=on_missing, link_parts=link_parts)


@LAYOUTS.register("face_csv")
def _face_csv(roots, on_missing: str, link_parts: bool, options: CorpusOptions) -> pd.DataFrame:
    return read_face_csv(roots, on_missing=on_missing, link_parts=link_parts)


LAYOUTS.register("ffpp")(read_ffpp)
LAYOUTS.register("celebdf")(read_celebdf)
LAYOUTS.register("deeperforensics")(read_deeperforensics)
LAYOUTS.register("deepfakebench")(read_deepfakebench)

# checked in order; a folder none of them claims is read as DFDC (metadata.json or plain videos)
DETECTORS: dict[str, Callable[[Path], bool]] = {
    "face_csv": is_face_csv, "deepfakebench": is_deepfakebench, "ffpp": is_ffpp, "celebdf": is_celebdf,
    "deeperforensics": is_deeperforensics,
}


def detect_layout(root: Path) -> str:
    """The layout a folder is in, from what it holds."""
    return next((name for name, test in DETECTORS.items() if test(root)), "dfdc")


def read_videos(roots: Sequence[str | Path], layout: str = AUTO, on_missing: str = "error",
                link_parts: bool = False, options: CorpusOptions | None = None) -> pd.DataFrame:
    """The videos table of `roots`, all read by one layout's reader (`auto`: the one they are in)."""
    roots = list(roots)
    if layout == AUTO:
        found = {str(r): detect_layout(p) for r, p in zip(roots, check_roots(roots))}
        kinds = sorted(set(found.values()))
        if len(kinds) > 1:
            raise CorpusError(f"corpus folders in different layouts: {found}; read one layout per run "
                              f"(or set layout to one of {', '.join(LAYOUTS.names())})")
        layout = kinds[0]
    try:
        reader = LAYOUTS.get(layout)
    except KeyError as err:
        raise CorpusError(err.args[0]) from None
    options = options or CorpusOptions()
    if not options.link_identities and layout in NAMES_ONLY:
        raise CorpusError(f"layout {layout}: corpus.link_identities=false would leave no group at all (its "
                          "videos name no originals; the identities in the names are its only links)")
    videos = reader(roots, on_missing=on_missing, link_parts=link_parts, options=options)
    if not options.link_identities:  # only video -- original (and part) edges, as official splits assume
        videos["links"] = pd.array([pd.NA] * len(videos), dtype="string")
        videos["group"] = connected_groups(videos, link_parts=link_parts)
    return videos


def with_test_corpora(videos: pd.DataFrame, test_videos: pd.DataFrame, link_parts: bool = False,
                      mixed_media: bool = False) -> pd.DataFrame:
    """Cross-dataset evaluation: every video of the test corpora joins as a test video (split `test`:
    no fold, never trained on, scored by every fold model; its label, where known, only scores it).
    Ids must differ from the training corpora's; a test part named like a training part is renamed
    `<name>-test`; groups are recomputed over the whole table.

    Face images on one side and videos on the other (`mixed_media`) compare like with like only when
    the videos are cropped as the face images were: the caller must know the face set's settings
    (features.faces.face_sets; oof.py checks), so without `mixed_media` the mix is refused."""
    clash = sorted(set(videos["video_id"]) & set(test_videos["video_id"]))
    if clash:
        raise CorpusError(f"video id(s) in both the training and the test corpora: {listing(clash)}")
    if set(videos["media"]) != set(test_videos["media"]) and not mixed_media:
        raise CorpusError(f"training corpora hold {sorted(set(videos['media']))} and test corpora "
                          f"{sorted(set(test_videos['media']))}: face images and videos mix only when the face "
                          "set's face settings are known (oof.py: face_images.margin, or face_images.estimate)")
    test = test_videos.copy()
    taken = set(videos["part"])
    test["part"] = test["part"].map(lambda p: f"{p}-test" if p in taken else p).astype("string")
    test["split"] = pd.array([TEST_SPLIT] * len(test), dtype="string")
    both = pd.concat([videos, test], ignore_index=True)
    both["group"] = connected_groups(both, link_parts=link_parts)
    return both
