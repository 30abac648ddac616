"""Behaviour shared by the file backends beyond the conformance suite: reopening, resuming,
crashes, concurrent readers, lazy loading, listing and bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import mcbackend as mcb
from mcbackend.errors import CorruptRunError, FlushError, RunNotFoundError
from mcbackend.files.pipeline import MAX_IN_FLIGHT
from mcbackend.meta import Variable
from mcbackend.testing import assert_values_equal, make_meta, random_draws

from .writer_process import expected_draw

FORMATS = ["zarr", "zarr2", "parquet"]
#: Zarr layout v2 with chunks of 64 bytes, so chunks complete between flushes.
ZARR2 = "functools.partial(mcb.ZarrBackend, format_version=2, chunk_bytes=64)"
ZARR1 = "functools.partial(mcb.ZarrBackend, format_version=1)"
BACKEND_CODE = {"zarr": ZARR1, "zarr2": ZARR2, "parquet": "mcb.ParquetBackend"}


def backend_class(fmt: str):
    """The backend class of a format (``zarr2``: Zarr layout v2), to call as a class."""
    import functools  # noqa: F401 - used by the eval'd expression

    return eval(BACKEND_CODE[fmt])


@pytest.fixture(params=FORMATS)
def fmt(request) -> str:
    if request.param == "parquet":
        pytest.importorskip("pyarrow")
    return request.param


def start_writer(fmt: str, root: str, rid: str, flush_every: int, options=None):
    args = [sys.executable, "-m", "tests.writer_process", f"{fmt}+{root}", rid, str(flush_every)]
    if options:
        args.append(json.dumps(options))
    cwd = os.path.dirname(os.path.dirname(__file__))
    return subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd
    )


def wait_for_flushes(proc, n: int, timeout: float = 60) -> int:
    """Read the writer's progress lines until ``n`` flushes were reported."""
    deadline = time.monotonic() + timeout
    last = 0
    for _ in range(n):
        line = proc.stdout.readline()
        if not line or time.monotonic() > deadline:
            raise AssertionError(f"writer stopped early: {proc.stderr.read()}")
        last = int(line)
    return last


def check_prefix(chain, n: int, exact: bool = True) -> None:
    """The first ``n`` draws are the writer's; with ``exact`` there are no more."""
    if exact:
        assert len(chain) == n
    x = chain.get_draws("x", slice(0, n))
    expected = np.array([expected_draw(i)["x"] for i in range(n)], dtype="int64").reshape(n, 2)
    np.testing.assert_array_equal(x, expected)
    labels = chain.get_draws("label", slice(0, n))
    assert [str(v) for v in labels] == [str(i) for i in range(n)]


def crash_and_resume(fmt, root, options, flush_every=7):
    rid = f"crash{np.random.randint(10**9)}"
    proc = start_writer(fmt, root, rid, flush_every, options)
    try:
        reported = wait_for_flushes(proc, MAX_IN_FLIGHT + 2)  # some are committed by then
        time.sleep(np.random.uniform(0, 0.05))  # land somewhere inside a later flush
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    run = mcb.open_run(f"{root}/{rid}", options)
    (chain,) = run.get_chains()
    n = len(chain)
    # The writer reports a flush when it hands it over (to the background): at most the
    # batches in flight (MAX_IN_FLIGHT, double buffering) and the unflushed buffer are lost.
    assert n >= reported - MAX_IN_FLIGHT * flush_every and n % flush_every == 0, (n, reported)
    check_prefix(chain, n)
    # Resume: the reopened chain appends after its last committed draw.
    for i in range(n, n + 10):
        chain.append(expected_draw(i), {"in_warmup": False})
    run.close()
    (chain,) = mcb.open_run(f"{root}/{rid}", options).get_chains()
    check_prefix(chain, n + 10)
    np.testing.assert_array_equal(chain.get_stats("in_warmup")[:6], [True] * 5 + [False])


def test_crash_keeps_flushed_draws_and_resumes(fmt, tmp_path):
    crash_and_resume(fmt, str(tmp_path), None)


