"""The sweep's leaderboard: one self-contained HTML page that ranks the configurations with their
uncertainty, and the per-video table that lets later runs be compared with this one.

Why a page and not only comparison.csv: on real data the configurations' outer-CV log losses differ
by less than their group-bootstrap intervals, and a ranked list of point figures hides that. Every
figure here carries a 95 % group-bootstrap interval (meta.resampling: whole groups of an original
and its fakes are resampled, the same groups the folds keep apart), and every difference is
*paired* (both configurations scored on the same replicate), which is what decides whether one
configuration beats another or the two are within the noise. The page says which, in words.

The page has no external assets (inline CSS, inline SVG figures), so it opens from an MLflow
artifact view, a mail attachment or a CI artifact alike. Nothing here touches MLflow: the pipeline
decides where the files go (pipelines/stack.py writes them to its output folder and logs them with
the sweep run). `cv_predictions.parquet` holds each labelled video's outer-CV P(FAKE) per
configuration; pipelines/compare.py reads it to put several stack runs side by side.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_curve

from features.common import atomic_write_parquet, atomic_write_text
from meta.metrics import reliability_curve, score
from meta.nested import NESTED_CONFIG, NestedResult
from meta.resampling import DEFAULT_LEVEL, DEFAULT_REPLICATES, bootstrap_log_losses, interval
from meta.selection import BASELINE_METAS, FINAL_STAGE, SpecResult

log = logging.getLogger(__name__)

LEADERBOARD_FILE = "leaderboard.html"
PREDICTIONS_FILE = "cv_predictions.parquet"
KEY_COLUMNS = ("video_id", "group", "fold", "label")  # the rest of cv_predictions: one column per config
TOP_CURVES = 3  # configurations drawn in the reliability and ROC figures (plus the reference)
FOREST_ROWS = 25  # configurations drawn in the interval figure (the table lists all)
NESTED_META = "nested"
ALL_SUBSET = "all"
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
REFERENCE_COLOR = "#7f7f7f"


@dataclass
class Board:
    """Everything the page shows, as tables (tests and pipelines/compare.py read them directly)."""

    table: pd.DataFrame  # one row per configuration, best first; see `rank`
    leader: str  # lowest outer-CV log loss (the configuration the sweep picks)
    reference: str | None  # what every row is also paired against (the best single learner)
    reference_label: str  # how the page names it ("best single learner", "first run")
    n_videos: int
    n_groups: int
    n_replicates: int
    level: float
    loo: pd.DataFrame = field(default_factory=pd.DataFrame)  # leave-one-learner-out deltas
    nested_picks: dict[int, str] = field(default_factory=dict)
    verdict: list[str] = field(default_factory=list)


def predictions_frame(results: list[SpecResult], X: pd.DataFrame, nested: NestedResult | None) -> pd.DataFrame:
    """One row per labelled video: its keys and every configuration's outer-CV P(FAKE) (final
    stage, as the configurations are scored), plus the nested selection's when there is one."""
    frame = pd.DataFrame({"video_id": X["video_id"].astype(str).to_numpy(), "group": X["group"].astype(str).to_numpy(),
                          "fold": X["fold"].to_numpy(), "label": X["label"].to_numpy(dtype=float)})
    preds = {r.spec.name: np.asarray(r.cv_stages[FINAL_STAGE], dtype=float) for r in results}
    if nested is not None:
        preds[NESTED_CONFIG] = np.asarray(nested.prob, dtype=float)
    return pd.concat([frame, pd.DataFrame(preds)], axis=1)


def config_info(results: list[SpecResult], nested: NestedResult | None) -> pd.DataFrame:
    """config, meta, calibration, clip, subset, learners of every configuration (and the nested row)."""
    rows = [{"config": r.spec.name, "meta": r.spec.meta, "calibration": r.spec.calibration,
             "clip": "none" if r.spec.is_baseline else r.spec.clip, "subset": r.spec.subset,
             "learners": ",".join(r.spec.learners)} for r in results]
    if nested is not None:
        rows.append({"config": NESTED_CONFIG, "meta": NESTED_META, "calibration": "picked per fold",
                     "clip": "picked per fold", "subset": "", "learners": ""})
    return pd.DataFrame(rows, columns=["config", "meta", "calibration", "clip", "subset", "learners"])


