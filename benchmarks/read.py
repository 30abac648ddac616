"""Reading one small variable of a run beside a big one: our file backends against xarray.

    python benchmarks/read.py [--draws 10000] [--chains 4] [--rounds 7] [--format-version 1]
                              [--backends zarr,parquet]

The run has ``a`` (a float64 scalar) and ``z`` (a (100, 100) float32 array) in every draw.
It is written once through each backend (ZarrBackend, ParquetBackend) and once as an
ArviZ-shaped Dataset with xarray's ``to_zarr`` (defaults). Each round then times, for every
contender in a rotating order, opening the archive afresh and reading all of ``a``:

- ``xarray``: ``xr.open_dataset(path, engine="zarr")["a"].values`` (the reference);
- ``zarr`` / ``parquet``: ``open_run(url)`` then ``chain.get_draws("a")`` for every chain.

Printed: every round's raw seconds, the medians, and each backend's median of the per-round
ratios to xarray (ratios come from the same round, so machine load cancels out).
Targets for format v2 (issue 12): <= 2x xarray on Zarr, <= 3x on Parquet.
"""

from __future__ import annotations

import argparse
import inspect
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable

import numpy as np
import xarray as xr

import mcbackend as mcb
from mcbackend.meta import RunMeta, Variable

SMALL = "a"
BIG = "z"
BIG_SHAPE = (100, 100)


BACKENDS = {"zarr": mcb.ZarrBackend, "parquet": mcb.ParquetBackend}


def backend_options(factory, format_version: int | None) -> dict:
    """``format_version=`` for a backend that takes it (format v2 adds it)."""
    if format_version is None:
        return {}
    if "format_version" not in inspect.signature(factory).parameters:
        raise SystemExit(
            f"--format-version {format_version}: {factory.__name__} has no "
            "format_version option yet (only format v1 exists)."
        )
    return {"format_version": format_version}


def chain_draws(chain: int, n: int, big_shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(chain)
    return {
        SMALL: rng.normal(size=n),
        BIG: rng.normal(size=(n, *big_shape)).astype("float32"),
    }


def write_runs(
    workdir: str, chains: int, n: int, big_shape, format_version: int | None, backends: list[str]
) -> dict[str, str]:
    """Write the same draws with each backend and with xarray; returns their locations."""
    meta = RunMeta(
        rid="readbench",
        variables=[Variable(SMALL, "float64", []), Variable(BIG, "float32", list(big_shape))],
    )
    urls = {}
    for name in backends:
        factory = BACKENDS[name]
        root = os.path.join(workdir, name)
        start = time.perf_counter()
        run = factory(root, **backend_options(factory, format_version)).init_run(meta)
        for c in range(chains):
            draws = chain_draws(c, n, big_shape)
            chain = run.init_chain(c)
            batch = 256
            for lo in range(0, n, batch):
                chain.append_many({k: v[lo : lo + batch] for k, v in draws.items()})
        run.close()
        urls[name] = os.path.join(root, meta.rid)
        mib = du(urls[name]) / 2**20
        files = count_files(urls[name])
        print(
            f"wrote {name:8s} in {time.perf_counter() - start:6.1f} s: {files} files, "
            f"{mib:.0f} MiB ({files / mib:.3f} files per MiB)"
        )
    per_chain = [chain_draws(c, n, big_shape) for c in range(chains)]
    dataset = xr.Dataset(
        {
            SMALL: (("chain", "draw"), np.stack([d[SMALL] for d in per_chain])),
            BIG: (
                ("chain", "draw", "z_dim_0", "z_dim_1"),
                np.stack([d[BIG] for d in per_chain]),
            ),
        },
        coords={"chain": np.arange(chains), "draw": np.arange(n)},
    )
    urls["xarray"] = os.path.join(workdir, "xarray.zarr")
    start = time.perf_counter()
    dataset.to_zarr(urls["xarray"])
    print(
        f"wrote {'xarray':8s} in {time.perf_counter() - start:6.1f} s: "
        f"{count_files(urls['xarray'])} files"
    )
    return urls


def count_files(path: str) -> int:
    return sum(len(files) for _, _, files in os.walk(path))


def du(path: str) -> int:
    return sum(
        os.path.getsize(os.path.join(folder, f))
        for folder, _, files in os.walk(path)
        for f in files
    )


def readers(urls: dict[str, str]) -> dict[str, Callable[[], np.ndarray]]:
    def read_xarray() -> np.ndarray:
        with xr.open_dataset(urls["xarray"], engine="zarr") as ds:
            return ds[SMALL].values

    def ours(url: str) -> Callable[[], np.ndarray]:
        def read() -> np.ndarray:
            run = mcb.open_run(url)
            return np.stack([chain.get_draws(SMALL) for chain in run.get_chains()])

        return read

    return {
        "xarray": read_xarray,
        **{name: ours(url) for name, url in urls.items() if name != "xarray"},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=10_000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--format-version", type=int, default=None)
    parser.add_argument("--backends", default="zarr,parquet", help="comma-separated")
    parser.add_argument("--big-shape", default="100,100", help="shape of the big variable")
    parser.add_argument("--workdir", default=None, help="default: a temporary directory")
    args = parser.parse_args()
    big_shape = tuple(int(s) for s in args.big_shape.split(","))
    workdir = args.workdir or tempfile.mkdtemp(prefix="mcb-readbench-")
    try:
        backends = args.backends.split(",")
        urls = write_runs(
            workdir, args.chains, args.draws, big_shape, args.format_version, backends
        )
        contenders = readers(urls)
        expected = contenders["xarray"]()
        for name, read in contenders.items():
            np.testing.assert_array_equal(read(), expected, err_msg=name)
        times: dict[str, list[float]] = {name: [] for name in contenders}
        names = list(contenders)
        for r in range(args.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                start = time.perf_counter()
                contenders[name]()
                times[name].append(time.perf_counter() - start)
        print(
            f"\nreading {SMALL!r} ({args.chains} chains x {args.draws} draws) beside "
            f"{BIG!r} {big_shape}, {args.rounds} rounds, format "
            f"{args.format_version or 'default'}"
        )
        for name in names:
            raw = " ".join(f"{t * 1e3:7.1f}" for t in times[name])
            ratios = [t / x for t, x in zip(times[name], times["xarray"])]
            print(
                f"{name:8s} median {statistics.median(times[name]) * 1e3:8.1f} ms  "
                f"ratio to xarray {statistics.median(ratios):6.2f}x   raw ms: {raw}"
            )
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
