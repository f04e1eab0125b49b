"""The leaderboard page and the across-runs comparison on a fixed synthetic table (no pipeline run):
its intervals are meta.resampling's, its words follow the intervals, it renders in headless
Chromium with the key numbers in the DOM, and pipelines/compare.py pairs runs on the videos they
share.

The browser test is marked `browser` and skipped without Chromium or with FAKESTACK_SKIP_BROWSER=1
(tests/browser.py).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from browser import MIN_INK_SHARE, MIN_PIXEL_STD, browser_or_skip, chromium

from meta.nested import NESTED_CONFIG
from meta.resampling import bootstrap_log_losses, interval
from pipelines import compare
from pipelines.stacking import leaderboard

WINDOW = (1280, 1600)
REPLICATES = 300
N_GROUPS, PER_GROUP = 80, 3
LEARNERS = ("meso4", "resnext", "temporal")
STACK = "logreg+platt+clip_cv"


def _p(rng, y, strength, noise=1.0):
    """P(FAKE) with signal `strength` (logit scale) and noise."""
    z = strength * (2 * y - 1) + rng.normal(0, noise, len(y))
    return 1 / (1 + np.exp(-z))


@pytest.fixture(scope="module")
def table():
    return synthetic_table()


def synthetic_table() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(frame, info): KEY_COLUMNS + one P(FAKE) column per configuration, and their descriptions."""
    rng = np.random.default_rng(7)
    groups = np.repeat([f"g{i:03d}" for i in range(N_GROUPS)], PER_GROUP)
    y = np.tile([0.0, 1.0, 1.0], N_GROUPS)
    frame = pd.DataFrame({"video_id": [f"v{i:04d}" for i in range(len(y))], "group": groups,
                          "fold": np.repeat(np.arange(N_GROUPS) % 4, PER_GROUP), "label": y})
    rows = []
    for i, name in enumerate(LEARNERS):
        frame[f"single:{name}"] = _p(rng, y, 0.8 + 0.3 * i)
        rows.append(("single", "none", "none", name, name))
    frame["average[all]"] = frame[[f"single:{n}" for n in LEARNERS]].mean(axis=1)
    rows.append(("average", "none", "none", "all", ",".join(LEARNERS)))
    frame[f"{STACK}[all]"] = _p(rng, y, 1.6, 0.9)
    rows.append(("logreg", "platt", "cv", "all", ",".join(LEARNERS)))
    for i, name in enumerate(LEARNERS):
        others = [n for n in LEARNERS if n != name]
        frame[f"average[-{name}]"] = frame[[f"single:{n}" for n in others]].mean(axis=1)
        rows.append(("average", "none", "none", f"-{name}", ",".join(others)))
        noise = rng.normal(0, 0.02 + 0.05 * i, len(y))
        frame[f"{STACK}[-{name}]"] = np.clip(frame[f"{STACK}[all]"] + noise, 0.01, 0.99)
        rows.append(("logreg", "platt", "cv", f"-{name}", ",".join(others)))
    frame[NESTED_CONFIG] = np.clip(frame[f"{STACK}[all]"] + rng.normal(0, 0.04, len(y)), 0.01, 0.99)
    info = pd.DataFrame(
        [{"config": _name(*r), "meta": r[0], "calibration": r[1], "clip": r[2], "subset": r[3], "learners": r[4]}
         for r in rows] + [{"config": NESTED_CONFIG, "meta": "nested", "calibration": "picked per fold",
                            "clip": "picked per fold", "subset": "", "learners": ""}])
    return frame, info


def _name(meta, calibration, clip, subset, learners):
    if meta == "single":
        return f"single:{subset}"
    if meta == "average":
        return f"average[{subset}]"
    return f"{meta}+{calibration}+clip_{clip}[{subset}]"


@pytest.fixture(scope="module")
def board(table):
    frame, info = table
    b = leaderboard.rank(frame, info, n_replicates=REPLICATES, seed=3)
    b.nested_picks = {0: f"{STACK}[all]", 1: f"{STACK}[-meso4]"}
    return b


