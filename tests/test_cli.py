"""The mcbackend command line: every command with real output, and bad input."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import mcbackend as mcb
from mcbackend._inferencedata import python_to_extended_value
from mcbackend.cli import main
from mcbackend.meta import Coordinate, RunMeta, Variable
from mcbackend.npproto.utils import ndarray_from_numpy


def make_run(backend, rid="cli-run", n=60):
    meta = RunMeta(
        rid=rid,
        variables=[Variable("mu", "float64", [2], dims=["city"]), Variable("k", "int32", [])],
        sample_stats=[Variable("in_warmup", "bool", [])],
        coordinates=[Coordinate("city", ndarray_from_numpy(np.array(["A", "B"])))],
    )
    for key, value in {"tune": 500, "sampling_time": 2.5, "sampler": "NUTS"}.items():
        meta.attributes[key] = python_to_extended_value(value)
    run = backend.init_run(meta)
    rng = np.random.default_rng(0)
    for c in range(2):
        chain = run.init_chain(c)
        for i in range(n):
            chain.append(
                {"mu": rng.normal(size=2) + np.array([1, -1]), "k": i}, {"in_warmup": i < 10}
            )
    run.close()
    return run


def invoke(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def zarr_root(tmp_path):
    make_run(mcb.ZarrBackend(str(tmp_path / "runs")))
    return tmp_path / "runs"


def test_ls(zarr_root):
    result = invoke("ls", str(zarr_root))
    assert result.exit_code == 0
    header, row = result.output.splitlines()
    assert header.split()[:4] == ["rid", "created", "chains", "draws"]
    assert row.split()[0] == "cli-run" and row.split()[-4:] == ["2", "120", "mu,", "k"]


def test_info(zarr_root):
    result = invoke("info", str(zarr_root / "cli-run"))
    assert result.exit_code == 0
    assert "[draw] mu: float64 shape=(2,) dims=['city']" in result.output
    assert "[stat] in_warmup: bool shape=()" in result.output
    assert "0: 60 draws" in result.output and "1: 60 draws" in result.output
    assert "size:" in result.output and "KiB" in result.output
    # integers stay integers, floats floats
    assert "  tune: 500\n" in result.output and "  sampling_time: 2.5\n" in result.output


def test_summary(zarr_root):
    result = invoke("summary", str(zarr_root / "cli-run"))
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert {"mean", "sd", "hdi89_lb", "hdi89_ub", "ess_bulk", "r_hat"} <= set(lines[0].split())
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == {"mu[A]", "mu[B]", "k"}
    assert abs(float(rows["mu[A]"][1]) - 1) < 0.5  # the mean of the posterior draws


@pytest.mark.parametrize("fmt", ["zarr", "parquet"])
def test_copy(zarr_root, tmp_path, fmt):
    result = invoke("copy", str(zarr_root / "cli-run"), f"{fmt}+{tmp_path / 'copy'}")
    assert result.exit_code == 0, result.output
    assert "copied cli-run (120 draws)" in result.output
    source = mcb.open_run(str(zarr_root / "cli-run"))
    copied = mcb.open_run(str(tmp_path / "copy" / "cli-run"))
    assert type(copied).__name__.lower().startswith(fmt)
    for a, b in zip(source.get_chains(), copied.get_chains()):
        np.testing.assert_array_equal(a.get_draws("mu"), b.get_draws("mu"))
        np.testing.assert_array_equal(a.get_stats("in_warmup"), b.get_stats("in_warmup"))


def test_export_zip_opens_anywhere(zarr_root, tmp_path):
    archive = tmp_path / "shared.zip"
    result = invoke("export", str(zarr_root / "cli-run"), str(archive))
    assert result.exit_code == 0, result.output
    assert zipfile.ZipFile(archive).namelist()
    run = mcb.open_run(f"zip://cli-run::{archive}")
    np.testing.assert_array_equal(
        run.get_chains()[1].get_draws("k"),
        mcb.open_run(str(zarr_root / "cli-run")).get_chains()[1].get_draws("k"),
    )
    assert "1: 60 draws" in invoke("info", str(archive)).output
    assert invoke("verify", str(archive)).exit_code == 0


@pytest.mark.parametrize(
    ("version", "chunk"), [(1, "chain_1/draws/mu/c/0/0"), (2, "posterior/mu/c/1/0/0")]
)
def test_verify_reports_the_corrupt_chunk(tmp_path, version, chunk):
    make_run(mcb.ZarrBackend(str(tmp_path), format_version=version))
    ok = invoke("verify", str(tmp_path / "cli-run"))
    assert ok.exit_code == 0 and "OK cli-run: 2 chains, 120 draws verified" in ok.output
    path = tmp_path / "cli-run" / chunk
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    bad = invoke("verify", str(tmp_path / "cli-run"))
    assert bad.exit_code == 1
    (line,) = [x for x in bad.output.splitlines() if x.startswith("CORRUPT")]
    assert chunk in line
    assert ("checksum" if version == 1 else "CRC-32C mismatch") in line
    assert "1 problem(s)" in bad.output


def test_verify_reports_corrupt_parquet_page(tmp_path):
    make_run(mcb.ParquetBackend(str(tmp_path)))
    (part,) = (tmp_path / "cli-run").glob("chain=0/*.parquet")
    data = bytearray(part.read_bytes())
    data[200] ^= 0xFF  # inside the first column's data pages
    part.write_bytes(bytes(data))
    bad = invoke("verify", str(tmp_path / "cli-run"))
    assert bad.exit_code == 1
    assert (
        f"{part.name}: row group 0 is corrupt" in bad.output
        or f"{part.name}: unreadable" in bad.output
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["info", "foo://somewhere/run"], "Unknown URL scheme"),
        (["info", "{root}/missing"], "No run at"),
        (["summary", "{root}"], "not an mcbackend run"),
        (["ls", "{root}/nowhere"], "No directory at"),
        (["info", "{root}/cli-run", "-o", "not json"], "storage options are not JSON"),
        (["export", "{root}/cli-run", "out.tar"], "must end in .zip"),
        (["info", "{corrupt}"], "should hold exactly one run"),
    ],
)
def test_bad_input_fails_clearly(zarr_root, tmp_path, args, message):
    corrupt = tmp_path / "corrupt.zip"
    with zipfile.ZipFile(corrupt, "w") as z:
        z.writestr("a/x", "1")
        z.writestr("b/y", "2")
    args = [a.format(root=zarr_root, corrupt=corrupt) for a in args]
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0
    assert message in result.output


def test_clickhouse_urls(clickhouse_database, tmp_path):
    import clickhouse_driver

    from .conftest import CLICKHOUSE_HOST

    backend = mcb.ClickHouseBackend(
        clickhouse_driver.Client(CLICKHOUSE_HOST, database=clickhouse_database)
    )
    make_run(backend, rid="ch-run")
    url = f"clickhouse://{CLICKHOUSE_HOST}:9000/{clickhouse_database}"
    assert "ch-run" in invoke("ls", url).output
    assert "0: 60 draws" in invoke("info", f"{url}/ch-run").output
    result = invoke("copy", f"{url}/ch-run", f"zarr+{tmp_path}")
    assert result.exit_code == 0, result.output
    back = invoke("copy", str(tmp_path / "ch-run"), f"parquet+{tmp_path / 'pq'}")
    assert back.exit_code == 0
    original = backend.get_run("ch-run").get_chains()[1].get_draws("mu")
    np.testing.assert_array_equal(
        mcb.open_run(str(tmp_path / "pq" / "ch-run")).get_chains()[1].get_draws("mu"), original
    )
    assert invoke("verify", f"{url}/ch-run").exit_code == 0


def test_console_script_is_installed(zarr_root):
    exe = shutil.which("mcbackend", path=os.path.dirname(sys.executable))
    out = subprocess.run([exe, "ls", str(zarr_root)], capture_output=True, text=True, check=True)
    assert "cli-run" in out.stdout


@pytest.mark.parametrize("fmt", ["zarr", "parquet"])
def test_read_shared_run_over_http(tmp_path, http_root, fmt):
    backend = mcb.ZarrBackend(str(tmp_path)) if fmt == "zarr" else mcb.ParquetBackend(str(tmp_path))
    make_run(backend)
    local = mcb.open_run(str(tmp_path / "cli-run"))
    remote = mcb.open_run(f"{http_root}/cli-run", read_only=True)
    assert [len(c) for c in remote.get_chains()] == [60, 60]
    np.testing.assert_array_equal(
        remote.get_chains()[0].get_draws("mu"), local.get_chains()[0].get_draws("mu")
    )
    dt = remote.to_inferencedata()
    np.testing.assert_array_equal(dt["posterior"]["k"].values[1], np.arange(10, 60))
    with pytest.raises(PermissionError, match="read-only"):
        remote.get_chains()[0].append({"mu": [0.0, 0.0], "k": 1}, {"in_warmup": False})
    assert "OK cli-run" in invoke("verify", f"{http_root}/cli-run").output
    summary = invoke("summary", f"{http_root}/cli-run")
    assert summary.exit_code == 0 and "mu[A]" in summary.output


def test_copy_turns_a_parquet_v1_run_into_v2(tmp_path):
    """``mcbackend copy`` of the golden v1 archive writes a v2 run; ``info`` names both versions."""
    golden = Path(__file__).resolve().parent.parent / "formats" / "golden" / "parquet-v1"
    source = str(golden / "golden01")
    assert "format:   parquet v1" in invoke("info", source).output
    result = invoke("copy", source, f"parquet+{tmp_path}")
    assert result.exit_code == 0, result.output
    assert "format:   parquet v2" in invoke("info", str(tmp_path / "golden01")).output
    old, new = mcb.open_run(source, read_only=True), mcb.open_run(str(tmp_path / "golden01"))
    names = sorted(p.name for p in (tmp_path / "golden01").iterdir())
    # claim, leases, marker, sidecar
    assert names[:4] == ["_claim.json", "_mcbackend", "_mcbackend.json", "_meta.pb"]
    for a, b in zip(old.get_chains(), new.get_chains(), strict=True):
        for var in old.meta.variables:
            for x, y in zip(a.get_draws(var.name), b.get_draws(var.name), strict=True):
                np.testing.assert_array_equal(x, y)
