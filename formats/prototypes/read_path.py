"""The v2 Zarr read path mcbackend will take, timed against xarray, and what a missing chunk does.

    python formats/prototypes/read_path.py [--draws 10000] [--rounds 9]

Builds a closed v2-shaped run (4 chains; ``a`` float64 scalar in chunks of [1, 65536], ``z``
(100,100) float32 in chunks of ~4 MiB; commit records) with zarr-python, and the same data
as a Dataset saved by xarray's ``to_zarr``. Times reading all of ``a``:
- ``xarray to_zarr``: ``xr.open_dataset(ref, engine="zarr")["a"].values`` (benchmarks/read.py's reference)
- ``xarray on v2``: the same call on the v2 run's ``posterior`` group
- ``v2 read path``: commit records -> array metadata check -> chunks through a store that
  raises on a missing chunk (what mcbackend's v2 reader does).
Then deletes one chunk of ``a``: xarray returns NaN, the strict path raises naming the key.
"""

import argparse
import json
import os
import pathlib
import shutil
import statistics
import tempfile
import time

import numpy as np
import xarray as xr
import zarr
import zarr.storage


class MissingChunkError(Exception):
    pass


class StrictStore(zarr.storage.LocalStore):
    """Every chunk requested below a committed length must exist (zarr would return fill)."""

    async def get(self, key, prototype=None, byte_range=None):
        value = await super().get(key, prototype=prototype, byte_range=byte_range)
        if value is None and "/c/" in key:
            raise MissingChunkError(f"chunk {key!r} is missing below the committed length")
        return value


def build(root: str, chains: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(chains, n))
    post = zarr.open_group(os.path.join(root, "run", "posterior"), mode="w")
    arr = post.create_array("a", shape=(chains, n), chunks=(1, min(65536, n)), dtype="float64",
                            fill_value=np.nan, dimension_names=["chain", "draw"])  # fmt: skip
    arr[:] = a
    z = post.create_array("z", shape=(chains, n, 100, 100), chunks=(1, 104, 100, 100),
                          dtype="float32", fill_value=np.nan, dimension_names=["chain", "draw", "z0", "z1"])  # fmt: skip
    z[:] = 0
    for name, size in (("chain", chains), ("draw", n)):
        c = post.create_array(
            name, shape=(size,), chunks=(65536,), dtype="int64", dimension_names=[name]
        )
        c[:] = np.arange(size)
    rec = os.path.join(root, "run", "_mcbackend", "chains")
    os.makedirs(rec)
    for c in range(chains):
        with open(os.path.join(rec, f"{c}.json"), "w") as f:
            json.dump(
                {
                    "chain": c,
                    "draws": n,
                    "warmup_draws": 0,
                    "posterior_draws": n,
                    "segments": [],
                    "closed": True,
                },
                f,
            )
    ds = xr.Dataset({"a": (("chain", "draw"), a), "z": (("chain", "draw", "z0", "z1"), np.zeros((chains, n, 100, 100), "float32"))},
                    coords={"chain": np.arange(chains), "draw": np.arange(n)})  # fmt: skip
    ds.to_zarr(os.path.join(root, "ref.zarr"))
    return a


def v2_read(root: str) -> np.ndarray:
    run = os.path.join(root, "run")
    rec = os.path.join(run, "_mcbackend", "chains")
    records = [
        json.loads(pathlib.Path(rec, p).read_text())
        for p in sorted(os.listdir(rec))
        if p.endswith(".json")
    ]
    lengths = {r["chain"]: r["posterior_draws"] for r in records}
    arr = zarr.open_array(StrictStore(run, read_only=True), path="posterior/a", mode="r")
    meta = arr.metadata
    assert meta.data_type.to_native_dtype() == np.dtype("float64") and meta.dimension_names == (
        "chain",
        "draw",
    )
    n = max(lengths.values())
    return arr[: len(lengths), :n]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--draws", type=int, default=10_000)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--rounds", type=int, default=9)
    args = p.parse_args()
    root = tempfile.mkdtemp(prefix="mcb-v2read-")
    try:
        a = build(root, args.chains, args.draws)
        readers = {
            "xarray to_zarr": lambda: (
                xr.open_dataset(os.path.join(root, "ref.zarr"), engine="zarr", consolidated=False)[
                    "a"
                ].values
            ),
            "xarray on v2": lambda: (
                xr.open_dataset(
                    os.path.join(root, "run", "posterior"), engine="zarr", consolidated=False
                )["a"].values
            ),
            "v2 read path": lambda: v2_read(root),
        }
        for name, read in readers.items():
            np.testing.assert_array_equal(read(), a, err_msg=name)
        times = {k: [] for k in readers}
        names = list(readers)
        for r in range(args.rounds):
            for name in names[r % 3 :] + names[: r % 3]:
                t = time.perf_counter()
                readers[name]()
                times[name].append(time.perf_counter() - t)
        print(
            f"reading 'a' ({args.chains} chains x {args.draws} draws), {args.rounds} rounds; a is {len(os.listdir(os.path.join(root, 'run', 'posterior', 'a', 'c')))} chain dirs of 1 chunk"
        )
        for name in names:
            ratios = [t / x for t, x in zip(times[name], times["xarray to_zarr"])]
            print(
                f"  {name:15s} median {statistics.median(times[name]) * 1e3:6.1f} ms  ratio {statistics.median(ratios):5.2f}x  raw ms: {' '.join(f'{t * 1e3:.1f}' for t in times[name])}"
            )
        os.remove(os.path.join(root, "run", "posterior", "a", "c", "2", "0"))
        got = readers["xarray on v2"]()
        print(
            f"chunk c/2/0 of 'a' deleted: xarray returns chain 2 as {np.isnan(got[2]).sum()} NaN, no error"
        )
        try:
            v2_read(root)
            print("v2 read path: returned data (WRONG)")
        except MissingChunkError as ex:
            print(f"v2 read path: raises {type(ex).__name__}: {ex}")
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
