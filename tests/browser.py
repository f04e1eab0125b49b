"""Headless Chromium for the tests that look at a page as a person would (leaderboard, MLflow UI).

Skipped, not failed, when FAKESTACK_SKIP_BROWSER=1 or when no `chromium` is installed: these tests
check what a page shows, and a machine without a browser cannot say; CI installs Debian's
`chromium` (.ci/run), so there they run.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

SKIP_BROWSER_ENV = "FAKESTACK_SKIP_BROWSER"
BROWSER = "chromium"
BROWSER_TIMEOUT_S = 120
MIN_PIXEL_STD = 20.0  # a blank (or single-colour) screenshot has ~0
MIN_INK_SHARE = 0.02  # share of non-white pixels of a rendered page (text, figures)


def browser_or_skip() -> str:
    """The chromium executable, or a skip saying why there is none."""
    if os.environ.get(SKIP_BROWSER_ENV) == "1":
        pytest.skip(f"{SKIP_BROWSER_ENV}=1")
    found = shutil.which(BROWSER)
    if not found:
        pytest.skip(f"{BROWSER} is not installed (`apt-get install -y --no-install-recommends chromium`)")
    return found


def chromium(browser: str, window: tuple[int, int], *args: str, timeout: float = BROWSER_TIMEOUT_S
             ) -> subprocess.CompletedProcess:
    """One headless run (dump the DOM or take a screenshot) with a fixed window size."""
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           "--disable-dev-shm-usage", "--disable-extensions", f"--window-size={window[0]},{window[1]}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
