"""Prototype of the Parquet v2 layout (formats/parquet.md, "Version 2 (draft)"), and what
pandas, pyarrow, DuckDB and polars make of it without mcbackend, on local disk and moto S3.

    python formats/prototypes/parquet_v2.py [--physical-chain]

Two runs under one root, 2 chains each; one still "sampling" (no compaction). Sidecars and
markers start with ``_`` so dataset readers skip them.
"""

import argparse
import json
import os
import socket
import tempfile

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

SHAPES = {"mu": (), "theta": (8,), "z": (20, 20)}


def part_table(rid: str, chain: int, start: int, n: int, tune: int, physical_chain: bool):
    rng = np.random.default_rng(chain * 1000 + start)
    draw = np.arange(start, start + n)
    cols, fields = {}, []

    def add(name, array, metadata=None):
        cols[name] = array
        fields.append(pa.field(name, array.type, nullable=False, metadata=metadata))

    add("run_id", pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, "int32")), pa.array([rid])))
    if physical_chain:
        add("chain", pa.array(np.full(n, chain, "int64")))
    add("draw", pa.array(draw))
    add("warmup", pa.array(draw < tune))
    for name, shape in SHAPES.items():
        values = rng.normal(size=(n, *shape))
        if not shape:
            add(name, pa.array(values))
            continue
        storage = pa.FixedSizeListArray.from_arrays(
            pa.array(values.reshape(-1)), int(np.prod(shape))
        )
        tensor = pa.fixed_shape_tensor(
            pa.float64(), shape, dim_names=[f"{name}_dim_{i}" for i in range(len(shape))]
        )
        add(name, pa.ExtensionArray.from_storage(tensor, storage))
    add("stats/tune", pa.array(draw < tune))
    add("stats/lp", pa.array(rng.normal(size=n)))
    meta = {"format": "parquet", "format_version": 2, "rid": rid, "chain": chain,
            "warmup_stat": "stats/tune", "coords": {"school": [f"s{i}" for i in range(8)]},
            "dims": {"theta": ["school"]}, "attributes": {"inference_library": "demo"}}  # fmt: skip
    schema = pa.schema(fields, metadata={"mcbackend": json.dumps(meta)})
    return pa.Table.from_pydict(cols, schema=schema)


def write_run(
    fs, root: str, rid: str, chains: int, flushes: int, per_flush: int, physical_chain: bool
):
    fs.pipe_file(
        f"{root}/{rid}/_mcbackend.json",
        json.dumps({"format": "parquet", "format_version": 2, "rid": rid}).encode(),
    )
    fs.pipe_file(f"{root}/{rid}/_meta.pb", b"\x0a\x03run")
    for c in range(chains):
        fs.pipe_file(f"{root}/{rid}/chain={c}/_chain.json", json.dumps({"chain": c}).encode())
        for k in range(flushes):
            start = k * per_flush
            table = part_table(
                rid, c, start, per_flush, tune=per_flush, physical_chain=physical_chain
            )
            with fs.open(
                f"{root}/{rid}/chain={c}/part-{start:012d}-{start + per_flush:012d}.parquet", "wb"
            ) as f:
                pq.write_table(table, f, compression="zstd", write_page_checksum=True)


