"""Entry points and their glue: `oof.py` (level 0) and `stack.py` (level 1), their YAML profiles
(`profiles/`), configs from profiles and `--set` (`config`), MLflow tracking (`tracking`), the stack
stage's internals (`stacking/`) and the benchmarks (`bench/`)."""
