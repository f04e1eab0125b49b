"""Command line: `python -m features.synth OUT [--seed N] [--n-originals N] ...` writes a corpus."""

from __future__ import annotations

import argparse
from pathlib import Path

from features.synth.config import SynthConfig
from features.synth.corpus import generate_corpus


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m features.synth", description="Write the embedded synthetic corpus.")
    ap.add_argument("out", type=Path, help="corpus folder to write")
    for flag in ("--seed", "--n-originals", "--n-test-originals", "--n-frames", "--workers"):
        ap.add_argument(flag, type=int, default=None, help="override the config field (default: SynthConfig's)")
    ap.add_argument("--tiny", action="store_true", help="start from SynthConfig.tiny() (test-sized)")
    ap.add_argument("--overwrite", action="store_true", help="replace a corpus made with another config")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> Path:
    args = parse(argv)
    base = SynthConfig.tiny() if args.tiny else SynthConfig()
    fields = ("seed", "n_originals", "n_test_originals", "n_frames", "workers")
    changes = {f: getattr(args, f) for f in fields if getattr(args, f) is not None}
    cfg = base.replace(**changes)
    root = generate_corpus(args.out, cfg, progress=not args.quiet, overwrite=args.overwrite)
    print(f"corpus ready: {root}")
    return root


if __name__ == "__main__":
    main()