def _paired(boot: pd.DataFrame, a: str, b: str, level: float) -> tuple[float, float]:
    return interval(boot[a] - boot[b], level)


def rank(frame: pd.DataFrame, info: pd.DataFrame, reference: str | None = None,
         n_replicates: int = DEFAULT_REPLICATES, seed: int = 0, level: float = DEFAULT_LEVEL,
         reference_label: str = "best single learner") -> Board:
    """The ranked table with intervals. `frame`: KEY_COLUMNS + one P(FAKE) column per config in
    `info`. `reference`: the config every row is paired against (None: the best `single` row).

    Columns: config, meta, calibration, clip, subset, learners, log_loss, ll_lo, ll_hi, auc,
    vs_ref / vs_ref_lo / vs_ref_hi (log loss minus the reference's, paired), vs_leader /
    vs_leader_lo / vs_leader_hi (minus the leader's, paired), within_noise (the paired interval
    against the leader holds 0), rank. The nested row is shown but never the leader: it is not a
    configuration one can pick, it scores the picking itself."""
    configs = [c for c in info["config"] if c in frame.columns]
    y = frame["label"].to_numpy(dtype=float)
    groups = frame["group"].to_numpy()
    boot = bootstrap_log_losses(y, {c: frame[c].to_numpy(dtype=float) for c in configs}, groups, n_replicates, seed)
    point = {c: score(y, frame[c].to_numpy(dtype=float)) for c in configs}
    meta = info.set_index("config")["meta"]
    pickable = [c for c in configs if meta[c] != NESTED_META]
    leader = min(pickable, key=lambda c: point[c]["log_loss"])
    if reference is None:
        singles = [c for c in configs if meta[c] == "single"]
        reference = min(singles, key=lambda c: point[c]["log_loss"]) if singles else None
    rows = []
    for c in configs:
        row = {"config": c, "log_loss": point[c]["log_loss"], "auc": point[c]["auc"]}
        row["ll_lo"], row["ll_hi"] = interval(boot[c], level)
        ref = reference if reference is not None else leader
        row["vs_ref"] = point[c]["log_loss"] - point[ref]["log_loss"]
        row["vs_ref_lo"], row["vs_ref_hi"] = _paired(boot, c, ref, level)
        row["vs_leader"] = point[c]["log_loss"] - point[leader]["log_loss"]
        row["vs_leader_lo"], row["vs_leader_hi"] = _paired(boot, c, leader, level)
        row["within_noise"] = bool(c == leader or row["vs_leader_lo"] <= 0.0 <= row["vs_leader_hi"])
        rows.append(row)
    table = info.set_index("config").loc[configs].reset_index().merge(pd.DataFrame(rows), on="config")
    table = table.sort_values(["log_loss", "config"], kind="stable").reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    board = Board(table=table, leader=leader, reference=reference, reference_label=reference_label,
                  n_videos=len(y), n_groups=int(pd.Series(groups).nunique()), n_replicates=n_replicates, level=level)
    board.loo = leave_one_out(boot, point, info.set_index("config").loc[configs], leader, level)
    board.verdict = verdict(board)
    return board


