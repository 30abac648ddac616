"""Cost of the Zarr v3 array documents a flush writes: ``mcbackend.zarrio``'s hand-written JSON
against zarr-python 3's own metadata model (``ArrayV3Metadata``), per array and per flush.

A flush rewrites every array's ``zarr.json`` (its shape grew). Measured three ways:

- ``hand``: ``ArrayAppender.document()`` (what mcbackend does);
- ``zarr, kept``: an ``ArrayV3Metadata`` built once per array, per flush ``update_shape`` and
  ``to_buffer_dict`` (the cheapest use of zarr-python's model);
- ``zarr, parsed``: ``ArrayV3Metadata.from_dict`` + ``to_buffer_dict`` per flush;

and, for scale, encoding one 1024-draw float64 chunk (blosc + crc32c), which a flush also does.

    python benchmarks/zarr_metadata.py [arrays per flush, default 200]
"""

from __future__ import annotations

import json
import sys
import timeit

import numpy as np
from zarr.core.buffer import default_buffer_prototype
from zarr.core.metadata.v3 import ArrayV3Metadata

from mcbackend.zarrio import ArrayAppender, Compression

PROTOTYPE = default_buffer_prototype()


def appenders(n: int) -> list[ArrayAppender]:
    dtypes = ["float64", "float32", "int64", "bool", "complex128", "<U0"]
    return [
        ArrayAppender(
            f"chain_0/draws/v{i}",
            np.dtype(dtypes[i % len(dtypes)]),
            (3,),
            1024,
            Compression(),
            {"mcbackend": {"name": f"v{i}"}},
            ["draw", f"v{i}_dim_0"],
        )
        for i in range(n)
    ]


def per_call(fn, number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number


def main(n_arrays: int = 200) -> None:
    arrays = appenders(n_arrays)
    kept = [ArrayV3Metadata.from_dict(json.loads(a.document())) for a in arrays]
    dicts = [json.loads(a.document()) for a in arrays]

    def hand():
        for a in arrays:
            a.length += 1024
            a.document()

    def zarr_kept():
        for i, m in enumerate(kept):
            kept[i] = m = m.update_shape((m.shape[0] + 1024, *m.shape[1:]))
            m.to_buffer_dict(PROTOTYPE)["zarr.json"].to_bytes()

    def zarr_parsed():
        for d in dicts:
            d["shape"][0] += 1024
            ArrayV3Metadata.from_dict(dict(d)).to_buffer_dict(PROTOTYPE)["zarr.json"].to_bytes()

    chunk = np.random.default_rng(0).normal(size=(1024, 3))
    compression = Compression()
    results = {
        "hand": per_call(hand, 20),
        "zarr, kept": per_call(zarr_kept, 5),
        "zarr, parsed": per_call(zarr_parsed, 5),
    }
    encode = per_call(lambda: compression.encode(chunk), 200)
    print(f"{n_arrays} arrays per flush (shape (n, 3), six dtypes, blosc, dimension_names)")
    for name, seconds in results.items():
        print(
            f"  {name:13s} {seconds * 1e3:8.2f} ms per flush  {seconds / n_arrays * 1e6:7.1f} µs "
            f"per array  ({seconds / results['hand']:.1f}x hand)"
        )
    print(f"  for scale: encoding one 1024x3 float64 chunk {encode * 1e6:.1f} µs")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
