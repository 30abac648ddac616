"""Wall time of the same pm.sample with PyMC's default trace and with each mcbackend backend.

    python benchmarks/pymc_sample.py [--models hierarchical,big] [--backends zarr,parquet,numpy]
                                     [--repeat 5] [--no-bare] [--quick]

Two models, 2 chains each:

- ``hierarchical``: 30 group effects, 1000 tune + 1000 draws; small draws, so the cost per
  draw of recording dominates.
- ``big``: three free parameters and a Deterministic of 11,100 float64 values (88.8 KB a
  draw), 500 tune + 500 draws; the bytes to store dominate.

The baseline is PyMC's own NUTS with its default trace. PyMC >= 6.4 silently runs nutpie
instead when it is installed and no trace is given, which would compare a different sampler:
every run here passes ``nuts_sampler="pymc"``, and each baseline result is checked to come
from PyMC's NUTS (its ``tree_depth`` stat and ``inference_library`` attribute).

Each backend is measured wrapped in ``mcbackend.pymc.TraceBackend`` (the recommended way) and,
unless ``--no-bare``, bare (``trace=backend``, adapted by PyMC's ``ChainRecordAdapter``). Each
configuration runs ``--repeat`` times, each time right after a run with the default trace,
the order rotating between rounds; the ratio printed is the median over these pairs, so slow
drifts of a shared machine cancel. Targets (issue #14): TraceBackend(Zarr/Parquet) within
1.05x of the default on ``hierarchical`` and 1.25x on ``big``.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pymc as pm

import mcbackend as mcb
from mcbackend.pymc import TraceBackend


def hierarchical_model() -> pm.Model:
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


def big_draws_model(points: int = 11_100) -> pm.Model:
    """A line fitted to 200 points and evaluated at ``points`` more: 88.8 KB of float64
    Deterministic per draw, cheap to sample, so storing draws is most of the work."""
    rng = np.random.default_rng(1)
    x_obs = np.linspace(0, 1, 200)
    y = rng.normal(1 + 2 * x_obs, 0.3)
    grid = np.linspace(0, 1, points)
    with pm.Model(coords={"grid": grid}) as model:
        a = pm.Normal("a", 0, 1)
        b = pm.Normal("b", 0, 1)
        sigma = pm.HalfNormal("sigma", 1)
        pm.Normal("y", a + b * x_obs, sigma, observed=y)
        pm.Deterministic("curve", a + b * grid, dims="grid")
    return model


@dataclass
class Model:
    model: pm.Model
    tune: int
    draws: int


MODELS: dict[str, Callable[[float], Model]] = {
    "hierarchical": lambda s: Model(hierarchical_model(), int(1000 * s), int(1000 * s)),
    "big": lambda s: Model(big_draws_model(), int(500 * s), int(500 * s)),
}


def configurations(names: list[str], workdir: str, bare: bool) -> dict[str, Callable[[], object]]:
    """Trace factories by label; ``pymc-default`` (``trace=None``) first."""
    backends: dict[str, Callable[[], mcb.Backend]] = {}
    for name in names:
        if name == "numpy":
            backends[name] = mcb.NumPyBackend
        elif name == "zarr":
            backends[name] = lambda: mcb.ZarrBackend(tempfile.mkdtemp(dir=workdir))
        elif name == "parquet":
            backends[name] = lambda: mcb.ParquetBackend(tempfile.mkdtemp(dir=workdir))
        elif name == "clickhouse":
            import clickhouse_driver

            client = clickhouse_driver.Client("127.0.0.1")
            backends[name] = lambda client=client: mcb.ClickHouseBackend(client)
    made: dict[str, Callable[[], object]] = {"pymc-default": lambda: None}
    for name, factory in backends.items():
        made[name] = lambda factory=factory: TraceBackend(factory(), verbose=False)
    if bare:
        for name, factory in backends.items():
            made[f"{name} (bare)"] = factory
    return made


def check_pymc_nuts(result) -> None:
    """Refuse a baseline that did not run PyMC's own NUTS (nutpie names its stats differently
    and stamps ``inference_library="nutpie"``)."""
    stats = result["sample_stats"]
    library = stats.attrs.get("inference_library")
    if library != "pymc" or "tree_depth" not in stats:
        raise RuntimeError(f"The baseline did not run PyMC's NUTS (inference_library={library}).")


def timed_sample(m: Model, trace, cores: int) -> float:
    """Wall seconds of one ``pm.sample``; its CPU seconds (every thread of this process) are
    added to ``CPU_SECONDS``."""
    start, cpu = time.perf_counter(), time.process_time()
    with m.model:
        result = pm.sample(
            tune=m.tune, draws=m.draws, chains=2, cores=cores, trace=trace, random_seed=1,
            nuts_sampler="pymc", progressbar=False, compute_convergence_checks=False,
        )  # fmt: skip
    seconds = time.perf_counter() - start
    CPU_SECONDS.append(time.process_time() - cpu)
    if trace is None:
        check_pymc_nuts(result)
    return seconds


#: CPU seconds of every ``timed_sample`` so far, in order.
CPU_SECONDS: list[float] = []


def paired_rounds(m: Model, factories: dict, repeat: int, cores: int):
    """Each configuration right after a default run, the order rotating between rounds."""
    times: dict[str, list[float]] = {name: [] for name in factories}
    ratios: dict[str, list[float]] = {name: [] for name in factories}
    cpu_ratios: dict[str, list[float]] = {name: [] for name in factories}
    names = list(factories)[1:]
    for r in range(repeat):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            base = timed_sample(m, None, cores)
            seconds = timed_sample(m, factories[name](), cores)
            times["pymc-default"].append(base)
            times[name].append(seconds)
            ratios[name].append(seconds / base)
            cpu_ratios[name].append(CPU_SECONDS[-1] / CPU_SECONDS[-2])
        print(f"  round {r + 1}/{repeat} done", flush=True)
    return times, ratios, cpu_ratios


def report(
    title: str,
    times: dict[str, list[float]],
    ratios: dict[str, list[float]],
    cpu_ratios: dict[str, list[float]],
) -> None:
    """Wall-time ratios (the targets) and, as a check on a busy machine, CPU-time ratios
    (the process's CPU seconds, every thread, over the paired default run's)."""
    print(f"\n== {title} ==")
    print(
        f"{'trace':18s} {'best s':>7s} {'median s':>8s} {'ratio':>8s} {'cpu':>8s}"
        "  raw ratios of pairs | raw cpu ratios"
    )
    for name, seconds in times.items():
        raw = " ".join(f"{r:.3f}" for r in ratios[name])
        raw_cpu = " ".join(f"{r:.3f}" for r in cpu_ratios[name])
        ratio = f"{statistics.median(ratios[name]):.3f}x" if ratios[name] else "1"
        cpu = f"{statistics.median(cpu_ratios[name]):.3f}x" if cpu_ratios[name] else "1"
        print(
            f"{name:18s} {min(seconds):7.2f} {statistics.median(seconds):8.2f} {ratio:>8s}"
            f" {cpu:>8s}  [{raw}] | [{raw_cpu}]"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--backends", default="zarr,parquet,numpy,clickhouse")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--cores", type=int, default=1)
    parser.add_argument("--no-bare", action="store_true", help="only through TraceBackend")
    parser.add_argument("--quick", action="store_true", help="one round, a fifth of the draws")
    args = parser.parse_args()
    logging.getLogger("pymc").setLevel(logging.WARNING)  # its progress lines, per run
    scale = 0.2 if args.quick else 1.0
    repeat = 1 if args.quick else args.repeat
    workdir = tempfile.mkdtemp(prefix="mcbackend-pymc-bench-")
    try:
        factories = configurations(args.backends.split(","), workdir, not args.no_bare)
        for key in args.models.split(","):
            m = MODELS[key](scale)
            timed_sample(m, None, args.cores)  # compile once, outside the measurements
            for factory in factories.values():  # first imports (zarr, pyarrow) outside too
                timed_sample(m, factory(), args.cores)
            title = f"{key}: 2 chains x ({m.tune} tune + {m.draws} draws), cores={args.cores}"
            report(title, *paired_rounds(m, factories, repeat, args.cores))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
