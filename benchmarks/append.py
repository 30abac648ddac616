"""Append throughput of every backend, as draws/s, MiB/s and the ratio to NumPyBackend.

    python benchmarks/append.py [--backends numpy,zarr,parquet,clickhouse] [--scale 1.0]

Each workload appends the same pre-generated draws to one chain and then closes the run,
so buffered backends pay for their final flush. All ratios come from this one run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Callable

import numpy as np

import mcbackend as mcb
from mcbackend.meta import RunMeta, Variable

WORKLOADS: dict[str, tuple[list[tuple[str, tuple[int, ...]]], int]] = {
    "small: (), (3,), (5,2) float32": ([("a", ()), ("b", (3,)), ("c", (5, 2))], 20_000),
    "300 scalar float32 variables": ([(f"v{i}", ()) for i in range(300)], 2_000),
    "big: (100,), (1000,), (100,100) float32": (
        [("x", (100,)), ("y", (1000,)), ("z", (100, 100))],
        1_000,
    ),
}


def make_backends(names: list[str], workdir: str) -> dict[str, Callable[[], mcb.Backend]]:
    factories: dict[str, Callable[[], mcb.Backend]] = {"numpy": mcb.NumPyBackend}
    if "zarr" in names:
        factories["zarr"] = lambda: mcb.ZarrBackend(os.path.join(workdir, "zarr"))
    if "parquet" in names:
        factories["parquet"] = lambda: mcb.ParquetBackend(os.path.join(workdir, "parquet"))
    if "clickhouse" in names:
        try:
            import clickhouse_driver

            client = clickhouse_driver.Client("127.0.0.1")
            client.execute("SELECT 1")
            factories["clickhouse"] = lambda: mcb.ClickHouseBackend(client)
        except Exception as ex:
            print(f"(skipping clickhouse: {ex})")
    return factories


def run_workload(
    backend: mcb.Backend, variables: list[tuple[str, tuple[int, ...]]], n: int
) -> tuple[float, int | None]:
    """Seconds to append ``n`` draws and close the run; bytes stored (file backends)."""
    rid = f"bench{time.monotonic_ns()}"
    meta = RunMeta(
        rid=rid,
        variables=[Variable(name, "float32", list(shape)) for name, shape in variables],
        sample_stats=[Variable("in_warmup", "bool", [])],
    )
    rng = np.random.default_rng(42)
    # Distinct random draws (generated before timing): compression sees realistic data.
    draws = [
        {name: rng.normal(size=shape).astype("float32") for name, shape in variables}
        for _ in range(n)
    ]
    stats = [{"in_warmup": False}, {"in_warmup": True}]
    start = time.perf_counter()
    run = backend.init_run(meta)
    chain = run.init_chain(0)
    for i in range(n):
        chain.append(draws[i], stats[i % 2])
    run.close()
    elapsed = time.perf_counter() - start
    assert len(chain) == n
    location = getattr(run, "location", None)
    return elapsed, location.fs.du(location.path) if location is not None else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backends", default="numpy,zarr,parquet,clickhouse")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the draw counts")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="mcbackend-bench-")
    try:
        factories = make_backends(args.backends.split(","), workdir)
        print(
            f"{'workload':42s} {'backend':11s} {'draws/s':>10s} {'MiB/s':>8s} {'vs numpy':>8s}"
            f" {'on disk MiB':>11s}"
        )
        for title, (variables, n) in WORKLOADS.items():
            n = max(int(n * args.scale), 10)
            draw_mib = sum(4 * int(np.prod(s)) for _, s in variables) / 2**20
            baseline = None
            for name, factory in factories.items():
                results = [run_workload(factory(), variables, n) for _ in range(args.repeat)]
                elapsed, size = min(results, key=lambda r: r[0])
                rate = n / elapsed
                baseline = baseline or rate
                disk = f"{size / 2**20:11.1f}" if size is not None else f"{'-':>11s}"
                print(
                    f"{title:42s} {name:11s} {rate:10.0f} {rate * draw_mib:8.1f} "
                    f"{rate / baseline:7.2f}x {disk}"
                )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
