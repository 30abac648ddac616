"""The viewer's JSON API, served for real on loopback, over runs on disk, moto S3 and ClickHouse."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
import uuid
import zipfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

import arviz as az

import mcbackend as mcb
from tests.conftest import free_port
from tests.viewer_sampler import ar1, run_meta
from tests.viewer_server import get, get_json, running_viewer

TUNE, DRAWS = 40, 160
MCBACKEND = os.path.join(os.path.dirname(sys.executable), "mcbackend")


def write_run(backend: mcb.Backend, rid: str, chains: int = 2, draws: int = DRAWS) -> mcb.Run:
    """A finished run like tests.viewer_sampler writes: divergent every 37th draw from 5."""
    run = backend.init_run(run_meta(rid, chains, TUNE, draws))
    rng = np.random.default_rng(7)
    for c in range(chains):
        n = TUNE + draws
        step = np.arange(n)
        mu, theta = ar1(rng, n, np.zeros(())), ar1(rng, n, np.zeros(3))
        chain = run.init_chain(c)
        chain.append_many(
            {"mu": mu, "theta": theta},
            {"in_warmup": step < TUNE, "diverging": step % 37 == 5, "lp": -0.5 * mu**2},
        )
        chain.close()
    return run


def snapshot(root: str) -> dict[str, tuple[int, int]]:
    out = {}
    for folder, _, files in os.walk(root):
        for name in files:
            st = os.stat(os.path.join(folder, name))
            out[os.path.join(folder, name)] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture
def local_root(tmp_path):
    root = str(tmp_path / "runs")
    write_run(mcb.ZarrBackend(root), "zarr-run")
    write_run(mcb.ParquetBackend(root), "parquet-run", chains=3)
    return root


def check_run_api(base: str, rid: str, run: mcb.Run, chains: int) -> None:
    """Everything the run page reads, checked against the run read directly."""
    listed = {r["rid"]: r for r in get_json(base, "/api/runs")["runs"]}
    row = listed[rid]
    assert row["chains"] == chains
    assert row["draws"] == [{"chain": c, "warmup": TUNE, "posterior": DRAWS} for c in range(chains)]
    assert row["variables"] == ["mu", "theta"]
    assert row["sampler"] == "AR1"
    assert row["state"] == "complete" and row["writing"] is False
    assert row["created_at"]

    meta = get_json(base, f"/api/runs/{rid}")
    assert meta["coords"] == {"school": {"size": 3, "values": ["A", "B", "C"]}}
    assert meta["sampler"] == {"sampler": "AR1", "tune": TUNE, "draws": DRAWS, "chains": chains}
    theta = next(v for v in meta["variables"] if v["name"] == "theta")
    assert theta["elements"] == ["[A]", "[B]", "[C]"] and theta["dims"] == ["school"]

    progress = get_json(base, f"/api/runs/{rid}/progress")
    divergent = [i for i in range(TUNE + DRAWS) if i % 37 == 5]
    after_warmup = sum(i >= TUNE for i in divergent)
    assert [c["divergences"] for c in progress["chains"]] == [after_warmup] * chains
    assert [c["warmup_divergences"] for c in progress["chains"]] == [1] * chains
    assert all(c["in_warmup"] is False for c in progress["chains"])

    draws = get_json(base, f"/api/runs/{rid}/draws?var=theta&element=2&points=60")
    for trace, chain in zip(draws["traces"], run.get_chains()):
        values = chain.get_draws("theta")[:, 2]
        assert len(trace["x"]) <= 60 and trace["draws"] == len(values)
        # min/max buckets keep every extreme of the chain
        assert min(trace["y"]) == pytest.approx(values.min(), rel=1e-5)
        assert max(trace["y"]) == pytest.approx(values.max(), rel=1e-5)
        flagged = np.flatnonzero(chain.get_stats("diverging"))
        assert trace["divergent"]["x"] == flagged.tolist()
        assert trace["divergent"]["y"] == pytest.approx(values[flagged], rel=1e-5)
    for shares in draws["rank"]["chains"]:
        assert sum(shares) == pytest.approx(1.0, abs=1e-3)
    grid = np.array(draws["density"]["x"])
    for density in draws["density"]["chains"]:
        assert np.trapezoid(density, grid) == pytest.approx(1.0, abs=0.02)

    diagnostics = get_json(base, f"/api/runs/{rid}/diagnostics")
    expected = az.summary(run.to_inferencedata(), ci_kind="hdi")
    assert diagnostics["thin"] == 1
    assert [r["label"] for r in diagnostics["rows"]] == list(expected.index)
    assert diagnostics["columns"] == list(expected.columns)
    got = np.array([r["values"] for r in diagnostics["rows"]], dtype=float)
    np.testing.assert_allclose(got, expected.to_numpy(dtype=float), rtol=1e-9)


def test_local_directory_of_zarr_and_parquet_runs(local_root, tmp_path):
    before = snapshot(local_root)
    with running_viewer(local_root) as base:
        assert {r["rid"] for r in get_json(base, "/api/runs")["runs"]} == {
            "zarr-run",
            "parquet-run",
        }
        for rid, chains in [("zarr-run", 2), ("parquet-run", 3)]:
            run = mcb.open_run(os.path.join(local_root, rid))
            check_run_api(base, rid, run, chains)
        status, page, kind = get(base, "/runs/zarr-run")
        assert status == 200 and kind.startswith("text/html") and 'data-rid="zarr-run"' in page

        # the download is what `mcbackend export` writes: a zip open_run reads back
        with urllib.request.urlopen(base + "/runs/parquet-run/download", timeout=60) as r:
            status, body, kind = r.status, r.read(), r.headers["content-type"]
        assert status == 200 and kind == "application/zip"
        archive = tmp_path / "download.zip"
        archive.write_bytes(body)
        assert zipfile.is_zipfile(archive)
        copy = mcb.open_run(f"zip://parquet-run::{archive}", read_only=True)
        original = mcb.open_run(os.path.join(local_root, "parquet-run"))
        for a, b in zip(copy.get_chains(), original.get_chains()):
            np.testing.assert_array_equal(a.get_draws("theta"), b.get_draws("theta"))
    assert snapshot(local_root) == before, "the viewer wrote to storage"


@pytest.mark.parametrize(
    "path, status, message",
    [
        ("/api/runs/missing", 404, "No run 'missing'"),
        ("/api/runs/missing/progress", 404, "No run 'missing'"),
        ("/api/runs/..%2F..%2Fetc/draws?var=mu", 404, "Not Found"),
        ("/api/runs/%2E%2E/progress", 404, "No run '..'"),
        ("/api/runs/zarr-run/draws?var=..%2Fsecret", 400, "no posterior variable '../secret'"),
        ("/api/runs/zarr-run/draws?var=mu&group=attrs", 400, "group must be"),
        ("/api/runs/zarr-run/draws?var=theta&element=3", 400, "element must be between 0 and 2"),
        ("/api/runs/zarr-run/draws?var=mu&points=x", 400, "points must be an integer"),
        ("/runs/missing/download", 404, "No run 'missing'"),
    ],
)
def test_bad_requests_get_clear_json_errors(local_root, path, status, message):
    with running_viewer(local_root) as base:
        got, body, kind = get(base, path)
    assert got == status and kind == "application/json"
    assert message in body["error"] and "Traceback" not in body["error"]


def test_missing_run_page_is_a_clear_page(local_root):
    with running_viewer(local_root) as base:
        status, page, kind = get(base, "/runs/missing")
        assert status == 404 and kind.startswith("text/html")
        assert "Run not found" in page and "Traceback" not in page
        status, page, _ = get(base, "/no/such/page")
        assert status == 404 and "Traceback" not in page


def test_growing_run_shows_new_draws_and_sampling(tmp_path):
    root = str(tmp_path)
    run = mcb.ZarrBackend(root, flush_seconds=None).init_run(run_meta("live", 1, TUNE, DRAWS))
    chain = run.init_chain(0)
    rng = np.random.default_rng(1)

    def add(lo, n):
        step = np.arange(lo, lo + n)
        chain.append_many(
            {"mu": ar1(rng, n, np.zeros(())), "theta": ar1(rng, n, np.zeros(3))},
            {"in_warmup": step < TUNE, "diverging": step % 37 == 5, "lp": np.zeros(n)},
        )
        chain.flush()

    add(0, 30)
    with running_viewer(root) as base:
        first = get_json(base, "/api/runs/live/progress")
        assert first["chains"][0] | {"draws_per_second": 0} == {
            "chain": 0,
            "draws": 30,
            "warmup": 30,
            "posterior": 0,
            "in_warmup": True,
            "draws_per_second": 0,
            "divergences": 0,
            "warmup_divergences": 1,
        }
        assert get_json(base, "/api/runs/live/diagnostics")["rows"] == []
        add(30, 50)
        second = get_json(base, "/api/runs/live/progress")
        assert second["chains"][0]["draws"] == 80
        assert second["chains"][0]["warmup"] == TUNE and second["chains"][0]["posterior"] == 40
        assert second["state"] == "sampling" and second["writing"] is True
        assert second["chains"][0]["draws_per_second"] > 0
        trace = get_json(base, "/api/runs/live/draws?var=mu")["traces"][0]
        assert trace["draws"] == 80 and len(trace["x"]) == 80
        # recomputed at most every MIN_INTERVAL seconds while sampling; it says what it covers
        for _ in range(100):
            diagnostics = get_json(base, "/api/runs/live/diagnostics")
            if diagnostics["lengths"] == [80]:
                break
            assert diagnostics["lengths"] == [30]
            time.sleep(0.1)
        assert len(diagnostics["rows"]) == 4 and diagnostics["draws"] == 40
        listed = get_json(base, "/api/runs")["runs"][0]
        assert listed["state"] == "sampling" and listed["draws"][0]["posterior"] == 40


@pytest.mark.s3
def test_runs_on_s3(s3_options, s3_bucket):
    root = f"{s3_bucket}/runs"
    write_run(mcb.ZarrBackend(root, s3_options), "s3-zarr")
    write_run(mcb.ParquetBackend(root, s3_options), "s3-parquet")
    with running_viewer(root, s3_options) as base:
        check_run_api(base, "s3-zarr", mcb.open_run(f"{root}/s3-zarr", s3_options), 2)
        assert get_json(base, "/api/runs/s3-zarr")["size"] > 0
        parquet = get_json(base, "/api/runs/s3-parquet/progress")["chains"]
        assert [(c["warmup"], c["posterior"]) for c in parquet] == [(TUNE, DRAWS)] * 2
        trace = get_json(base, "/api/runs/s3-parquet/draws?var=theta&element=1")["traces"][1]
        expected = mcb.open_run(f"{root}/s3-parquet", s3_options).get_chains()[1]
        assert trace["y"] == pytest.approx(expected.get_draws("theta")[:, 1], rel=1e-5)


@pytest.mark.clickhouse
def test_runs_in_clickhouse(clickhouse_database):
    url = f"clickhouse://127.0.0.1:9000/{clickhouse_database}"
    backend = mcb.open_backend(url)
    rid = f"viewer_{uuid.uuid4().hex[:8]}"  # the database is shared with other tests
    write_run(backend, rid)
    with running_viewer(url) as base:
        check_run_api(base, rid, backend.get_run(rid), 2)
        status, body, _ = get(base, f"/api/runs/{rid}_chain_0")
        assert status == 404
        # the page polls in parallel: every answer comes back whole
        paths = ["/api/runs", "/progress", "/draws?var=mu", "/diagnostics", ""] * 4
        paths = [p if p.startswith("/api") else f"/api/runs/{rid}{p}" for p in paths]
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda p: get(base, p)[0], paths))
        assert statuses == [200] * len(paths)


@pytest.mark.clickhouse
def test_clickhouse_database_without_runs_is_refused_untouched(clickhouse_database):
    import clickhouse_driver

    from mcbackend.viewer import RunSource

    empty = f"{clickhouse_database}_empty"
    client = clickhouse_driver.Client("127.0.0.1")
    client.execute(f"CREATE DATABASE {empty}")
    try:
        with pytest.raises(mcb.RunNotFoundError, match="holds no mcbackend runs"):
            RunSource(f"clickhouse://127.0.0.1:9000/{empty}")
        assert client.execute(f"SHOW TABLES FROM {empty}") == []
    finally:
        client.execute(f"DROP DATABASE {empty}")


def test_serve_command_prints_address_and_warns_off_loopback(local_root):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for host, warned in [("127.0.0.1", False), ("0.0.0.0", True)]:
        port = free_port()
        cmd = [MCBACKEND, "serve", local_root, "--host", host]
        proc = subprocess.Popen(
            [*cmd, "--port", str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            line = proc.stdout.readline()
            assert f"http://{host}:{port}/" in line
            base = f"http://127.0.0.1:{port}"
            status = 0
            for _ in range(100):
                try:
                    status = get(base, "/api/runs")[0]
                    break
                except OSError:
                    time.sleep(0.1)
            assert status == 200
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=20)
        assert ("anyone who reaches this interface" in err) is warned


def test_serve_command_refuses_missing_directory(tmp_path):
    proc = subprocess.run(
        [MCBACKEND, "serve", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and "No directory at" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("rid", ["zarr-run", "parquet-run"])
def test_diagnostics_beyond_the_budget_summarise_every_kth_draw(local_root, rid):
    from mcbackend.viewer.diagnostics import summarise

    run = mcb.open_run(os.path.join(local_root, rid), read_only=True)
    result = summarise(run, max_values=500)
    chains = len(run.get_chains())
    thin = -(-chains * DRAWS * 4 // 500)  # 4 elements: mu and theta[3]
    assert result["thin"] == thin and f"every {thin}th draw" in result["note"]
    posterior = run.to_inferencedata()["posterior"].to_dataset()
    expected = az.summary(posterior.isel(draw=slice(None, None, thin)), ci_kind="hdi")
    assert [r["label"] for r in result["rows"]] == list(expected.index)
    got = np.array([r["values"] for r in result["rows"]], dtype=float)
    np.testing.assert_allclose(got, expected.to_numpy(dtype=float), rtol=1e-9)