@pytest.mark.s3
def test_crash_on_s3(fmt, s3_bucket, s3_options):
    crash_and_resume(fmt, s3_bucket, s3_options)


def test_reader_in_other_process_sees_committed_prefix(fmt, tmp_path):
    rid = "live"
    proc = start_writer(fmt, str(tmp_path), rid, 5)
    try:
        # a flush is reported when handed over: the last MAX_IN_FLIGHT may still be under way
        wait_for_flushes(proc, MAX_IN_FLIGHT + 1)
        run = mcb.open_run(str(tmp_path / rid))
        (chain,) = run.get_chains()
        first = len(chain)
        assert first >= 5 and first % 5 == 0
        check_prefix(chain, first, exact=False)
        reported = wait_for_flushes(proc, 1)
        while reported <= first + MAX_IN_FLIGHT * 5:
            reported = wait_for_flushes(proc, 1)
        n = len(chain)  # the same handle sees the writer's progress
        assert n >= reported - MAX_IN_FLIGHT * 5 and n > first and n % 5 == 0
        check_prefix(chain, n, exact=False)
    finally:
        proc.kill()
        proc.wait(10)


def test_reopen_reads_back_and_numbering_continues(fmt, tmp_path):
    backend = backend_class(fmt)(str(tmp_path), flush_every=4, flush_seconds=None)
    meta = make_meta([Variable("a", "float64", [2])], [Variable("in_warmup", "bool", [])])
    run = backend.init_run(meta)
    draws = random_draws(meta.variables, 10)
    for c in range(2):
        chain = run.init_chain(c)
        for d in draws:
            chain.append(d, {"in_warmup": False})
    run.close()
    reopened = backend.get_run(meta.rid)
    assert bytes(reopened.meta) == bytes(meta)
    assert [len(c) for c in reopened.get_chains()] == [10, 10]
    with pytest.raises(ValueError, match="Chain 1 already exists"):
        reopened.init_chain(1)
    chain2 = reopened.init_chain(2)
    chain2.append(draws[0], {"in_warmup": True})
    reopened.close()
    again = mcb.open_run(str(tmp_path / meta.rid))
    assert [c.cmeta.chain_number for c in again.get_chains()] == [0, 1, 2]
    np.testing.assert_array_equal(again.get_chains()[2].get_draws("a"), [draws[0]["a"]])


def test_time_based_flush(fmt, tmp_path):
    backend = backend_class(fmt)(str(tmp_path), flush_every=1000, flush_seconds=0.2)
    meta = make_meta([Variable("a", "float64", [])])
    chain = backend.init_run(meta).init_chain(0)
    chain.append({"a": 1.0})
    other = lambda: len(mcb.open_run(str(tmp_path / meta.rid)).get_chains()[0])  # noqa: E731
    assert other() == 0
    time.sleep(0.25)
    chain.append({"a": 2.0})  # the oldest unflushed draw is now older than 0.2 s
    deadline = time.monotonic() + 10
    while other() < 2 and time.monotonic() < deadline:  # written in the background
        time.sleep(0.02)
    assert other() == 2
    chain.append({"a": 3.0})
    assert other() == 2  # the new draw waits for the next count or time flush


def test_idle_chain_is_flushed_by_time(fmt, tmp_path):
    """A sampler that stalls (or ends without closing its chains): its buffer reaches storage
    after ``flush_seconds`` without another append."""
    backend = backend_class(fmt)(str(tmp_path), flush_every=1000, flush_seconds=0.3)
    meta = make_meta([Variable("a", "float64", [])])
    chain = backend.init_run(meta).init_chain(0)
    chain.append({"a": 1.0})
    chain.append({"a": 2.0})
    other = lambda: len(mcb.open_run(str(tmp_path / meta.rid)).get_chains()[0])  # noqa: E731
    assert other() == 0
    deadline = time.monotonic() + 10
    while other() < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert other() == 2
    assert chain.get_draws("a").tolist() == [1.0, 2.0]