def leave_one_out(boot: pd.DataFrame, point: dict, info: pd.DataFrame, leader: str, level: float) -> pd.DataFrame:
    """What each learner adds: the log loss without it minus with it (positive: it helps), paired,
    for the stacked family of the best all-learner configuration and for the plain average."""
    stacked = info[~info["meta"].isin(BASELINE_METAS + (NESTED_META,))]
    full = stacked[stacked["subset"] == ALL_SUBSET]
    families = []
    if not full.empty:
        best = leader if leader in full.index else min(full.index, key=lambda c: point[c]["log_loss"])
        key = tuple(info.loc[best, ["meta", "calibration", "clip"]])
        families.append((best, stacked[stacked[["meta", "calibration", "clip"]].apply(tuple, axis=1) == key]))
    average = info[info["meta"] == "average"]
    if ALL_SUBSET in set(average["subset"]):
        families.append((average.index[average["subset"] == ALL_SUBSET][0], average))
    rows = []
    for base, family in families:
        for config, row in family.iterrows():
            if not row["subset"].startswith("-"):
                continue
            lo, hi = interval(boot[config] - boot[base], level)
            delta = point[config]["log_loss"] - point[base]["log_loss"]
            rows.append({"learner": row["subset"][1:], "with": base, "without": config, "delta": delta,
                         "lo": lo, "hi": hi, "effect": _effect(lo, hi)})
    return pd.DataFrame(rows, columns=["learner", "with", "without", "delta", "lo", "hi", "effect"])


def _effect(lo: float, hi: float) -> str:
    """A learner's effect from the interval of (without - with): positive means it helps."""
    return "helps" if lo > 0 else "hurts" if hi < 0 else "within the noise"


def _span(v: float, lo: float, hi: float, digits: int = 4, sign: bool = False) -> str:
    f = f"{{:+.{digits}f}}" if sign else f"{{:.{digits}f}}"
    return f"{f.format(v)} [{f.format(lo)}, {f.format(hi)}]"


def verdict(board: Board) -> list[str]:
    """The page's plain-words summary: does the leader beat the reference, how many configurations
    the data cannot tell from the leader, and the nested figure beside the optimistic one."""
    t = board.table.set_index("config")
    lead = t.loc[board.leader]
    pct = f"{board.level:.0%}"
    lines = [f"The leader, {board.leader}, scores an outer-CV log loss of "
             f"{_span(lead['log_loss'], lead['ll_lo'], lead['ll_hi'])} ({pct} group-bootstrap interval, "
             f"{board.n_groups} groups, {board.n_videos} videos)."]
    if board.reference is not None and board.reference != board.leader:
        d = lead
        diff = _span(d["vs_ref"], d["vs_ref_lo"], d["vs_ref_hi"], sign=True)
        if d["vs_ref_hi"] < 0:
            lines.append(f"Against the {board.reference_label} ({board.reference}) its paired difference is {diff}: "
                         "better beyond the noise.")
        elif d["vs_ref_lo"] > 0:
            lines.append(f"Against the {board.reference_label} ({board.reference}) its paired difference is {diff}: "
                         "worse beyond the noise.")
        else:
            lines.append(f"Against the {board.reference_label} ({board.reference}) its paired difference is {diff}: "
                         "the interval holds 0, so the difference is within the noise.")
    pickable = t[t["meta"] != NESTED_META]
    tied = int(pickable["within_noise"].sum()) - 1
    if tied > 0:
        lines.append(f"{tied} of the other {len(pickable) - 1} configurations are within the noise of the leader "
                     f"(the {pct} interval of their paired difference holds 0): this data cannot rank them.")
    elif len(pickable) > 1:
        lines.append("Every other configuration is worse than the leader beyond the noise.")
    if NESTED_CONFIG in t.index:
        n = t.loc[NESTED_CONFIG]
        lines.append(f"The leader is chosen by the same CV that scores it, so its figure is optimistic; nested "
                     f"selection (the whole sweep re-run without each outer fold) scores "
                     f"{_span(n['log_loss'], n['ll_lo'], n['ll_hi'])}, the honest headline.")
    return lines


