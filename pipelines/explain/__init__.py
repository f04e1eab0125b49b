"""Per-video explanation reports: what a video's verdict rests on, as one self-contained HTML file.

`case` gathers one video's faces, frame predictions, level-0 models and level-1 contributions
(a `VideoCase`) and computes the heat maps; `report` renders it; `sources` builds cases from the
packaged detector (predict.py --explain) and from an oof + stack run (stack.py's costliest OOF
videos).
"""