def read_all(label: str, root: str, rid: str, fs, storage_options: dict) -> None:
    import duckdb
    import pandas as pd
    import polars as pl
    import pyarrow.dataset as ds

    run = f"{root}/{rid}"
    print(f"--- {label}: run {run}")
    try:
        df = pd.read_parquet(run, storage_options=storage_options or None)
        print(
            f"pandas.read_parquet(run): {len(df)} rows, chain dtype {df['chain'].dtype}, columns {list(df.columns)[:6]}..."
        )
    except Exception as ex:
        print(f"pandas.read_parquet(run): FAILED {type(ex).__name__}: {ex}")
    try:
        dset = ds.dataset(
            run.split("://")[-1] if not isinstance(fs, LocalFileSystem) else run,
            partitioning="hive",
            filesystem=fs if not isinstance(fs, LocalFileSystem) else None,
        )
        t = dset.to_table(columns=["chain", "draw", "warmup", "z"])
        print(
            f"pyarrow.dataset(run, hive): {t.num_rows} rows, chain {t.schema.field('chain').type}, z {t.schema.field('z').type}"
        )
        all_runs = ds.dataset(
            root.split("://")[-1] if not isinstance(fs, LocalFileSystem) else root,
            partitioning="hive",
            filesystem=fs if not isinstance(fs, LocalFileSystem) else None,
        )
        t = all_runs.to_table(columns=["run_id", "chain", "draw"])
        print(
            f"pyarrow.dataset(root): {t.num_rows} rows of runs {sorted(set(t['run_id'].to_pylist()))}"
        )
    except Exception as ex:
        print(f"pyarrow.dataset: FAILED {type(ex).__name__}: {ex}")
    try:
        con = duckdb.connect()
        prefix = ""
        if not isinstance(fs, LocalFileSystem):
            con.register_filesystem(fs)
            prefix = "s3://"
            run_g, root_g = f"{prefix}{run.split('://')[-1]}", f"{prefix}{root.split('://')[-1]}"
        else:
            run_g, root_g = run, root
        q = f"SELECT chain, count(*) n, min(draw) lo, max(draw) hi FROM read_parquet('{run_g}/**/*.parquet', hive_partitioning=true) WHERE NOT warmup GROUP BY chain ORDER BY chain"
        print("duckdb (run):", con.sql(q).fetchall())
        q = f"SELECT run_id, count(*) FROM read_parquet('{root_g}/*/*/*.parquet', hive_partitioning=true) GROUP BY run_id ORDER BY run_id"
        print("duckdb (all runs):", con.sql(q).fetchall())
    except Exception as ex:
        print(f"duckdb: FAILED {type(ex).__name__}: {ex}")
    try:
        lf = pl.scan_parquet(
            f"{run}/**/*.parquet", hive_partitioning=True, storage_options=storage_options or None
        )
        out = lf.group_by("chain").agg(pl.len(), pl.col("draw").max()).sort("chain").collect()
        print("polars.scan_parquet:", out.rows(), "z dtype:", lf.select("z").collect_schema()["z"])
    except Exception as ex:
        print(f"polars: FAILED {type(ex).__name__}: {ex}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--physical-chain", action="store_true")
    args = p.parse_args()
    local = tempfile.mkdtemp()
    fs = fsspec.filesystem("file", auto_mkdir=True)
    for rid in ("runA", "runB"):
        write_run(
            fs, local, rid, chains=2, flushes=3, per_flush=50, physical_chain=args.physical_chain
        )
    read_all("local", local, "runA", fs, {})

    os.environ.update(
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1"
    )
    from moto.server import ThreadedMotoServer

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        so = {"endpoint_url": f"http://127.0.0.1:{port}", "key": "testing", "secret": "testing"}
        s3 = fsspec.filesystem("s3", **so)
        s3.mkdir("runs")
        for rid in ("runA", "runB"):
            write_run(
                s3,
                "runs",
                rid,
                chains=2,
                flushes=3,
                per_flush=50,
                physical_chain=args.physical_chain,
            )
        so_pl = {
            "aws_endpoint_url": so["endpoint_url"],
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
            "aws_region": "us-east-1",
            "aws_allow_http": "true",
        }
        read_all("moto S3", "s3://runs", "runA", s3, so)
        try:
            out = (
                __import__("polars")
                .scan_parquet(
                    "s3://runs/runA/**/*.parquet", hive_partitioning=True, storage_options=so_pl
                )
                .select("chain", "draw")
                .collect()
            )
            print("polars on S3 (object_store options):", out.shape)
        except Exception as ex:
            print("polars on S3: FAILED", type(ex).__name__, str(ex)[:200])
    finally:
        server.stop()


if __name__ == "__main__":
    main()