def test_get_runs_lists_runs(fmt, tmp_path):
    backend = backend_class(fmt)(str(tmp_path))
    assert len(backend.get_runs()) == 0
    metas = [make_meta([Variable("a", "float64", [])]) for _ in range(2)]
    for m in metas:
        backend.init_run(m)
    (tmp_path / "not-a-run").mkdir()
    runs = backend.get_runs()
    assert list(runs.rid) == [m.rid for m in metas]
    assert runs.created_at.is_monotonic_increasing
    assert all(isinstance(m, mcb.RunMeta) for m in runs.meta)


def test_lazy_inferencedata_reads_only_what_is_accessed(fmt, tmp_path, monkeypatch):
    backend = backend_class(fmt)(str(tmp_path), flush_every=8)
    meta = make_meta(
        [Variable("big", "float32", [50]), Variable("small", "float64", [])],
        [Variable("in_warmup", "bool", [])],
    )
    run = backend.init_run(meta)
    for c in range(2):
        chain = run.init_chain(c)
        for i, d in enumerate(random_draws(meta.variables, 40, seed=c)):
            chain.append(d, {"in_warmup": i < 8})
    run.close()
    expected = mcb.open_run(str(tmp_path / meta.rid)).get_chains()[1].get_draws("big")[8:]

    reads = []
    original = mcb.Chain.get_draws

    def recording_get_draws(self, name, slc=slice(None)):
        reads.append((self.cmeta.chain_number, name, slc))
        return original(self, name, slc)

    monkeypatch.setattr(mcb.Chain, "get_draws", recording_get_draws)
    dt = mcb.open_run(str(tmp_path / meta.rid)).to_inferencedata()
    assert reads == [], "opening and converting must not read draws"
    big = dt["posterior"]["big"]
    assert big.shape == (2, 32, 50)
    np.testing.assert_array_equal(big[1, 2:5].values, expected[2:5])
    assert reads == [(1, "big", slice(10, 13))], "only the selected chain and draws are read"
    np.testing.assert_array_equal(big.values[1], expected)
    assert {name for _, name, _ in reads} == {"big"}


@pytest.mark.parametrize("name", ["a/b", "a.b", ".hidden", "__x", "with space", "ünï℃ode", "50%"])
def test_awkward_variable_names(fmt, tmp_path, name):
    backend = backend_class(fmt)(str(tmp_path))
    meta = make_meta([Variable(name, "float64", [2]), Variable("plain", "int8", [])])
    run = backend.init_run(meta)
    chain = run.init_chain(0)
    draws = random_draws(meta.variables, 5)
    for d in draws:
        chain.append(d)
    run.close()
    (chain,) = mcb.open_run(str(tmp_path / meta.rid)).get_chains()
    np.testing.assert_array_equal(chain.get_draws(name), [d[name] for d in draws])
    assert chain.get_draws("plain").dtype == np.int8


def test_bad_locations(fmt, tmp_path):
    cls = backend_class(fmt)
    with pytest.raises(RunNotFoundError, match="No run at"):
        mcb.open_run(str(tmp_path / "nothing"))
    (tmp_path / "plain").mkdir()
    with pytest.raises(RunNotFoundError, match="not an mcbackend run"):
        mcb.open_run(str(tmp_path / "plain"))
    with pytest.raises(RunNotFoundError, match="No run at"):
        cls(str(tmp_path)).get_run("unknown")
    with pytest.raises(ValueError, match="cannot name a directory"):
        cls(str(tmp_path)).init_run(
            mcb.RunMeta(rid="../x", variables=[Variable("a", "float64", [])])
        )


