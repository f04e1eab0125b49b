"""Plots and tables of the stack stage: comparison table, reliability diagram, ROC, importance,
submission and diagnostics.

Plain functions from arrays/tables to files or frames, with no MLflow in them, so the pipeline
decides where each product goes (output dir, MLflow artifact) and tests can call them directly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

from features.common import atomic_write_with
from meta.ensemble import STAGES
from meta.metrics import reliability_curve
from meta.selection import BASELINE_METAS, FINAL_STAGE, SpecResult

METRIC_COLUMNS = ("log_loss", "balanced_log_loss", "auc", "accuracy", "brier", "ece")
TABLE_KEYS = ("config", "meta", "calibration", "clip", "learners", "stage")
FIG_SIZE = (4.5, 4.5)
FIG_DPI = 80
MARGINS = dict(left=0.14, right=0.96, bottom=0.11, top=0.92)  # fixed: tight_layout doubles the cost
TOP_FEATURES = 15  # bars shown in the importance plot (the CSV keeps every feature)
NO_FEATURES_STATUS = "no_features"  # status ok, yet no learner features for the video


def comparison_table(rows: list[dict]) -> pd.DataFrame:
    """One row per configuration x stage, sorted by log loss (best first)."""
    table = pd.DataFrame(rows)
    cols = [c for c in TABLE_KEYS if c in table.columns] + [c for c in METRIC_COLUMNS]
    extra = [c for c in table.columns if c not in cols]
    return table[cols + extra].sort_values(["log_loss", "config", "stage"], kind="stable").reset_index(drop=True)


NOT_PICKABLE = BASELINE_METAS + ("nested",)  # rows that are not stacked ensembles one can pick


def baselines(table: pd.DataFrame) -> dict[str, float | str]:
    """The comparison the stage exists for, from one table: the best stacked ensemble (scored at
    its final stage, as the pipeline picks it), the best single learner and the plain average of
    all learners, and the stack's log loss as a share of each (below 1: what stacking adds on
    these folds). Empty when the table lacks stacked or single-learner rows; no average keys when
    it has no average[all] row."""
    stacked = table[~table["meta"].isin(NOT_PICKABLE)]
    rank = stacked["stage"].map({name: i for i, name in enumerate(STAGES)})  # last = output
    stacked = stacked.assign(_rank=rank).sort_values("_rank", kind="stable").groupby("config").tail(1)
    singles = table[table["meta"] == "single"]
    if stacked.empty or singles.empty:
        return {}
    best, single = stacked.loc[stacked["log_loss"].idxmin()], singles.loc[singles["log_loss"].idxmin()]
    out = {"stack_config": best["config"], "stack_log_loss": float(best["log_loss"]),
           "single_config": single["config"], "single_log_loss": float(single["log_loss"]),
           "stack_over_single": float(best["log_loss"]) / float(single["log_loss"])}
    average = table.loc[table["config"] == "average[all]", "log_loss"]
    if not average.empty:
        out["average_log_loss"] = float(average.min())
        out["stack_over_average"] = out["stack_log_loss"] / out["average_log_loss"]
    return out


def format_baselines(b: dict[str, float | str]) -> str:
    """One line for the terminal summary ("" when there is nothing to compare)."""
    if not b:
        return ""
    text = (f"best stack {b['stack_log_loss']:.4f} ({b['stack_config']}) = {b['stack_over_single']:.3f} x "
            f"best single {b['single_log_loss']:.4f} ({b['single_config']})")
    if "average_log_loss" in b:
        text += f", {b['stack_over_average']:.3f} x plain average {b['average_log_loss']:.4f}"
    return text


def format_table(table: pd.DataFrame, max_rows: int | None = None) -> str:
    """The comparison table as fixed-width text for the terminal."""
    shown = table if max_rows is None else table.head(max_rows)
    cols = ["config", "stage", *METRIC_COLUMNS]
    text = shown[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}")
    if max_rows is not None and len(table) > max_rows:
        text += f"\n... {len(table) - max_rows} more rows in the CSV"
    return text


def _figure(size=FIG_SIZE, margins=MARGINS):
    """A bare Agg figure: no pyplot state, so it is safe in worker processes and never leaks."""
    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(**margins)
    return fig, fig.add_subplot()


def _save(fig, path: Path) -> Path:
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, dpi=FIG_DPI))
    return path


def plot_reliability(y, p, path: Path, title: str) -> Path:
    """Reliability diagram: mean prediction vs fake share per bin, bar width ~ share of videos."""
    curve = reliability_curve(y, p)
    filled = curve[curve["count"] > 0]
    fig, ax = _figure()
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect")
    ax.plot(filled["mean_pred"], filled["frac_pos"], marker="o", label="ensemble")
    ax.bar(curve["lo"], curve["count"] / max(len(np.asarray(y)), 1), width=curve["hi"] - curve["lo"],
           align="edge", alpha=0.2, color="tab:blue", label="share of videos")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="predicted P(FAKE)", ylabel="fraction fake", title=title)
    ax.legend(loc="upper left", fontsize="small")
    return _save(fig, path)


def plot_roc(y, p, path: Path, title: str, auc: float) -> Path:
    fpr, tpr, _ = roc_curve(np.asarray(y, dtype=int), np.asarray(p, dtype=float))
    fig, ax = _figure()
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
    ax.plot(fpr, tpr, label=f"AUC = {auc:.3f}")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="false positive rate", ylabel="true positive rate", title=title)
    ax.legend(loc="lower right")
    return _save(fig, path)


def plot_importance(importance: pd.Series, path: Path, title: str) -> Path:
    top = importance.sort_values(ascending=False).head(TOP_FEATURES)[::-1]
    fig, ax = _figure(size=(7, max(2.5, 0.25 * len(top) + 1)),
                      margins=dict(left=0.35, right=0.97, bottom=0.1, top=0.94))
    ax.barh(top.index, top.to_numpy())
    ax.set(xlabel=f"{importance.name or 'importance'}", title=title)
    return _save(fig, path)


def build_submission(test_ids: pd.Series, prob: np.ndarray) -> pd.DataFrame:
    """DFDC submission: filename (the video id as in metadata.json), label = P(FAKE)."""
    sub = pd.DataFrame({"filename": test_ids.astype(str).to_numpy(), "label": np.asarray(prob, dtype=float)})
    if sub["label"].isna().any():
        bad = sub.loc[sub["label"].isna(), "filename"].tolist()[:5]
        raise ValueError(f"submission has missing probabilities for {bad}")
    return sub


def check_submission(sub: pd.DataFrame, videos: pd.DataFrame, test_mask: pd.Series) -> None:
    """Every test video of the videos table exactly once, nothing else, probabilities in [0, 1]."""
    expected = set(videos.loc[test_mask, "video_id"].astype(str))
    got = sub["filename"].tolist()
    dupes = sorted({v for v in got if got.count(v) > 1})
    missing = sorted(expected - set(got))
    extra = sorted(set(got) - expected)
    if dupes or missing or extra:
        raise AssertionError(f"submission.csv does not match the test videos: duplicated {dupes[:5]}, "
                             f"missing {missing[:5]}, unexpected {extra[:5]}")
    if not sub["label"].between(0.0, 1.0).all():
        raise AssertionError("submission.csv has probabilities outside [0, 1]")


def build_diagnostics(features: pd.DataFrame, prob: np.ndarray, imputed: np.ndarray,
                      prior: float) -> pd.DataFrame:
    """Per test video: status, a human message, faces seen, the submitted prob, imputed flag.

    `imputed` marks videos the ensemble could not score from faces (it returned the prior); the
    message says so in words so nobody mistakes the prior for evidence.
    """
    status = features["status"].astype("string").fillna("ok").to_numpy(dtype=object)
    # a video whose detector status is "ok" but whose selected learners saw no face still got
    # the prior: its status must say so, not "ok"
    status = np.where(np.asarray(imputed, dtype=bool) & (status == "ok"), NO_FEATURES_STATUS, status)
    n_faces = pd.to_numeric(features.get("n_faces"), errors="coerce")
    messages = []
    for st, imp, p in zip(status, imputed, prob):
        if imp:
            messages.append(f"{st}: no face features; submitted the prior {p:.4f} (training prior {prior:.4f})")
        elif st != "ok":
            messages.append(f"{st}: scored from the faces that were found")
        else:
            messages.append("scored by the ensemble")
    return pd.DataFrame({
        "video_id": features["video_id"].astype(str).to_numpy(),
        "status": status,
        "message": messages,
        "n_faces": n_faces.to_numpy() if n_faces is not None else np.nan,
        "prob": np.asarray(prob, dtype=float),
        "imputed": np.asarray(imputed, dtype=bool),
    })


def spec_plots(res: SpecResult, y: np.ndarray, plot_dir: Path) -> dict[str, Path]:
    """Reliability diagram and ROC of the outer-CV final stage; LightGBM importance (refit)."""
    out_dir = Path(plot_dir) / _safe(res.spec.name)
    p = res.cv_stages[FINAL_STAGE]
    title = res.spec.name
    plots = {
        "reliability.png": plot_reliability(y, p, out_dir / "reliability.png", title),
        "roc.png": plot_roc(y, p, out_dir / "roc.png", title, res.metrics["cv_auc"]),
    }
    if res.importance is not None:
        plots["feature_importance.png"] = plot_importance(
            res.importance, out_dir / "feature_importance.png", title)
        csv = out_dir / "feature_importance.csv"
        res.importance.rename_axis("feature").reset_index().to_csv(csv, index=False)
        plots["feature_importance.csv"] = csv
    return plots


def _safe(name: str) -> str:
    """A config name as a folder name."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
