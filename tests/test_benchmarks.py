"""The benchmark scripts still run (their --quick modes) and print what they promise."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def run(script: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.slow
def test_append_benchmark_prints_ratios_to_references_and_latencies():
    pytest.importorskip("zarr")
    pytest.importorskip("pyarrow")
    out = run(
        "append.py", "--quick", "--storage", "local", "--workloads", "big",
        "--backends", "numpy,zarr,parquet",
    )  # fmt: skip
    for reference in ("files", "files+fsync", "zarr codec", "parquet codec"):
        assert re.search(rf"^{re.escape(reference)} +\d+ +\[", out, re.M), out
    zarr = re.search(r"^zarr local +(\d+) .*$", out, re.M)
    assert zarr, out
    fields = zarr.group(0).split()
    # draws/s, MiB/s, five ratios, p50, p99, max, >5ms, files/MiB, size, raw figures
    assert all(f.endswith("x") for f in fields[4:9]), fields
    assert float(fields[13]) > 0  # files per MiB
    assert "flush_every=256" in out  # the flush settings are noted (Zarr v2: about 16 MiB)


@pytest.mark.slow
@pytest.mark.pymc
def test_pymc_benchmark_pairs_runs_with_pymc_nuts():
    out = run("pymc_sample.py", "--quick", "--models", "big", "--backends", "numpy", "--no-bare")
    assert re.search(
        r"^numpy +[\d.]+ +[\d.]+ +[\d.]+x +[\d.]+x +\[[\d.]+\] \| \[[\d.]+\]$", out, re.M
    ), out
