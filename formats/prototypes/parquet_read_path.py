"""The Parquet v2 read path for one small column, timed against xarray (issue 12 target <= 3x).

    python formats/prototypes/parquet_read_path.py [--draws 10000] [--rounds 9]

4 chains; ``a`` (float64) beside ``z`` ((100,100) float32 as a fixed_shape_tensor; zeros, so
the files stay small: column projection never reads z's pages, only the footers). Per chain:
parts of ~32 MiB uncompressed (a flush each), or one compacted data file. Reading: list
``chain=<n>/`` files, plan by names, ``pq.read_table(files, columns=["draw", "a"])``.
"""

import argparse
import os
import shutil
import statistics
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xarray as xr

DRAW_BYTES = 8 + 40_000


def table(a: np.ndarray, start: int) -> pa.Table:
    n = len(a)
    z = pa.ExtensionArray.from_storage(
        pa.fixed_shape_tensor(pa.float32(), (100, 100)),
        pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(n * 10_000, "float32")), 10_000),
    )
    return pa.table({"draw": pa.array(np.arange(start, start + n)), "a": pa.array(a), "z": z})


def build(root: str, chains: int, n: int, compact: bool) -> np.ndarray:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(chains, n))
    per_part = (32 << 20) // DRAW_BYTES
    for c in range(chains):
        d = os.path.join(root, "run", f"chain={c}")
        os.makedirs(d)
        parts = [table(a[c, lo : lo + per_part], lo) for lo in range(0, n, per_part)]
        if compact:
            with pq.ParquetWriter(
                os.path.join(d, f"data-{0:012d}-{n:012d}.parquet"),
                parts[0].schema,
                compression="zstd",
            ) as w:
                for t in parts:
                    w.write_table(t, row_group_size=len(t))
        else:
            for t in parts:
                lo = t["draw"][0].as_py()
                pq.write_table(
                    t,
                    os.path.join(d, f"part-{lo:012d}-{lo + len(t):012d}.parquet"),
                    compression="zstd",
                )
    ds = xr.Dataset(
        {"a": (("chain", "draw"), a)}, coords={"chain": np.arange(chains), "draw": np.arange(n)}
    )
    ds.to_zarr(os.path.join(root, "ref.zarr"))
    return a


def read_v2(root: str) -> np.ndarray:
    run = os.path.join(root, "run")
    out = []
    for d in sorted(os.listdir(run), key=lambda s: int(s.split("=")[1])):
        files = sorted(f for f in os.listdir(os.path.join(run, d)) if not f.startswith("_"))
        t = pq.read_table([os.path.join(run, d, f) for f in files], columns=["draw", "a"])
        out.append(t["a"].to_numpy())
    return np.stack(out)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--draws", type=int, default=10_000)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--rounds", type=int, default=9)
    args = p.parse_args()
    for compact in (False, True):
        root = tempfile.mkdtemp(prefix="mcb-pqv2read-")
        try:
            a = build(root, args.chains, args.draws, compact)
            readers = {
                "xarray to_zarr": lambda root=root: (
                    xr.open_dataset(
                        os.path.join(root, "ref.zarr"), engine="zarr", consolidated=False
                    )["a"].values
                ),
                "parquet v2": lambda root=root: read_v2(root),
            }
            for name, read in readers.items():
                np.testing.assert_array_equal(read(), a, err_msg=name)
            times = {k: [] for k in readers}
            names = list(readers)
            for r in range(args.rounds):
                for name in names[r % 2 :] + names[: r % 2]:
                    t = time.perf_counter()
                    readers[name]()
                    times[name].append(time.perf_counter() - t)
            files = sum(len(fs) for _, _, fs in os.walk(os.path.join(root, "run")))
            print(
                f"{'compacted' if compact else 'parts'} ({files} files): reading 'a' of {args.chains} x {args.draws}"
            )
            for name in names:
                ratios = [t / x for t, x in zip(times[name], times["xarray to_zarr"])]
                print(
                    f"  {name:15s} median {statistics.median(times[name]) * 1e3:6.1f} ms  ratio {statistics.median(ratios):5.2f}x  raw ms: {' '.join(f'{t * 1e3:.1f}' for t in times[name])}"
                )
        finally:
            shutil.rmtree(root)


if __name__ == "__main__":
    main()
