"""Zarr v2 design measurement: three ways to append flushes into chunks sized by bytes.

    python formats/prototypes/chunk_strategies.py [--draws 4000] [--flush 64]

One chain, local disk, chunks of ~4 MiB (uncompressed) per array, a flush every ``--flush``
draws. Strategies:

- ``rewrite``: every flush re-encodes and atomically rewrites each array's partly filled
  last chunk (padded with the fill value), as v1 does with flush-sized chunks;
- ``shard``: zarr-python's sharding codec, one shard of ~4 MiB per array, inner chunks one
  flush long, written with ``array[lo:hi] = rows`` after growing the shape;
- ``staged``: every flush writes ONE segment file (all arrays' rows of that flush, encoded
  with the array's codecs) plus a commit record; a chunk is encoded and written once, when
  it is full (or at close, padded).

Printed per workload: files written, MiB written, MiB written per MiB of draws, seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time

import numpy as np
import zarr
import zarr.storage
from zarr.codecs import BloscCodec

from mcbackend.zarrio import ArrayAppender, Compression

CHUNK_BYTES = 4 << 20
WORKLOADS = {
    "300 float32 scalars": [(f"v{i}", ()) for i in range(300)],
    "big: (100,),(1000,),(100,100) f32": [("x", (100,)), ("y", (1000,)), ("z", (100, 100))],
}


class Counter:
    def __init__(self) -> None:
        self.files = 0
        self.bytes = 0

    def write(self, path: str, data: bytes) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + ".partial"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        self.files += 1
        self.bytes += len(data)


def chunk_length(shape) -> int:
    return max(1, CHUNK_BYTES // (4 * int(np.prod(shape, dtype=int))))


def rewrite(root, variables, flushes, counter):
    comp = Compression("blosc")
    apps = {
        n: ArrayAppender(n, np.dtype("float32"), s, chunk_length(s), comp) for n, s in variables
    }
    for i, flush in enumerate(flushes):
        for name, rows in flush.items():
            for path, data in apps[name].append(rows).items():
                counter.write(os.path.join(root, path), data)
        counter.write(os.path.join(root, "commit.json"), json.dumps({"draws": i}).encode())


class CountingStore(zarr.storage.LocalStore):
    counter: Counter

    async def set(self, key, value):
        self.counter.files += 1
        self.counter.bytes += len(value.to_bytes())
        return await super().set(key, value)


def shard(root, variables, flushes, counter):
    store = CountingStore(root)
    store.counter = counter
    group = zarr.open_group(store, mode="w")
    flush_len = len(next(iter(flushes[0].values())))
    arrays = {}
    for name, shape in variables:
        per_shard = max(flush_len, chunk_length(shape) // flush_len * flush_len)
        arrays[name] = group.create_array(
            name, shape=(0, *shape), dtype="float32", chunks=(flush_len, *shape),
            shards=(per_shard, *shape), compressors=[BloscCodec(cname="lz4", shuffle="shuffle")],
            fill_value=np.nan,
        )  # fmt: skip
    length = 0
    for flush in flushes:
        n = len(next(iter(flush.values())))
        for name, rows in flush.items():
            a = arrays[name]
            a.resize((length + n, *a.shape[1:]))
            a[length : length + n] = rows
        length += n
        counter.write(os.path.join(root, "commit.json"), json.dumps({"draws": length}).encode())


def staged(root, variables, flushes, counter):
    comp = Compression("blosc")
    apps = {
        n: ArrayAppender(n, np.dtype("float32"), s, chunk_length(s), comp) for n, s in variables
    }
    length = 0
    for flush in flushes:
        n = len(next(iter(flush.values())))
        parts, index, offset = [], {}, 0
        for name, rows in flush.items():
            encoded = comp.encode(rows)
            parts.append(encoded)
            index[name] = [offset, len(encoded)]
            offset += len(encoded)
            app = apps[name]
            full_before = app.length // app.chunk_length
            app.length += n
            app.tail = np.concatenate([app.tail, rows])
            while len(app.tail) >= app.chunk_length:  # a chunk became full: write it once
                piece, app.tail = app.tail[: app.chunk_length], app.tail[app.chunk_length :]
                counter.write(
                    os.path.join(root, name, "c", str(full_before), *["0"] * rows.ndim)[:None],
                    comp.encode(piece),
                )
                full_before += 1
        header = json.dumps(index).encode()
        counter.write(
            os.path.join(root, "_segments", f"{length:012d}-{length + n:012d}"),
            b"".join([*parts, header, len(header).to_bytes(8, "little")]),
        )
        length += n
        counter.write(os.path.join(root, "commit.json"), json.dumps({"draws": length}).encode())
    for name, app in apps.items():  # close: the partial last chunks, once
        if len(app.tail):
            counter.write(os.path.join(root, name, "c", "last"), comp.encode(app._padded(app.tail)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--draws", type=int, default=4000)
    parser.add_argument("--flush", type=int, default=64)
    parser.add_argument("--only", default=None)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    for wname, variables in WORKLOADS.items():
        data = {n: rng.normal(size=(args.draws, *s)).astype("float32") for n, s in variables}
        mib = sum(a.nbytes for a in data.values()) / 2**20
        flushes = [
            {n: a[lo : lo + args.flush] for n, a in data.items()}
            for lo in range(0, args.draws, args.flush)
        ]
        print(
            f"\n{wname}: {args.draws} draws, {mib:.1f} MiB, flush every {args.flush} draws ({len(flushes)} flushes)"
        )
        for sname, strategy in [("rewrite", rewrite), ("shard", shard), ("staged", staged)]:
            if args.only and sname not in args.only.split(","):
                continue
            root = tempfile.mkdtemp(prefix=f"mcb-{sname}-")
            counter = Counter()
            start = time.perf_counter()
            strategy(root, variables, flushes, counter)
            elapsed = time.perf_counter() - start
            shutil.rmtree(root)
            print(
                f"  {sname:8s} files {counter.files:7d} ({counter.files / len(flushes):6.1f}/flush)  "
                f"written {counter.bytes / 2**20:9.1f} MiB ({counter.bytes / 2**20 / mib:6.2f} per MiB of draws, "
                f"{counter.files / mib:7.1f} files/MiB)  {elapsed:7.2f} s"
            )


if __name__ == "__main__":
    main()