def test_intervals_are_meta_resamplings(table, board):
    frame, info = table
    configs = list(info["config"])
    boot = bootstrap_log_losses(frame["label"], {c: frame[c].to_numpy() for c in configs}, frame["group"],
                                REPLICATES, 3)
    t = board.table.set_index("config")
    assert set(t.index) == set(configs)
    single = min((c for c in configs if c.startswith("single:")), key=lambda c: t.loc[c, "log_loss"])
    assert board.reference == single
    for c in configs:
        assert (t.loc[c, "ll_lo"], t.loc[c, "ll_hi"]) == pytest.approx(interval(boot[c]), abs=1e-12)
        assert (t.loc[c, "vs_ref_lo"], t.loc[c, "vs_ref_hi"]) == pytest.approx(interval(boot[c] - boot[single]),
                                                                                abs=1e-12)
        lo, hi = interval(boot[c] - boot[board.leader])
        assert (t.loc[c, "vs_leader_lo"], t.loc[c, "vs_leader_hi"]) == pytest.approx((lo, hi), abs=1e-12)
        assert t.loc[c, "within_noise"] == (c == board.leader or lo <= 0 <= hi)
    # the leader is the lowest pickable log loss, never the nested row; the table is sorted
    pickable = t.drop(index=NESTED_CONFIG)
    assert board.leader == pickable["log_loss"].idxmin()
    assert board.table["log_loss"].is_monotonic_increasing


def test_leave_one_out_deltas_are_paired_against_the_full_family(table, board):
    frame, _ = table
    loo = board.loo
    assert set(loo["learner"]) == set(LEARNERS) and set(loo["with"]) == {f"{STACK}[all]", "average[all]"}
    used = set(loo["with"]) | set(loo["without"])
    boot = bootstrap_log_losses(frame["label"], {c: frame[c].to_numpy() for c in used}, frame["group"], REPLICATES, 3)
    for r in loo.to_dict("records"):
        assert (r["lo"], r["hi"]) == pytest.approx(interval(boot[r["without"]] - boot[r["with"]]), abs=1e-12)
        assert r["effect"] == ("helps" if r["lo"] > 0 else "hurts" if r["hi"] < 0 else "within the noise")


def test_verdict_says_when_differences_are_within_the_noise(table, board):
    text = " ".join(board.verdict)
    assert board.leader in text and "nested selection" in text
    tied = int(board.table.loc[board.table["meta"] != "nested", "within_noise"].sum()) - 1
    assert tied > 0 and f"{tied} of the other" in text and "within the noise" in text
    # two identical configurations: the paired interval is [0, 0], within the noise by construction
    frame, info = table
    twin = frame.assign(**{"single:twin": frame["single:meso4"]})
    info2 = pd.concat([info, pd.DataFrame([{"config": "single:twin", "meta": "single", "calibration": "none",
                                            "clip": "none", "subset": "twin", "learners": "twin"}])])
    b = leaderboard.rank(twin, info2, reference="single:meso4", n_replicates=50)
    row = b.table.set_index("config").loc["single:twin"]
    assert row["vs_ref_lo"] == row["vs_ref_hi"] == 0.0


def test_page_is_self_contained(table, board):
    frame, _ = table
    page = leaderboard.render(board, frame, "test board", "synthetic")
    assert "<script" not in page and "src=" not in page and "href=" not in page and "@import" not in page
    lead = board.table.set_index("config").loc[board.leader]
    assert f"{lead['log_loss']:.4f}" in page and page.count("<svg") == 3  # intervals, reliability, ROC


