"""Parquet v2 design measurement: how fixed-shape variables encode and what readers return.

    python formats/prototypes/parquet_layouts.py [--draws 2000] [--rounds 5]

Layouts of the big workload ((100,), (1000,), (100,100) float32 a draw):
- ``flat columns``: one float column per element (x[0], x[1], ..., 11,100 columns);
- ``nested FSL``: v1, fixed_size_list nested once per axis;
- ``one FSL per variable``: fixed_size_list<float32, prod(shape)>, shape in field metadata.
Encode = pyarrow.parquet.write_table to memory (zstd, page checksums), median of rounds.
"""

import argparse
import io
import pathlib
import statistics
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SHAPES = {"x": (100,), "y": (1000,), "z": (100, 100)}


def nested(values: np.ndarray) -> pa.Array:
    arr = pa.array(values.reshape(-1))
    for size in reversed(values.shape[1:]):
        arr = pa.FixedSizeListArray.from_arrays(arr, size)
    return arr


def tables(n: int):
    rng = np.random.default_rng(0)
    data = {k: rng.normal(size=(n, *s)).astype("float32") for k, s in SHAPES.items()}
    draw = pa.array(np.arange(n))
    flat_cols = {"draw": draw}
    for k, v in data.items():
        m = v.reshape(n, -1)
        for j in range(m.shape[1]):
            flat_cols[f"{k}[{j}]"] = pa.array(m[:, j])
    one = {"draw": draw}
    fields = [pa.field("draw", pa.int64())]
    for k, v in data.items():
        size = int(np.prod(v.shape[1:]))
        one[k] = pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), size)
        fields.append(pa.field(k, one[k].type, metadata={"shape": str(list(v.shape[1:]))}))
    return {
        "floor: values as 1 col": pa.table(
            {"v": pa.array(np.concatenate([v.reshape(-1) for v in data.values()]))}
        ),
        "flat columns": pa.table(flat_cols),
        "nested FSL": pa.table({"draw": draw, **{k: nested(v) for k, v in data.items()}}),
        "one FSL per variable": pa.Table.from_arrays(list(one.values()), schema=pa.schema(fields)),
    }, sum(v.nbytes for v in data.values())


def encode(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", write_page_checksum=True)
    return sink.getvalue()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--draws", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    layouts, nbytes = tables(args.draws)
    times = {k: [] for k in layouts}
    for r in range(args.rounds):
        for name in list(layouts)[r % 4 :] + list(layouts)[: r % 4]:
            t = time.perf_counter()
            encode(layouts[name])
            times[name].append(time.perf_counter() - t)
    ref = statistics.median(times["floor: values as 1 col"])
    print(
        f"encode {nbytes / 2**20:.0f} MiB ({args.draws} draws of (100,),(1000,),(100,100) f32), zstd:"
    )
    for name, ts in times.items():
        med = statistics.median(ts)
        print(
            f"  {name:22s} {med * 1e3:8.1f} ms  {nbytes / med / 2**20:7.0f} MiB/s  {med / ref:5.2f}x floor  raw: {' '.join(f'{t * 1e3:.0f}' for t in ts)}"
        )
    import duckdb
    import pandas as pd
    import polars as pl

    small = {k: v.slice(0, 3) for k, v in layouts.items()}
    for name in ("nested FSL", "one FSL per variable"):
        buf = encode(small[name])
        path = f"/tmp/layout-{name.replace(' ', '_')}.parquet"
        pathlib.Path(path).write_bytes(buf)
        z_pd = pd.read_parquet(path)["z"]
        z_pl = pl.read_parquet(path)["z"]
        z_dd = duckdb.sql(f"SELECT z FROM read_parquet('{path}')")
        print(f"\n{name}: z column as read back")
        print(
            f"  pandas : dtype {z_pd.dtype}, cell {type(z_pd[0]).__name__} shape {np.shape(z_pd[0])}"
        )
        print(f"  polars : dtype {z_pl.dtype}, to_numpy() shape {z_pl.to_numpy().shape}")
        print(
            f"  duckdb : type {z_dd.types[0]}, fetchnumpy shape {np.shape(z_dd.fetchnumpy()['z'][0])}"
        )
        if name == "one FSL per variable":
            shaped = pl.read_parquet(path).select(pl.col("z").reshape((-1, 100, 100)))["z"]
            print(f"  polars reshape((-1,100,100)): {shaped.dtype}")
        print(f"  pyarrow: {pq.read_table(path).schema.field('z').type}")


if __name__ == "__main__":
    main()