# ----------------------------------------------------------------------------------------------- HTML

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1180px;
color:#1b1f24;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
.sub{color:#57606a;margin:0 0 12px}.verdict{background:#f6f8fa;border-left:4px solid #0969da;padding:10px 14px}
.verdict p{margin:4px 0}table{border-collapse:collapse;font-size:12.5px;width:100%}
th,td{padding:3px 8px;border-bottom:1px solid #eaeef2;text-align:right;white-space:nowrap}
th{background:#f6f8fa;position:sticky;top:0}td.l,th.l{text-align:left}
tr.leader td{background:#dafbe1;font-weight:600}tr.noise td.ll{color:#0550ae}tr.ref td{background:#fff8c5}
tr.nested td{background:#ddf4ff;font-style:italic}.figs{display:flex;flex-wrap:wrap;gap:16px}
.scroll{max-height:520px;overflow:auto;border:1px solid #d0d7de}.note{color:#57606a;font-size:12px}
.tag{display:inline-block;padding:0 6px;border-radius:8px;font-size:11px;background:#eaeef2}
"""


def _e(text) -> str:
    return html.escape(str(text))


def _fmt(v: float, digits: int = 4, sign: bool = False) -> str:
    if v is None or not np.isfinite(v):
        return "–"
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


def ranking_html(board: Board) -> str:
    """The ranked table; each figure cell carries data-config/data-key for tests and scripts."""
    ref = board.reference_label
    head = ("<tr><th>#</th><th class=l>configuration</th><th>log loss</th><th>95 % interval</th><th>AUC</th>"
            f"<th>vs {_e(ref)} [paired]</th><th>vs leader [paired]</th><th class=l>vs leader</th></tr>")
    body = []
    for r in board.table.itertuples(index=False):
        cls = ("leader" if r.config == board.leader else "nested" if r.meta == NESTED_META
               else "ref" if r.config == board.reference else "noise" if r.within_noise else "")
        status = ("leader" if r.config == board.leader else "within the noise" if r.within_noise else "worse")
        c = _e(r.config)
        body.append(
            f"<tr class='{cls}'><td>{r.rank}</td><td class=l title='learners: {_e(r.learners)}'>{c}</td>"
            f"<td class=ll data-config='{c}' data-key='log_loss'>{_fmt(r.log_loss)}</td>"
            f"<td data-config='{c}' data-key='ll_interval'>[{_fmt(r.ll_lo)}, {_fmt(r.ll_hi)}]</td>"
            f"<td>{_fmt(r.auc, 3)}</td>"
            f"<td data-config='{c}' data-key='vs_ref'>{_fmt(r.vs_ref, sign=True)} "
            f"[{_fmt(r.vs_ref_lo, sign=True)}, {_fmt(r.vs_ref_hi, sign=True)}]</td>"
            + ("<td>–</td>" if r.config == board.leader else
               f"<td data-config='{c}' data-key='vs_leader'>{_fmt(r.vs_leader, sign=True)} "
               f"[{_fmt(r.vs_leader_lo, sign=True)}, {_fmt(r.vs_leader_hi, sign=True)}]</td>")
            + f"<td class=l><span class=tag>{status}</span></td></tr>")
    return f"<div class=scroll><table id=ranking>{head}{''.join(body)}</table></div>"


def forest_svg(board: Board, rows: int = FOREST_ROWS) -> str:
    """Point and interval of the top configurations (plus the reference and nested rows), with
    the leader's log loss as a vertical line: overlapping bars are the picture of 'within the noise'."""
    t = board.table
    keep = t.head(rows)
    extra = t[t["config"].isin([board.reference, NESTED_CONFIG]) & ~t["config"].isin(keep["config"])]
    shown = pd.concat([keep, extra])
    lo, hi = float(shown["ll_lo"].min()), float(shown["ll_hi"].max())
    pad = (hi - lo) * 0.05 or 0.01
    lo, hi = lo - pad, hi + pad
    label_w, plot_w, row_h, top = 330, 560, 18, 24
    height = top + row_h * len(shown) + 40

    def x(v: float) -> float:
        return label_w + (v - lo) / (hi - lo) * plot_w

    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' id=forest width='{label_w + plot_w + 20}' height='{height}' "
             f"font-size='11' font-family='system-ui,sans-serif'>"]
    lead = float(t.loc[t["config"] == board.leader, "log_loss"].iloc[0])
    parts.append(f"<line x1='{x(lead):.1f}' x2='{x(lead):.1f}' y1='{top - 8}' y2='{height - 34}' stroke='#1a7f37' "
                 "stroke-dasharray='4 3'/>")
    parts.append(f"<text x='{x(lead) + 4:.1f}' y='{top - 10}' fill='#1a7f37'>leader {lead:.4f}</text>")
    for i, r in enumerate(shown.itertuples(index=False)):
        y = top + row_h * i + row_h / 2
        color = ("#1a7f37" if r.config == board.leader else "#0969da" if r.meta == NESTED_META
                 else "#9a6700" if r.config == board.reference else "#57606a" if r.within_noise else "#cf222e")
        parts.append(f"<text x='{label_w - 8}' y='{y + 4:.1f}' text-anchor='end'>{_e(r.config)}</text>")
        parts.append(f"<line x1='{x(r.ll_lo):.1f}' x2='{x(r.ll_hi):.1f}' y1='{y:.1f}' y2='{y:.1f}' stroke='{color}' "
                     "stroke-width='2'/>")
        parts.append(f"<circle cx='{x(r.log_loss):.1f}' cy='{y:.1f}' r='3.5' fill='{color}'/>")
    axis_y = height - 34
    parts.append(f"<line x1='{label_w}' x2='{label_w + plot_w}' y1='{axis_y}' y2='{axis_y}' stroke='#8c959f'/>")
    for v in np.linspace(lo, hi, 6):
        parts.append(f"<text x='{x(v):.1f}' y='{axis_y + 14}' text-anchor='middle' fill='#57606a'>{v:.3f}</text>")
    parts.append(f"<text x='{label_w + plot_w / 2}' y='{axis_y + 27}' text-anchor='middle'>outer-CV log loss "
                 f"({board.level:.0%} group-bootstrap interval)</text></svg>")
    return "".join(parts)


def curve_svg(title: str, series: list[tuple[str, np.ndarray, np.ndarray, str, bool]], xlabel: str, ylabel: str,
              size: int = 300) -> str:
    """A square [0, 1] x [0, 1] line figure with a diagonal and a legend below; `series`:
    (label, x, y, color, dashed)."""
    left, right, top, bottom = 44, size - 10, 24, size - 40

    def px(v):
        return left + float(v) * (right - left)

    def py(v):
        return bottom - float(v) * (bottom - top)

    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{size}' height='{size + 8 + 15 * len(series)}' "
             f"font-size='11' font-family='system-ui,sans-serif'><text x='{size / 2}' y='14' text-anchor='middle' "
             f"font-weight='600'>{_e(title)}</text>",
             f"<rect x='{left}' y='{top}' width='{right - left}' height='{bottom - top}' fill='none' "
             "stroke='#8c959f'/>",
             f"<line x1='{px(0)}' y1='{py(0)}' x2='{px(1)}' y2='{py(1)}' stroke='#d0d7de' stroke-dasharray='3 3'/>"]
    for v in (0, 0.5, 1):
        parts.append(f"<text x='{px(v)}' y='{bottom + 13}' text-anchor='middle' fill='#57606a'>{v:g}</text>")
        parts.append(f"<text x='{left - 4}' y='{py(v) + 4}' text-anchor='end' fill='#57606a'>{v:g}</text>")
    parts.append(f"<text x='{(left + right) / 2}' y='{bottom + 28}' text-anchor='middle'>{_e(xlabel)}</text>")
    parts.append(f"<text transform='translate(14,{(top + bottom) / 2}) rotate(-90)' text-anchor='middle'>"
                 f"{_e(ylabel)}</text>")
    for i, (label, xs, ys, color, dashed) in enumerate(series):
        ok = np.isfinite(xs) & np.isfinite(ys)
        pts = " ".join(f"{px(a):.1f},{py(b):.1f}" for a, b in zip(np.asarray(xs)[ok], np.asarray(ys)[ok]))
        dash = " stroke-dasharray='5 3'" if dashed else ""
        parts.append(f"<polyline points='{pts}' fill='none' stroke='{color}' stroke-width='1.8'{dash}/>")
        ly = size + 6 + 15 * i
        parts.append(f"<line x1='{left}' x2='{left + 18}' y1='{ly - 4}' y2='{ly - 4}' stroke='{color}' "
                     f"stroke-width='2'{dash}/><text x='{left + 24}' y='{ly}'>{_e(label)}</text>")
    parts.append("</svg>")
    return "".join(parts)


def curves_html(board: Board, frame: pd.DataFrame, top: int = TOP_CURVES) -> str:
    """Reliability diagrams and ROC curves of the top configurations, the reference dashed."""
    y = frame["label"].to_numpy(dtype=float)
    picks = [c for c in board.table["config"] if c != NESTED_CONFIG][:top]
    if board.reference is not None and board.reference not in picks:
        picks.append(board.reference)
    rel, roc = [], []
    for i, c in enumerate(picks):
        p = frame[c].to_numpy(dtype=float)
        dashed = c == board.reference and i >= top
        color = REFERENCE_COLOR if dashed else COLORS[i % len(COLORS)]
        curve = reliability_curve(y, p)
        filled = curve[curve["count"] > 0]
        rel.append((c, filled["mean_pred"].to_numpy(), filled["frac_pos"].to_numpy(), color, dashed))
        if len(np.unique(y)) == 2:
            fpr, tpr, _ = roc_curve(y.astype(int), p)
            roc.append((c, fpr, tpr, color, dashed))
    figs = [curve_svg("reliability (outer CV)", rel, "predicted P(FAKE)", "fraction fake")]
    if roc:
        figs.append(curve_svg("ROC (outer CV)", roc, "false positive rate", "true positive rate"))
    return f"<div class=figs id=curves>{''.join(figs)}</div>"


def loo_html(board: Board) -> str:
    if board.loo.empty:
        return "<p class=note>No leave-one-learner-out configurations in this sweep (sweep.leave_one_out).</p>"
    rows = "".join(
        f"<tr><td class=l>{_e(r.learner)}</td><td class=l>{_e(r.without)}</td><td class=l>{_e(r.with_)}</td>"
        f"<td data-config='{_e(r.without)}' data-key='loo_delta'>{_span(r.delta, r.lo, r.hi, sign=True)}</td>"
        f"<td class=l><span class=tag>{_e(r.effect)}</span></td></tr>"
        for r in board.loo.rename(columns={"with": "with_"}).itertuples(index=False))
    return ("<p class=note>Log loss without the learner minus with it, paired (positive: the learner helps).</p>"
            "<table id=loo><tr><th class=l>learner left out</th><th class=l>without</th><th class=l>with</th>"
            f"<th>Δ log loss [{board.level:.0%}]</th><th class=l>effect</th></tr>{rows}</table>")


def breakdown_html(breakdown: pd.DataFrame | None) -> str:
    """The test split per corpus / per method (stacking.breakdown), configurations side by side."""
    if breakdown is None or breakdown.empty:
        return "<p class=note>No labelled test videos: no per-corpus or per-method figures.</p>"
    wide = breakdown.pivot_table(index=["by", "value", "n"], columns="config", values="log_loss", sort=False)
    head = "".join(f"<th>{_e(c)}</th>" for c in wide.columns)
    rows = "".join(f"<tr><td class=l>{_e(by)}</td><td class=l>{_e(value)}</td><td>{n}</td>"
                   + "".join(f"<td>{_fmt(v)}</td>" for v in vals) + "</tr>"
                   for (by, value, n), vals in zip(wide.index, wide.to_numpy()))
    return (f"<table id=breakdown><tr><th class=l>by</th><th class=l>value</th><th>videos</th>{head}</tr>{rows}</table>"
            "<p class=note>Test-split log loss (refit models); no intervals: the test split is not grouped "
            "by folds.</p>")


def nested_html(board: Board) -> str:
    t = board.table.set_index("config")
    if NESTED_CONFIG not in t.index:
        return "<p class=note>No nested figure (stack.py nested=false, or fewer than 3 level-0 folds).</p>"
    n = t.loc[NESTED_CONFIG]
    picks = ", ".join(f"fold {k}: {_e(v)}" for k, v in board.nested_picks.items())
    ref = (f"; vs the {_e(board.reference_label)} {_span(n['vs_ref'], n['vs_ref_lo'], n['vs_ref_hi'], sign=True)}"
           if board.reference else "")
    return (f"<p id=nested>Nested selection: log loss <b data-key='nested_log_loss'>{_fmt(n['log_loss'])}</b> "
            f"[{_fmt(n['ll_lo'])}, {_fmt(n['ll_hi'])}], AUC {_fmt(n['auc'], 3)}{ref}.</p>"
            + (f"<p class=note>Picked per outer fold: {picks}</p>" if picks else ""))


def render(board: Board, frame: pd.DataFrame, title: str, subtitle: str = "",
           breakdown: pd.DataFrame | None = None, sections: tuple[str, ...] = ("nested", "loo", "breakdown")) -> str:
    """The whole page as one string (inline CSS and SVG, no external assets)."""
    verdict_html = "".join(f"<p>{_e(line)}</p>" for line in board.verdict)
    lead = board.table.set_index("config").loc[board.leader]
    body = [f"<h1>{_e(title)}</h1><p class=sub>{_e(subtitle)}</p>",
            f"<div class=verdict id=verdict data-leader='{_e(board.leader)}' "
            f"data-leader-log-loss='{lead['log_loss']:.4f}'>{verdict_html}</div>",
            "<h2>Ranking</h2><p class=note>Sorted by log loss. Intervals: "
            f"{board.level:.0%} percentile, {board.n_replicates} group-bootstrap replicates over {board.n_groups} "
            "groups; differences are paired (both sides on the same replicate). Green: the leader; blue log loss: "
            "within the noise of the leader.</p>", ranking_html(board),
            "<h2>Intervals</h2>", forest_svg(board)]
    if "nested" in sections:
        body += ["<h2>Nested headline</h2>", nested_html(board)]
    if "loo" in sections:
        body += ["<h2>Leave one learner out</h2>", loo_html(board)]
    if "breakdown" in sections:
        body += ["<h2>Test split per corpus and method</h2>", breakdown_html(breakdown)]
    body += ["<h2>Reliability and ROC of the top configurations</h2>", curves_html(board, frame)]
    return (f"<!DOCTYPE html><html lang=en><head><meta charset='utf-8'><title>{_e(title)}</title>"
            f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>")


def write_leaderboard(out_dir: Path, results: list[SpecResult], X: pd.DataFrame, nested: NestedResult | None,
                      breakdown: pd.DataFrame | None = None, subtitle: str = "", n_replicates: int = DEFAULT_REPLICATES,
                      seed: int = 0) -> list[Path]:
    """leaderboard.html and cv_predictions.parquet in `out_dir`; returns their paths (for the
    caller to log with the sweep run)."""
    frame = predictions_frame(results, X, nested)
    board = rank(frame, config_info(results, nested), n_replicates=n_replicates, seed=seed)
    if nested is not None:
        board.nested_picks = dict(nested.picks)
    page = render(board, frame, "fakestack: ensemble leaderboard", subtitle, breakdown)
    paths = [atomic_write_text(page, Path(out_dir) / LEADERBOARD_FILE),
             atomic_write_parquet(frame, Path(out_dir) / PREDICTIONS_FILE)]
    log.info("leaderboard: %s (%d configurations, leader %s)", paths[0], len(board.table), board.leader)
    return paths


def format_board(board: Board, max_rows: int | None = None) -> str:
    """The ranking as terminal text: log loss [interval] and the paired differences."""
    shown = board.table if max_rows is None else board.table.head(max_rows)
    out = pd.DataFrame({
        "#": shown["rank"], "configuration": shown["config"],
        f"log loss [{board.level:.0%}]": [_span(*r) for r in shown[["log_loss", "ll_lo", "ll_hi"]].to_numpy()],
        "AUC": shown["auc"].map(lambda v: _fmt(v, 3)),
        f"vs {board.reference_label}": [_span(*r, sign=True) for r in shown[["vs_ref", "vs_ref_lo", "vs_ref_hi"]]
                                        .to_numpy()],
        "vs leader": ["leader" if c == board.leader else "within the noise" if w else "worse"
                      for c, w in zip(shown["config"], shown["within_noise"])],
    })
    return out.to_string(index=False) + "\n" + "\n".join(board.verdict)