@pytest.mark.browser
def test_leaderboard_renders_in_headless_chromium(table, board, tmp_path):
    import cv2

    browser = browser_or_skip()
    frame, _ = table
    page = tmp_path / "leaderboard.html"
    page.write_text(leaderboard.render(board, frame, "test board", "synthetic"))
    dom = chromium(browser, WINDOW, "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    t = board.table.set_index("config")
    lead = t.loc[board.leader]
    assert f"data-leader-log-loss=\"{lead['log_loss']:.4f}\"" in dom.stdout
    assert f"[{lead['ll_lo']:.4f}, {lead['ll_hi']:.4f}]" in dom.stdout
    nested = t.loc[NESTED_CONFIG]
    assert f"{nested['log_loss']:.4f}" in dom.stdout and "within the noise" in dom.stdout
    assert dom.stdout.count("<polyline") >= 4 and dom.stdout.count("<circle") >= len(t)
    shot = tmp_path / "leaderboard.png"
    res = chromium(browser, WINDOW, f"--screenshot={shot}", page.as_uri())
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    img = cv2.imread(str(shot))
    assert img is not None and img.shape[:2] == (WINDOW[1], WINDOW[0])
    assert float(img.std()) > MIN_PIXEL_STD and float((img.min(axis=2) < 200).mean()) > MIN_INK_SHARE


def test_compare_pairs_runs_on_shared_videos(table, tmp_path):
    frame, _ = table
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    frame.to_parquet(a / leaderboard.PREDICTIONS_FILE)
    # run b: another sweep on most of the same videos (a few dropped, a few new), one config better
    other = frame.iloc[30:].copy()
    other[f"{STACK}[all]"] = np.clip(other[f"{STACK}[all]"] * 0.9 + 0.1 * other["label"], 0.01, 0.99)
    extra = frame.iloc[:6].assign(video_id=lambda d: d["video_id"] + "x", group=lambda d: d["group"] + "x")
    pd.concat([other, extra]).to_parquet(b / leaderboard.PREDICTIONS_FILE)
    res = compare.compare([compare.Source.parse(str(a)), compare.Source.parse(f"{b}@{STACK}[all]")],
                          n_replicates=REPLICATES, seed=1)
    shared = sorted(set(frame["video_id"]) & set(pd.concat([other, extra])["video_id"]))
    assert res.board.n_videos == len(shared) == len(frame) - 30
    t = res.board.table.set_index("config")
    assert len(t) == 2 + 1  # run a's leader and its nested selection, run b's chosen configuration
    first = res.columns[0]
    sub = res.frame
    boot = bootstrap_log_losses(sub["label"], {c: sub[c].to_numpy() for c in res.columns}, sub["group"], REPLICATES, 1)
    for c in res.columns:
        assert (t.loc[c, "vs_ref_lo"], t.loc[c, "vs_ref_hi"]) == pytest.approx(interval(boot[c] - boot[first]),
                                                                                abs=1e-12)
    out = compare.write(res, tmp_path / "compare.html")
    text = out.read_text()
    assert "<script" not in text and f"{t.loc[first, 'log_loss']:.4f}" in text
    assert compare.main([str(a), f"{b}@{STACK}[all]", "--out", str(tmp_path / "c2.html"), "--replicates", "50"]) \
        is not None


def test_write_leaderboard_from_spec_results(table, tmp_path):
    """What stack.py calls: SpecResults and the labelled videos in, the page and the per-video table out."""
    from meta.nested import NestedResult
    from meta.selection import FINAL_STAGE, EnsembleSpec, SpecResult

    frame, info = table
    results = []
    for r in info[info["meta"] != "nested"].itertuples(index=False):
        learners = tuple(r.learners.split(","))
        spec = EnsembleSpec(r.meta, r.calibration, r.clip, learners, r.subset)
        assert spec.name == r.config
        results.append(SpecResult(spec=spec, cv_stages={FINAL_STAGE: frame[r.config].to_numpy()}, test_stages={},
                                  rows=[], metrics={}, ensemble=None, test_no_face=np.zeros(0, bool)))
    nested = NestedResult(frame[NESTED_CONFIG].to_numpy(), {0: f"{STACK}[all]"}, {})
    X = frame[["video_id", "group", "fold", "label"]]
    paths = leaderboard.write_leaderboard(tmp_path, results, X, nested, None, "synthetic", n_replicates=50)
    assert [p.name for p in paths] == [leaderboard.LEADERBOARD_FILE, leaderboard.PREDICTIONS_FILE]
    written = pd.read_parquet(paths[1])
    assert list(written.columns) == list(frame.columns)
    assert np.allclose(written[info["config"]].to_numpy(), frame[info["config"]].to_numpy())
    page = paths[0].read_text()
    assert "fold 0: " + f"{STACK}[all]" in page and "No labelled test videos" in page
