"""End to end in a real browser: Chromium (Debian's, inincomplete by scripts/browser.sh) driven by
Playwright watches ``mcbackend serve`` while a sampler process writes a run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request

import pytest

playwright = pytest.importorskip("playwright.sync_api")
pytest.importorskip("starlette")

import arviz as az  # noqa: E402
import numpy as np  # noqa: E402

import mcbackend as mcb  # noqa: E402
from tests.conftest import free_port  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
MCBACKEND = os.path.join(os.path.dirname(sys.executable), "mcbackend")
TUNE, DRAWS = 60, 420
SAMPLING = [str(TUNE), str(DRAWS), "0.3"]  # 10 draws per chain every 0.3 s: about 15 s

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def browser():
    if not os.path.exists(CHROMIUM):
        if os.environ.get("MCB_REQUIRE_BROWSER"):
            pytest.fail(f"MCB_REQUIRE_BROWSER is set but {CHROMIUM} is missing")
        pytest.skip("No Chromium; run scripts/browser.sh")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def served(tmp_path):
    """``mcbackend serve`` over an empty directory; yields (root, base address)."""
    root = tmp_path / "runs"
    root.mkdir()
    port = free_port()
    proc = subprocess.Popen(
        [MCBACKEND, "serve", str(root), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        assert base in proc.stdout.readline()
        for _ in range(200):
            try:
                urllib.request.urlopen(base + "/api/runs", timeout=5).close()
                break
            except OSError:
                time.sleep(0.05)
        yield root, base
    finally:
        proc.terminate()
        proc.wait(20)


def draw_count(page) -> int:
    return int(page.locator("#total-draws").inner_text() or 0)


def test_watch_a_run_while_it_samples(browser, served):
    root, base = served
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(base + "/")
    page.wait_for_selector("#empty", state="visible")  # no runs yet
    sampler = subprocess.Popen(
        [sys.executable, "-m", "tests.viewer_sampler", str(root), "live", "2", *SAMPLING],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        # the runs page refreshes by itself: the new run appears, being written
        row = page.locator('tr[data-rid="live"]')
        row.locator('[data-state="sampling"]').wait_for(timeout=20_000)
        assert row.locator(".vars").inner_text() == "mu, theta"
        page.locator('tr[data-rid="live"] a').click(timeout=15_000)
        page.wait_for_url(f"{base}/runs/live")

        # the trace plot renders, one line per chain, and grows while the sampler writes
        page.wait_for_function(
            "document.querySelectorAll('#trace path.series').length === 2", timeout=15_000
        )
        first = draw_count(page)
        page.wait_for_function(
            f"Number(document.querySelector('#total-draws').textContent) > {first}",
            timeout=10_000,
        )
        assert draw_count(page) > first
        assert page.locator('#state [data-state="sampling"]').count() == 1
        assert sampler.poll() is None, "the sampler finished before growth was seen"
        screenshot = os.environ.get("MCB_VIEWER_SCREENSHOT")  # e.g. docs/viewer.png
        if screenshot:  # mid-sampling, with a summary of the draws so far
            page.wait_for_selector("#diagnostics tbody tr", timeout=20_000)
            page.wait_for_function("document.querySelectorAll('#rank path.series').length === 2")
            page.screenshot(path=screenshot, full_page=True)

        assert sampler.wait(120) == 0
        total = 2 * (TUNE + DRAWS)
        page.wait_for_function(
            f"Number(document.querySelector('#total-draws').textContent) === {total}",
            timeout=10_000,
        )
        page.wait_for_selector('#state [data-state="complete"]', timeout=20_000)
        # divergent draws are marked on the trace
        assert page.locator("#trace g.markers path").count() > 0
        assert page.locator("#rank path.series").count() == 2
        assert page.locator("#density path.series").count() == 2
        progress = page.locator("#progress tbody tr").all_inner_texts()
        assert len(progress) == 2 and all(str(TUNE + DRAWS) in row for row in progress)

        # the finished run's diagnostics table is ArviZ's summary
        expected = az.summary(mcb.open_run(str(root / "live")).to_inferencedata(), ci_kind="hdi")
        page.wait_for_function(
            f"document.querySelector('#diag-note').textContent.includes('{DRAWS} posterior')",
            timeout=20_000,
        )
        headers = page.locator("#diagnostics thead th").all_text_contents()[1:]
        assert headers == list(expected.columns)
        labels = page.locator("#diagnostics tbody th").all_text_contents()
        assert labels == list(expected.index)
        values = page.locator("#diagnostics tbody td").evaluate_all(
            "cells => cells.map(c => c.dataset.value === '' ? NaN : Number(c.dataset.value))"
        )
        np.testing.assert_allclose(
            np.reshape(values, expected.shape), expected.to_numpy(dtype=float), rtol=1e-9
        )

        # another element of another variable
        page.select_option("#var", label="theta")
        page.select_option("#element", label="[C]")
        page.wait_for_function(
            "document.querySelector('#trace text.axis-label:last-of-type')"
            " && [...document.querySelectorAll('#trace text.axis-label')]"
            ".some(t => t.textContent === 'theta[C]')",
            timeout=10_000,
        )
    finally:
        if sampler.poll() is None:
            sampler.terminate()
            sampler.wait(20)


def test_missing_run_page_in_the_browser(browser, served):
    _, base = served
    page = browser.new_page()
    response = page.goto(base + "/runs/nothing-here")
    assert response.status == 404
    assert "Run not found" in page.locator("h1").inner_text()
    assert "No run 'nothing-here'" in page.locator(".error").inner_text()