def test_corrupt_or_missing_sidecar(fmt, tmp_path):
    backend = backend_class(fmt)(str(tmp_path))
    meta = make_meta([Variable("a", "float64", [])])
    run = backend.init_run(meta)
    chain = run.init_chain(0)
    chain.append({"a": 1.0})
    run.close()
    (sidecar,) = (tmp_path / meta.rid).glob("*meta.pb")  # v2 names it _meta.pb
    (marker,) = (tmp_path / meta.rid).glob("*mcbackend.json")
    good = sidecar.read_bytes()
    sidecar.write_bytes(b"\xff\xff garbage")
    with pytest.raises(CorruptRunError, match="meta.pb is corrupt"):
        backend.get_run(meta.rid)
    sidecar.unlink()
    with pytest.raises(CorruptRunError, match="lacks its metadata sidecar"):
        backend.get_run(meta.rid)
    sidecar.write_bytes(good)
    marker.write_text("{not json")
    with pytest.raises(CorruptRunError, match="marker .* is corrupt"):
        backend.get_run(meta.rid)


def test_unwritable_location(fmt, tmp_path):
    """A root below a regular file cannot hold runs, whoever we are (root included)."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    backend = backend_class(fmt)(str(blocker / "runs"))
    with pytest.raises(OSError, match="Cannot write the run to .*file/runs"):
        backend.init_run(make_meta([Variable("a", "float64", [])]))
    assert blocker.read_text() == "not a directory"


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_directory(fmt, tmp_path):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match="Cannot write the run"):
            backend_class(fmt)(str(tmp_path)).init_run(make_meta([Variable("a", "float64", [])]))
    finally:
        tmp_path.chmod(0o700)


def test_crash_before_first_flush_then_resume(fmt, tmp_path):
    proc = start_writer(fmt, str(tmp_path), "early", 10**6)
    try:
        deadline = time.monotonic() + 30
        run_dir = tmp_path / "early"

        def started() -> bool:
            chain_folders = list(run_dir.glob("chain[_=]0"))
            return bool(chain_folders) or (run_dir / "_mcbackend/chains/0.json").exists()

        while not started() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    run = mcb.open_run(str(tmp_path / "early"))
    (chain,) = run.get_chains()
    assert len(chain) == 0
    assert run.verify() == []
    for i in range(3):
        chain.append(expected_draw(i), {"in_warmup": True})
    run.close()
    (chain,) = mcb.open_run(str(tmp_path / "early")).get_chains()
    check_prefix(chain, 3)


@pytest.mark.parametrize("background", [False, True])
def test_failed_flush_keeps_draws_and_retries(fmt, tmp_path, monkeypatch, background):
    """A write that fails (full disk, lost connection) loses nothing: the next flush retries."""
    from mcbackend.files import Location

    backend = backend_class(fmt)(
        str(tmp_path), flush_every=4, flush_seconds=None, background_flush=background
    )
    meta = make_meta([Variable("a", "float64", [2]), Variable("r", "int32", [-1])])
    run = backend.init_run(meta)
    chain = run.init_chain(0)
    draws = random_draws(meta.variables, 11)
    for d in draws[:5]:
        chain.append(d)
    chain.flush()  # 5 draws durable
    original = Location.write_many
    failures = []

    def failing_write(self, files):
        if any(".parquet" in name or "/c/" in name or "/seg-" in name for name in files):
            failures.append(list(files))
            raise OSError("No space left on device")
        return original(self, files)

    monkeypatch.setattr(Location, "write_many", failing_write)
    with pytest.raises(FlushError, match="No space left on device.*kept [(]8 in all[)]"):
        for d in draws[5:8]:
            chain.append(d)  # the count flush at 8 draws fails (in the background: ...)
        chain.flush()  # ... and says so here
    assert failures and len(chain) == 8
    monkeypatch.setattr(Location, "write_many", original)
    for d in draws[8:]:
        chain.append(d)
    run.close()
    (chain,) = mcb.open_run(str(tmp_path / meta.rid)).get_chains()
    assert len(chain) == 11
    np.testing.assert_array_equal(chain.get_draws("a"), [d["a"] for d in draws])
    for got, d in zip(chain.get_draws("r"), draws):
        np.testing.assert_array_equal(got, d["r"])


def test_interpreter_exit_flushes_everything(fmt, tmp_path):
    """A script that never closes its run still leaves every draw on storage."""
    code = (
        "import functools, sys, mcbackend as mcb\n"
        "from tests.writer_process import expected_draw, meta\n"
        f"backend = {BACKEND_CODE[fmt]}(sys.argv[1], flush_every=4)\n"
        "chain = backend.init_run(meta('exit')).init_chain(0)\n"
        "for i in range(10):\n"
        "    chain.append(expected_draw(i), {'in_warmup': False})\n"
    )
    cwd = os.path.dirname(os.path.dirname(__file__))
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, cwd=cwd)
    (chain,) = mcb.open_run(str(tmp_path / "exit")).get_chains()
    check_prefix(chain, 10)


def test_resume_inside_a_chunk(fmt, tmp_path):
    """Reopen and append when the last chunk / file is only partly filled (str and ragged too)."""
    meta = make_meta(
        [Variable("s", "str", [2]), Variable("r", "float32", [-1]), Variable("x", "int16", [])]
    )
    draws = random_draws(meta.variables, 13)
    backend = backend_class(fmt)(str(tmp_path), flush_every=8, flush_seconds=None)
    run = backend.init_run(meta)
    chain = run.init_chain(0)
    for d in draws[:5]:
        chain.append(d)
    run.close()
    (chain,) = backend_class(fmt)(str(tmp_path), flush_every=8).get_run(meta.rid).get_chains()
    for d in draws[5:]:
        chain.append(d)
    chain.close()
    (chain,) = mcb.open_run(str(tmp_path / meta.rid)).get_chains()
    for var in meta.variables:
        assert_values_equal(chain.get_draws(var.name), [d[var.name] for d in draws], var)


def test_written_draws_are_read_from_memory_within_budget(fmt, tmp_path, monkeypatch):
    backend = backend_class(fmt)(str(tmp_path), flush_every=10, flush_seconds=None)
    meta = make_meta([Variable("a", "float64", [3]), Variable("s", "str", [])])
    chain = backend.init_run(meta).init_chain(0)
    draws = random_draws(meta.variables, 95)
    monkeypatch.setattr(chain, "memory_bytes", 40 * 10 * 3 * 8)  # roughly the last 4 flushes
    for d in draws:
        chain.append(d)
    stored_reads = []
    read_stored = chain._read_many_stored
    monkeypatch.setattr(
        chain,
        "_read_many_stored",
        lambda specs, idx, **kw: stored_reads.append(idx) or read_stored(specs, idx, **kw),
    )
    recent = chain.get_draws("a", slice(80, None))
    assert not stored_reads  # recent draws: from memory
    np.testing.assert_array_equal(recent, [d["a"] for d in draws[80:]])
    recent[:] = -1  # a read returns a copy, never the held buffer
    np.testing.assert_array_equal(
        chain.get_draws("a", slice(80, None)), [d["a"] for d in draws[80:]]
    )
    everything = chain.get_draws("s")
    assert len(stored_reads) == 1  # the oldest draws were evicted: read back from storage
    assert [str(v) for v in everything] == [str(d["s"]) for d in draws]


@pytest.mark.s3
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_interpreter_exit_flushes_everything_on_s3(fmt, s3_bucket, s3_options, host):
    """The exit flush writes to object stores too (after thread pools stopped taking work),
    also when the endpoint's host name has to be resolved."""
    options = {**s3_options, "endpoint_url": s3_options["endpoint_url"].replace("127.0.0.1", host)}
    code = (
        "import functools, json, sys, mcbackend as mcb\n"
        "from tests.writer_process import expected_draw, meta\n"
        f"backend = {BACKEND_CODE[fmt]}(sys.argv[1], json.loads(sys.argv[2]),"
        " flush_every=4)\n"
        "chain = backend.init_run(meta('exit')).init_chain(0)\n"
        "for i in range(10):\n"
        "    chain.append(expected_draw(i), {'in_warmup': False})\n"
    )
    cwd = os.path.dirname(os.path.dirname(__file__))
    subprocess.run(
        [sys.executable, "-c", code, s3_bucket, json.dumps(options)], check=True, cwd=cwd
    )
    (chain,) = mcb.open_run(f"{s3_bucket}/exit", s3_options).get_chains()
    check_prefix(chain, 10)
