"""The small runs stored as golden archives under ``formats/golden/``.

``python formats/golden_runs.py`` writes them once per format version (an existing archive is
never rewritten). Tests read the committed archives with the current code and compare them
with ``expected_run()``, so every later version must keep reading every earlier layout.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import mcbackend as mcb
from mcbackend.meta import Coordinate, DataVariable, RunMeta, Variable
from mcbackend.npproto.utils import ndarray_from_numpy

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden"
RID = "golden01"
N_DRAWS = (13, 11)  # chain lengths; 13 is not a multiple of the flush size 5


def golden_meta() -> RunMeta:
    return RunMeta(
        rid=RID,
        variables=[
            Variable("mu", "float64", []),
            Variable("theta", "int32", [3], dims=["city"]),
            Variable("label", "str", []),
            Variable("ragged", "float32", [-1]),
            Variable("anydim", "int16", undefined_ndim=True),
            Variable("a/b c", "uint8", [2, 2], is_deterministic=True),
        ],
        sample_stats=[
            Variable("in_warmup", "bool", []),
            Variable("energy", "float64", []),
            Variable("warning", "str", []),
        ],
        coordinates=[Coordinate("city", ndarray_from_numpy(np.array(["Bonn", "Köln", "Jülich"])))],
        data=[
            DataVariable("y", ndarray_from_numpy(np.array([0.5, 1.5, -2.0])), ["city"], True),
            DataVariable(
                "x", ndarray_from_numpy(np.arange(6, dtype="int64").reshape(2, 3)), [], False
            ),
        ],
        attributes={"sampler": mcb.ExtendedValue(string_value="golden")},
    )


def golden_draw(chain: int, i: int) -> tuple[dict, dict]:
    """Draw ``i`` of ``chain``: deterministic, so tests can recompute it."""
    k = 100 * chain + i
    draw = {
        "mu": np.float64(k) / 7,
        "theta": np.array([k, -k, k * k], dtype="int32"),
        "label": np.array(f"draw-{k}-ä"),
        "ragged": np.arange(k % 4, dtype="float32") + 0.5,
        "anydim": np.full((1, 2)[: k % 3], k, dtype="int16"),
        "a/b c": np.array([[k % 256, 1], [2, 3]], dtype="uint8"),
    }
    stats = {"in_warmup": i < 4, "energy": -float(k), "warning": np.array("" if k % 5 else "ok")}
    return draw, stats


#: A run laid out as PyMC stores it (``sampler_<i>__<stat>``; two samplers report ``accept``),
#: kept in ``zarr-v2`` as written before Zarr v2 named PyMC runs' arrays as PyMC does
#: (mcbackend at commit ff4ddbf: one array per stored stat, under its stored name).
PYMC_RID = "golden02-pymc"
PYMC_DRAWS = (7, 6)
PYMC_TUNE = 3


def golden_pymc_meta() -> RunMeta:
    return RunMeta(
        rid=PYMC_RID,
        variables=[Variable("mu", "float64", []), Variable("sigma_log__", "float64", [])],
        sample_stats=[
            Variable("sampler_0__diverging", "bool", []),
            Variable("sampler_0__model_logp", "float64", []),
            Variable("sampler_0__warning", "str", []),
            Variable("sampler_1__accept", "float64", []),
            Variable("sampler_2__accept", "float64", []),
            Variable("in_warmup", "bool", []),
        ],
        attributes={"inference_library": mcb.ExtendedValue(string_value="pymc")},
    )


def golden_pymc_draw(chain: int, i: int) -> tuple[dict, dict]:
    k = 100 * chain + i
    draw = {"mu": k / 8, "sigma_log__": -k / 4}
    stats = {
        "sampler_0__diverging": k % 3 == 0,
        "sampler_0__model_logp": -k / 2,
        "sampler_0__warning": "" if k % 4 else "{}",
        "sampler_1__accept": k / 16,
        "sampler_2__accept": k / 32,
        "in_warmup": i < PYMC_TUNE,
    }
    return draw, stats


def write(backend: mcb.Backend) -> None:
    run = backend.init_run(golden_meta())
    for c, n in enumerate(N_DRAWS):
        chain = run.init_chain(c)
        for i in range(n):
            chain.append(*golden_draw(c, i))
    run.close()


def main() -> None:
    layouts = [
        ("zarr", 1, lambda target: mcb.ZarrBackend(target, format_version=1, flush_every=5)),
        # 32-byte chunks: 4 float64 draws, so chains span complete and padded chunks
        (
            "zarr",
            2,
            lambda target: mcb.ZarrBackend(target, format_version=2, chunk_bytes=32, flush_every=5),
        ),
        ("parquet", 1, lambda target: mcb.ParquetBackend(target, flush_every=5)),
    ]
    pymc_target = GOLDEN / "zarr-v2" / PYMC_RID
    if not pymc_target.exists():
        run = mcb.ZarrBackend(str(pymc_target.parent), chunk_bytes=32, flush_every=4).init_run(
            golden_pymc_meta()
        )
        for c, n in enumerate(PYMC_DRAWS):
            chain = run.init_chain(c)
            for i in range(n):
                chain.append(*golden_pymc_draw(c, i))
        run.close()
        print(f"wrote {pymc_target}")
    for fmt, version, backend in layouts:
        target = GOLDEN / f"{fmt}-v{version}"
        if (target / RID).exists():
            print(f"{target} exists; golden archives are never rewritten.")
            continue
        write(backend(str(target)))
        print(f"wrote {target / RID}")


if __name__ == "__main__":
    sys.exit(main())
