"""Benchmarks (scripts, never timed tests): `python -m pipelines.bench.faces` (the face stage against
the naive way), `pipelines.bench.learners` (level-0 faces/s) and `pipelines.bench.stack` (what
stacking adds, over corpus seeds)."""
