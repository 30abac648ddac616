"""Wall time of the same pm.sample with PyMC's default trace and with each mcbackend backend.

    python benchmarks/pymc_sample.py [--backends zarr,parquet,numpy,clickhouse] [--repeat 5]

2 chains, 1000 tune + 1000 draws of a hierarchical model with 30 group effects. Each backend
is measured twice: wrapped in ``mcbackend.pymc.TraceBackend`` (``trace=TraceBackend(backend)``,
the recommended way) and bare (``trace=backend``, adapted by PyMC's own ``ChainRecordAdapter``).
Each configuration runs ``--repeat`` times, each time right after a run with PyMC's default
trace; the ratio printed is the median over these pairs. Target: local Zarr and Parquet through
TraceBackend within 1.05x of PyMC's default.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time

import numpy as np
import pymc as pm

import mcbackend as mcb
from mcbackend.pymc import TraceBackend


def make_model() -> pm.Model:
    rng = np.random.default_rng(0)
    groups = 30
    idx = np.repeat(np.arange(groups), 10)
    y = rng.normal(rng.normal(0, 1, groups)[idx], 0.5)
    with pm.Model(coords={"group": np.arange(groups)}) as model:
        mu = pm.Normal("mu", 0, 1)
        tau = pm.HalfNormal("tau", 1)
        z = pm.Normal("z", 0, 1, dims="group")
        theta = pm.Deterministic("theta", mu + tau * z, dims="group")
        sigma = pm.HalfNormal("sigma", 1)
        pm.Normal("y", theta[idx], sigma, observed=y)
    return model


def backends(names: list[str], workdir: str):
    bare = {}
    for name in names:
        if name == "numpy":
            bare[name] = mcb.NumPyBackend
        elif name == "zarr":
            bare[name] = lambda: mcb.ZarrBackend(tempfile.mkdtemp(dir=workdir))
        elif name == "parquet":
            bare[name] = lambda: mcb.ParquetBackend(tempfile.mkdtemp(dir=workdir))
        elif name == "clickhouse":
            import clickhouse_driver

            client = clickhouse_driver.Client("127.0.0.1")
            bare[name] = lambda client=client: mcb.ClickHouseBackend(client)
    made = {"pymc-default": lambda: None}
    for name, factory in bare.items():
        made[f"{name}"] = lambda factory=factory: TraceBackend(factory(), verbose=False)
    for name, factory in bare.items():
        made[f"{name} (bare)"] = factory
    return made


def timed_sample(model: pm.Model, trace, cores: int) -> float:
    start = time.perf_counter()
    with model:
        pm.sample(
            tune=1000, draws=1000, chains=2, cores=cores, trace=trace, random_seed=1,
            progressbar=False, compute_convergence_checks=False,
        )  # fmt: skip
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backends", default="zarr,parquet,numpy,clickhouse")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--cores", type=int, default=1)
    args = parser.parse_args()
    model = make_model()
    workdir = tempfile.mkdtemp(prefix="mcbackend-pymc-bench-")
    try:
        factories = backends(args.backends.split(","), workdir)
        timed_sample(model, None, args.cores)  # compile once, outside the measurements
        for factory in factories.values():  # first imports (zarr, pyarrow) outside too
            timed_sample(model, factory(), args.cores)
        times: dict[str, list[float]] = {name: [] for name in factories}
        ratios: dict[str, list[float]] = {name: [] for name in factories}
        names = list(factories)[1:]
        for r in range(args.repeat):
            # Each configuration right after a run of the default: ratios of neighbours cancel
            # the machine's slow drifts. The order rotates between rounds.
            for name in names[r % len(names) :] + names[: r % len(names)]:
                base = timed_sample(model, None, args.cores)
                seconds = timed_sample(model, factories[name](), args.cores)
                times["pymc-default"].append(base)
                times[name].append(seconds)
                ratios[name].append(seconds / base)
        print(f"{'trace':18s} {'best s':>7s} {'median s':>8s} {'ratio (median of pairs)':>24s}")
        for name, seconds in times.items():
            ratio = f"{statistics.median(ratios[name]):.3f}x" if ratios[name] else "1"
            print(f"{name:18s} {min(seconds):7.2f} {statistics.median(seconds):8.2f} {ratio:>24s}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
