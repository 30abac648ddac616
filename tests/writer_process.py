"""A sampler stand-in run as a separate process by the crash and concurrency tests.

    python -m tests.writer_process URL RID FLUSH_EVERY [STORAGE_OPTIONS_JSON] [--resume]

Appends draw i = {"x": [i, -i], "label": str(i)} forever (flushing every FLUSH_EVERY draws)
and prints the committed length after each flush, so the parent knows when to kill it.
"""

import json
import sys

import numpy as np

import mcbackend as mcb
from mcbackend.meta import RunMeta, Variable


def expected_draw(i: int) -> dict:
    return {"x": np.array([i, -i], dtype="int64"), "label": np.array(str(i))}


def meta(rid: str) -> RunMeta:
    return RunMeta(
        rid=rid,
        variables=[Variable("x", "int64", [2]), Variable("label", "str", [])],
        sample_stats=[Variable("in_warmup", "bool", [])],
    )


def main() -> None:
    url, rid, flush_every = sys.argv[1], sys.argv[2], int(sys.argv[3])
    options = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
    fmt = url.split("+", 1)[0] if "+" in url else "zarr"
    root = url.split("+", 1)[1] if "+" in url else url
    extra = {"zarr": {"format_version": 1}, "zarr2": {"format_version": 2, "chunk_bytes": 64}}
    extra = extra.get(fmt, {})
    cls = mcb.ParquetBackend if fmt == "parquet" else mcb.ZarrBackend
    backend = cls(root, options, flush_every=flush_every, flush_seconds=None, **extra)
    chain = backend.init_run(meta(rid)).init_chain(0)
    i = 0
    while True:
        chain.append(expected_draw(i), {"in_warmup": i < 5})
        i += 1
        if i % flush_every == 0:
            print(i, flush=True)


if __name__ == "__main__":
    main()
