"""Separate processes for the Parquet v2 concurrency tests.

python -m tests.parquet_worker write URL CHAIN N FLUSH_EVERY OPTIONS_JSON
    open the run at URL, write chain CHAIN (N draws), close the run handle
python -m tests.parquet_worker read URL STOP_FILE MAX_READS OPTIONS_JSON
    read every chain of the run until STOP_FILE exists; print reads and failures as JSON
"""

from __future__ import annotations

import json
import os
import sys
import traceback

import numpy as np

import mcbackend as mcb
from mcbackend.meta import Coordinate, RunMeta, Variable
from mcbackend.npproto.utils import ndarray_from_numpy

N_WARMUP = 3


def meta(rid: str) -> RunMeta:
    return RunMeta(
        rid=rid,
        variables=[
            Variable("mu", "float64", []),
            Variable("z", "float32", [3, 4], dims=["a", "b"]),
            Variable("label", "str", []),
        ],
        sample_stats=[Variable("in_warmup", "bool", []), Variable("lp", "float64", [])],
        coordinates=[Coordinate("a", ndarray_from_numpy(np.array(["x", "y", "z"])))],
    )


def draw(chain: int, i: int) -> tuple[dict, dict]:
    k = 1000 * chain + i
    values = {
        "mu": np.float64(k),
        "z": (np.arange(12, dtype="float32").reshape(3, 4) + k),
        "label": np.array(f"c{chain}d{i}"),
    }
    return values, {"in_warmup": i < N_WARMUP, "lp": -float(k)}


def write(url: str, chain_number: int, n: int, flush_every: int, options: dict) -> None:
    run = mcb.open_run(url, options, flush_every=flush_every, flush_seconds=None)
    chain = run.init_chain(chain_number)
    for i in range(n):
        chain.append(*draw(chain_number, i))
    run.close()


def read(url: str, stop_file: str, max_reads: int, options: dict) -> None:
    reads, failures = 0, []
    while reads < max_reads and not os.path.exists(stop_file):
        try:
            run = mcb.open_run(url, options)
            for chain in run.get_chains():
                mu = chain.get_draws("mu")
                expected = 1000 * chain.cmeta.chain_number + np.arange(len(mu))
                if not np.array_equal(mu, expected):
                    failures.append(f"chain {chain.cmeta.chain_number}: wrong values")
            reads += 1
        except Exception:
            failures.append(traceback.format_exc(limit=3))
            reads += 1
        progress = f"{stop_file}.reads"
        with open(progress + ".tmp", "w") as f:
            f.write(str(reads))
        os.replace(progress + ".tmp", progress)  # the test paces its compactions by it
    print(json.dumps({"reads": reads, "failures": failures}))


if __name__ == "__main__":
    command, url = sys.argv[1], sys.argv[2]
    if command == "write":
        chain_number, n, flush_every = map(int, sys.argv[3:6])
        write(url, chain_number, n, flush_every, json.loads(sys.argv[6]))
    else:
        read(url, sys.argv[3], int(sys.argv[4]), json.loads(sys.argv[5]))
