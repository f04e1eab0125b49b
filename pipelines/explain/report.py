"""One self-contained HTML report per video: figures are PNGs inlined as base64, no external asset,
so the file opens anywhere (a browser, the MLflow UI's artifact view, an e-mail).

Sections (each a `<section id=...>`, so tests and readers can find them): `verdict` (P(FAKE),
label, threshold, status and message), `frames` (the sampled frames with the detected faces),
`timeline` (each learner's face probability over the frames), `sound` (with a soundtrack learner
only: the log-mel spectrogram and that learner's P(FAKE) per window), `heatmaps` (each learner's most-fake
frames with its heat map laid over the face) and `contributions` (how much each learner, the video
statistics, calibration, the prior shift and clipping moved the logit). A video without a face keeps
every section, each saying why it is empty. A small script counts the images the browser decoded
into `data-images-loaded` on <body>: a check that the page really renders.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
from pathlib import Path

import cv2
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from features.common import atomic_write_text
from features.faces.decode import DecodeError, read_frames
from meta.contributions import PROBABILITY, VIDEO_BUCKET
from pipelines.explain.case import ExplainConfig, Explanation, VideoCase, explain

DPI = 80
THUMB_PX = 160  # frame strip thumbnails: height in pixels
BOX_RGB = (255, 64, 0)
BOX_PX = 2
MAP_ALPHA = 0.5  # heat map opacity over the face
MAP_CMAP = "jet"
PANEL_IN = 1.7  # inches per heat-map panel
TITLE_IN = 0.3  # inches above the first row of panels, for its titles
FAKE_COLOUR, REAL_COLOUR = "#c0392b", "#1e8449"
NAME_HASH_CHARS = 8
STAGE_LABELS = {"calibration": "calibration", "prior_shift": "target-prior shift", "clipping": "clipping"}
STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1100px;color:#222}
h1{font-size:1.4em;word-break:break-all}section{margin:1.2em 0;padding:.6em 1em;border:1px solid #ddd;
border-radius:6px}h2{font-size:1.1em;margin:.2em 0 .6em}.verdict{font-size:2em;font-weight:700}
.note{color:#666}table{border-collapse:collapse}td,th{padding:2px 10px;text-align:left}img{max-width:100%}"""
LOAD_SCRIPT = """<script>window.addEventListener('load',function(){var n=0;
document.querySelectorAll('img').forEach(function(i){if(i.complete&&i.naturalWidth>0){n++;}});
document.body.setAttribute('data-images-loaded',String(n));});</script>"""


