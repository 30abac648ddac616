"""Page load and update times of the viewer for a run of 4 chains x 100k draws (Zarr).

    python benchmarks/viewer.py [--draws 100000] [--chains 4] [--browser]

Writes the run with ``append_many`` (``mu``, ``theta[3]`` and sampler stats; 1000 warm-up
draws), serves it on loopback and times the JSON API (first call: nothing cached; again:
progress cached) and, with ``--browser``, the run page in Chromium: load until the trace and
the diagnostics show, and the time from a flush of 1000 more draws per chain until the page
shows them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mcbackend as mcb
from tests.viewer_sampler import run_meta
from tests.viewer_server import running_viewer

TUNE = 1000


def write(root: str, chains: int, draws: int) -> list[mcb.Chain]:
    run = mcb.ZarrBackend(root, flush_seconds=None).init_run(run_meta("big", chains, TUNE, draws))
    rng = np.random.default_rng(0)
    handles = []
    for c in range(chains):
        chain = run.init_chain(c)
        append(chain, rng, 0, TUNE + draws)
        handles.append(chain)
    return handles


def append(chain: mcb.Chain, rng: np.random.Generator, lo: int, n: int) -> None:
    step = np.arange(lo, lo + n)
    chain.append_many(
        {"mu": rng.normal(size=n), "theta": rng.normal(size=(n, 3))},
        {"in_warmup": step < TUNE, "diverging": step % 997 == 5, "lp": rng.normal(size=n)},
    )
    chain.flush()


def timed(base: str, path: str) -> tuple[float, int]:
    t = time.perf_counter()
    with urllib.request.urlopen(base + path, timeout=600) as response:
        body = response.read()
    json.loads(body)
    return time.perf_counter() - t, len(body)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--draws", type=int, default=100_000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--browser", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        t = time.perf_counter()
        chains = write(root, args.chains, args.draws)
        print(f"wrote {args.chains} x {TUNE + args.draws} draws in {time.perf_counter() - t:.1f} s")
        with running_viewer(root) as base:
            paths = [
                "/api/runs",
                "/api/runs/big",
                "/api/runs/big/progress",
                "/api/runs/big/draws?var=mu&points=2000",
                "/api/runs/big/draws?var=theta&element=2&points=2000",
                "/api/runs/big/diagnostics",
            ]
            for label in ["first", "again"]:
                for path in paths:
                    seconds, size = timed(base, path)
                    print(f"{label:5s} {path:52s} {seconds * 1000:8.0f} ms {size / 1024:7.1f} KiB")
            if args.browser:
                browse(base, chains)


def browse(base: str, chains: list[mcb.Chain]) -> None:
    from playwright.sync_api import sync_playwright

    from tests.test_viewer_browser import CHROMIUM, CHROMIUM_ARGS

    rng = np.random.default_rng(1)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        t = time.perf_counter()
        page.goto(base + "/runs/big")
        page.wait_for_function("document.querySelectorAll('#trace path.series').length > 0")
        trace = time.perf_counter() - t
        page.wait_for_function("document.querySelectorAll('#diagnostics tbody tr').length > 0")
        print(
            f"page load: trace shown after {trace:.2f} s, diagnostics {time.perf_counter() - t:.2f} s"
        )
        for _ in range(3):
            before = int(page.locator("#total-draws").inner_text())
            lo = len(chains[0])
            t = time.perf_counter()
            for chain in chains:
                append(chain, rng, lo, 1000)
            flushed = time.perf_counter()
            page.wait_for_function(
                f"Number(document.querySelector('#total-draws').textContent) === "
                f"{before + 1000 * len(chains)}",
                timeout=60_000,
            )
            shown = time.perf_counter()
            page.wait_for_function(
                "[...document.querySelectorAll('#diag-note')]"
                f".some(n => n.textContent.includes('{lo + 1000 - TUNE} posterior'))",
                timeout=60_000,
            )
            print(
                f"update: append+flush {flushed - t:.2f} s, count shown {shown - flushed:.2f} s "
                f"after the flush, diagnostics {time.perf_counter() - flushed:.2f} s"
            )
        browser.close()


if __name__ == "__main__":
    main()
