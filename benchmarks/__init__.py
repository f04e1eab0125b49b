"""Benchmarks (scripts, never timed tests): `python -m benchmarks.faces` (the face stage against
the naive way), `benchmarks.learners` (level-0 faces/s) and `benchmarks.stack` (what
stacking adds, over corpus seeds)."""
