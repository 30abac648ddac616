"""A sampler stand-in for the viewer tests, run as its own process.

    python -m tests.viewer_sampler ROOT RID [CHAINS] [TUNE] [DRAWS] [PAUSE]

Writes CHAINS chains of an AR(1) random walk (``mu`` and ``theta[school]``) to a Zarr run,
TUNE warm-up then DRAWS posterior draws each, 10 draws per chain at a time with PAUSE
seconds between, flushing at least every 0.2 s, with ``in_warmup``, ``diverging`` and ``lp``
stats and PyMC-like ``tune``/``draws``/``chains`` attributes. Prints "done" at the end.
"""

import sys
import time

import numpy as np

import mcbackend as mcb
from mcbackend._inferencedata import python_to_extended_value
from mcbackend.meta import Coordinate, RunMeta, Variable
from mcbackend.npproto.utils import ndarray_from_numpy


def run_meta(rid: str, chains: int, tune: int, draws: int) -> RunMeta:
    meta = RunMeta(
        rid=rid,
        variables=[Variable("mu", "float64", []), Variable("theta", "float64", [3], ["school"])],
        sample_stats=[
            Variable("in_warmup", "bool", []),
            Variable("diverging", "bool", []),
            Variable("lp", "float64", []),
        ],
        coordinates=[Coordinate("school", ndarray_from_numpy(np.array(["A", "B", "C"])))],
    )
    for key, value in {"sampler": "AR1", "tune": tune, "draws": draws, "chains": chains}.items():
        meta.attributes[key] = python_to_extended_value(value)
    return meta


def ar1(rng: np.random.Generator, n: int, start: np.ndarray) -> np.ndarray:
    out = np.empty((n, *start.shape))
    x = start
    for i in range(n):
        x = 0.5 * x + rng.normal(size=start.shape)
        out[i] = x
    return out


def main() -> None:
    root, rid = sys.argv[1], sys.argv[2]
    chains, tune, draws = (
        int(a) for a in (sys.argv[3:6] + ["2", "50", "250"][len(sys.argv[3:6]) :])
    )
    pause = float(sys.argv[6]) if len(sys.argv) > 6 else 0.05
    backend = mcb.ZarrBackend(root, flush_seconds=0.2)
    run = backend.init_run(run_meta(rid, chains, tune, draws))
    handles = [run.init_chain(c) for c in range(chains)]
    rng = np.random.default_rng(42)
    state = [(np.zeros(()), np.zeros(3)) for _ in handles]
    for lo in range(0, tune + draws, 10):
        n = min(10, tune + draws - lo)
        for c, chain in enumerate(handles):
            mu, theta = ar1(rng, n, state[c][0]), ar1(rng, n, state[c][1])
            state[c] = (mu[-1], theta[-1])
            step = np.arange(lo, lo + n)
            chain.append_many(
                {"mu": mu, "theta": theta},
                {
                    "in_warmup": step < tune,
                    "diverging": (step % 37 == 5),
                    "lp": -0.5 * (mu**2 + (theta**2).sum(axis=1)),
                },
            )
        time.sleep(pause)
    for chain in handles:
        chain.close()
    print("done", flush=True)


if __name__ == "__main__":
    main()
