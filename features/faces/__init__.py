"""The face stage: sampled frames are decoded (`decode`), faces detected (`detect`) and linked into
tracks (`tracking`), and square crops cut and cached per video (`extract`, `cache`), all from one
`FaceConfig` (`config`) so that training and scoring see the same faces; `pool` runs the work in
processes (it also runs the level-0 units)."""