def report_name(filename: str, path: str) -> str:
    """A file name per video: its stem plus a short hash of its path (two folders may hold a.mp4)."""
    digest = hashlib.sha1(path.encode()).hexdigest()[:NAME_HASH_CHARS]
    stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in Path(filename).stem)
    return f"{stem}-{digest}.html"


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _img(src: str, alt: str) -> str:
    return f'<img src="{src}" alt="{html.escape(alt)}">'


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _section(sid: str, title: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{html.escape(title)}</h2>{body}</section>'


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def _no_face_text(case: VideoCase) -> str:
    return (f"No face was judged in this video (status {case.status}): P(FAKE) {case.p_fake:.4f} is the "
            "training prior, not evidence.")


def verdict_section(case: VideoCase) -> str:
    colour = FAKE_COLOUR if case.label == "FAKE" else REAL_COLOUR
    rows = [("P(FAKE)", f"{case.p_fake:.4f}"), ("threshold", f"{case.threshold:.2f}"),
            ("status", case.status), ("message", case.message or "")] + list(case.context.items())
    table = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    body = f'<p class="verdict" style="color:{colour}">{case.label} &nbsp; {case.p_fake:.3f}</p><table>{table}</table>'
    if not case.judged:
        body += _note(_no_face_text(case))
    return _section("verdict", "Verdict", body)


def frames_section(case: VideoCase, cfg: ExplainConfig) -> str:
    if case.path is None:
        return _section("frames", "Sampled frames", _note("the video file is not available to show its frames"))
    try:
        frames = read_frames(case.path, case.n_frames, decoder=case.decoder, clip_len=case.clip_len)
    except (FileNotFoundError, DecodeError, cv2.error) as err:
        return _section("frames", "Sampled frames", _note(f"the frames could not be decoded: {err}"))
    pick = np.unique(np.linspace(0, len(frames.images) - 1, min(cfg.strip_frames, len(frames.images))).round().astype(int))
    thumbs = []
    for i in pick:
        img, fidx = frames.images[i].copy(), int(frames.frame_idx[i])
        rows = case.faces[case.faces["frame_idx"] == fidx] if len(case.faces) else case.faces
        for r in rows.itertuples(index=False):
            cv2.rectangle(img, (int(r.x0), int(r.y0)), (int(r.x1), int(r.y1)), BOX_RGB,
                          max(BOX_PX, img.shape[0] // THUMB_PX * BOX_PX))
        scale = THUMB_PX / img.shape[0]
        thumbs.append((cv2.resize(img, (max(1, round(img.shape[1] * scale)), THUMB_PX), interpolation=cv2.INTER_AREA),
                       fidx, len(rows)))
    fig = _figure(sum(t.shape[1] for t, _, _ in thumbs) / DPI + 0.1 * len(thumbs), THUMB_PX / DPI + 0.35)
    total = sum(t.shape[1] for t, _, _ in thumbs)
    x = 0.0
    for img, fidx, n in thumbs:
        ax = fig.add_axes((x / total, 0.0, img.shape[1] / total * 0.97, 0.85))
        ax.imshow(img)
        ax.set_axis_off()
        ax.set_title(f"frame {fidx}: {n} face{'s' * (n != 1)}", fontsize=8)
        x += img.shape[1]
    n_faces = len(case.faces)
    caption = f"{len(frames.images)} frames sampled, {n_faces} faces detected (boxes)"
    return _section("frames", "Sampled frames and detected faces", _img(_png(fig), "frame strip") + _note(caption))


def timeline_section(expl: Explanation) -> str:
    case = expl.case
    if not case.judged or expl.per_frame.empty:
        return _section("timeline", "Face probabilities over time", _note(_no_face_text(case)))
    fig = _figure(7.5, 3.0)
    ax = fig.add_subplot()
    for learner in expl.per_frame.columns:
        s = expl.per_frame[learner].dropna()
        ax.plot(s.index, s.to_numpy(), marker="o", label=learner)
    ax.axhline(case.threshold, color="grey", linestyle="--", linewidth=1, label="threshold")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("frame")
    ax.set_ylabel("P(FAKE) of the most-fake face")
    ax.legend(fontsize=7, loc="best")
    fig.subplots_adjust(left=0.09, right=0.98, bottom=0.16, top=0.96)
    return _section("timeline", "Face probabilities over time", _img(_png(fig), "probabilities over time"))


def heatmaps_section(expl: Explanation, cfg: ExplainConfig) -> str:
    case = expl.case
    unmapped = (f" No map for {', '.join(expl.unmapped)}: each of their predictions reads several faces of one "
                "track (a pair of frames, or a clip), not a single face.") if expl.unmapped else ""
    if expl.no_layer:
        unmapped += (f" No {expl.method} map for {', '.join(expl.no_layer)}: no spatial layer (a spectrum "
                     "discards where anything is on the face); explain.maps.method=lime maps any learner.")
    if not expl.maps:
        why = _no_face_text(case) if not case.judged else "No learner of this ensemble has a per-face map."
        return _section("heatmaps", "Where each learner looked", _note(why + unmapped))
    k = max(len(m.frames) for m in expl.maps.values())
    height = PANEL_IN * len(expl.maps) + TITLE_IN
    fig = _figure(PANEL_IN * k + 1.2, height)
    for row, (learner, m) in enumerate(expl.maps.items()):
        for col in range(k):
            ax = fig.add_subplot(len(expl.maps), k, row * k + col + 1)
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(learner, fontsize=8)
            if col >= len(m.frames):
                ax.set_axis_off()
                continue
            peak = float(m.maps[col].max())
            ax.imshow(m.crops[col])
            if peak > 0:
                ax.imshow(m.maps[col] / peak, cmap=MAP_CMAP, alpha=MAP_ALPHA, vmin=0.0, vmax=1.0)
            ax.set_title(f"frame {m.frames[col]}  p={m.probs[col]:.2f}" + ("" if peak > 0 else " (empty map)"),
                         fontsize=7)
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.01, top=1 - TITLE_IN / height, wspace=0.05, hspace=0.25)
    caption = (f"{expl.method} maps of each learner's {cfg.top_frames} most-fake frames, scaled to each map's "
               "peak; red = evidence for FAKE. Outside a learner's central view the map is zero." + unmapped)
    return _section("heatmaps", "Where each learner looked", _img(_png(fig), "heat maps") + _note(caption))


def contributions_section(case: VideoCase) -> str:
    c = case.contributions
    if c is None or not case.judged:
        return _section("contributions", "Which learners made the verdict", _note(_no_face_text(case)))
    parts = {name: float(v) for name, v in c.learners.iloc[0].items()}
    unit = c.unit
    base = float(c.base[0])
    bars = {f"{k} (learner)" if k != VIDEO_BUCKET else k: v for k, v in parts.items()}
    stages = c.stages.iloc[0]
    if unit != PROBABILITY:
        bars["meta-learner intercept"] = base
        bars.update({STAGE_LABELS[s]: float(stages[s]) for s in STAGE_LABELS})
    fig = _figure(7.5, 0.35 * len(bars) + 0.9)
    ax = fig.add_subplot()
    names, values = list(bars), list(bars.values())
    ax.barh(range(len(names)), values, color=[FAKE_COLOUR if v > 0 else REAL_COLOUR for v in values])
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel(f"contribution ({unit}); right = towards FAKE")
    fig.subplots_adjust(left=0.3, right=0.98, bottom=0.8 / (0.35 * len(bars) + 0.9), top=0.97)
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:+.4f}</td></tr>" for k, v in bars.items())
    stage_rows = "".join(f"<tr><td>{html.escape(s)}</td><td>{float(stages[s]):+.4f}</td></tr>"
                         for s in ("raw", "calibration", "prior_shift", "clipping", "final"))
    summary = (f"{c.meta} meta-learner; parts add up in {unit}: base {base:+.4f} + learners "
               f"{sum(parts.values()):+.4f} = {base + sum(parts.values()):+.4f}")
    body = (_img(_png(fig), "learner contributions") + _note(summary)
            + f"<table><tr><th>part</th><th>{unit}</th></tr>{rows}</table>"
            + f"<p>Stages (logit): </p><table>{stage_rows}</table>")
    return _section("contributions", "Which learners made the verdict", body)


def sound_section(case: VideoCase) -> str:
    """The soundtrack: its log-mel spectrogram over seconds, and the soundtrack learner's P(FAKE)
    of each window at the window's centre. Without usable sound the audio features were missing
    and the face learners decided: said in words."""
    sound = case.sound
    title = "Soundtrack"
    if not sound.usable:
        why = f"status {sound.status or 'not decoded'}" + (f": {sound.message}" if sound.message else "")
        return _section("sound", title, _note(f"No usable sound ({why}); the {sound.learner} features were "
                                               "missing and the face learners decided."))
    seconds = sound.spectrogram.shape[1] * sound.hop_s
    fig = _figure(7.5, 3.6)
    top, bottom = fig.add_subplot(2, 1, 1), fig.add_subplot(2, 1, 2)
    top.imshow(sound.spectrogram, origin="lower", aspect="auto", extent=(0.0, seconds, 0, sound.spectrogram.shape[0]),
               cmap="magma")
    top.set_ylabel("mel band", fontsize=8)
    top.set_xlim(0.0, seconds)
    bottom.plot(sound.times_s, sound.probs, marker="o", color=FAKE_COLOUR, label=sound.learner)
    bottom.axhline(case.threshold, color="grey", linestyle="--", linewidth=1, label="threshold")
    bottom.set_xlim(0.0, seconds)
    bottom.set_ylim(-0.02, 1.02)
    bottom.set_xlabel("seconds")
    bottom.set_ylabel("P(FAKE) of the window", fontsize=8)
    bottom.legend(fontsize=7, loc="best")
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.13, top=0.97, hspace=0.35)
    caption = (f"{sound.message} track, {seconds:.1f} s drawn; {len(sound.probs)} windows scored by "
               f"{sound.learner}, each centred on a sampled frame (mean {np.mean(sound.probs):.3f})"
               if len(sound.probs) else f"{sound.message} track, {seconds:.1f} s drawn; no window scored")
    return _section("sound", title, _img(_png(fig), "soundtrack") + _note(caption))


def render(expl: Explanation, cfg: ExplainConfig) -> str:
    """The report's HTML text."""
    case = expl.case
    sections = [verdict_section(case), frames_section(case, cfg), timeline_section(expl),
                heatmaps_section(expl, cfg), contributions_section(case)]
    if case.sound is not None:  # only an ensemble with a soundtrack learner has one
        sections.insert(3, sound_section(case))
    title = html.escape(f"{case.name}: {case.label} {case.p_fake:.3f}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title><style>{STYLE}</style>"
            f"</head><body><h1>fakestack explanation: {html.escape(case.name)}</h1>{''.join(sections)}"
            f"{LOAD_SCRIPT}</body></html>")


def write_report(case: VideoCase, out: Path, cfg: ExplainConfig | None = None) -> Path:
    """Explain one video and write its report to `out` (atomically)."""
    cfg = cfg or ExplainConfig()
    out.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(render(explain(case, cfg), cfg), out)
