"""Level-0 inputs and outputs as tables keyed by `video_id`.

- `corpus/`: corpus readers (videos table) and groups and folds;
- `faces/`: the face stage (decode, detect, track, crop, cache) and its process pool;
- `aggregate`: per-frame predictions -> per-video features for level 1;
- `synth/`: the embedded synthetic corpus;
- `common`: the small shared kernel (registries, typed configs, content hashes, atomic writes).
"""
