"""One writer per chain for the file backends (``formats/zarr.md``, "One writer per chain"):
real writer processes on local disk and on S3 (moto's server on loopback)."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import mcbackend as mcb
from mcbackend.errors import ChainLockedError
from mcbackend.files.pipeline import MAX_IN_FLIGHT

from .lease_worker import EXTRA, FLUSH_EVERY
from .writer_process import expected_draw, meta

FORMATS = ["zarr", "zarr2", "parquet1", "parquet"]


@pytest.fixture(params=FORMATS)
def fmt(request) -> str:
    if request.param.startswith("parquet"):
        pytest.importorskip("pyarrow")
    return request.param


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def where(request, tmp_path) -> tuple[str, dict | None]:
    """(root, storage options) on local disk or in a fresh S3 bucket."""
    if request.param == "local":
        return str(tmp_path), None
    return request.getfixturevalue("s3_bucket"), request.getfixturevalue("s3_options")


def start(fmt: str, root: str, options, rid: str, **spec):
    spec = {"fmt": fmt, "root": root, "options": options, "rid": rid, **spec}
    cwd = os.path.dirname(os.path.dirname(__file__))
    return subprocess.Popen(
        [sys.executable, "-m", "tests.lease_worker", json.dumps(spec)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
    )


def read_until(proc, word: str, timeout: float = 120) -> list[str]:
    """The worker's lines up to (and including) ``word``."""
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"worker ended before {word}: {lines} {proc.stderr.read()}")
        lines.append(line.strip())
        if lines[-1] == word:
            return lines
    raise AssertionError(f"no {word} from the worker: {lines}")


def backend(fmt: str, root: str, options, **kw):
    cls = mcb.ParquetBackend if fmt.startswith("parquet") else mcb.ZarrBackend
    return cls(root, options, flush_every=FLUSH_EVERY, flush_seconds=None, **EXTRA[fmt], **kw)


def open_chain(fmt: str, root: str, options, rid: str, **kw):
    (chain,) = backend(fmt, root, options, **kw).get_run(rid).get_chains()
    return chain


def assert_draws(chain, values: list[int]) -> None:
    """The chain holds exactly draws ``expected_draw(v)`` for ``values``, in order."""
    assert len(chain) == len(values)
    x = chain.get_draws("x")
    np.testing.assert_array_equal(x, [expected_draw(v)["x"] for v in values])
    assert [str(v) for v in chain.get_draws("label")] == [str(v) for v in values]


def append(chain, offset: int, n: int) -> None:
    for _ in range(n):
        i = len(chain)
        chain.append(expected_draw(offset + i), {"in_warmup": i < 5})


def test_second_writer_is_refused_and_the_first_keeps_every_draw(fmt, where):
    root, options = where
    rid = f"two{fmt}"
    first = start(fmt, root, options, rid, mode="create", then="wait", draws=20)
    try:
        read_until(first, "WAITING")
        chain = open_chain(fmt, root, options, rid)
        with pytest.raises(ChainLockedError) as refused:
            chain.append(expected_draw(1000), {"in_warmup": False})
        message = str(refused.value)
        assert f"hain 0 of run '{rid}'" in message and f"pid {first.pid}" in message
        assert "since" in message and "expiring at" in message
        assert len(chain) == 20  # the refused draw was not buffered
        first.stdin.write("go on\n")
        first.stdin.flush()
        read_until(first, "CLOSED")
        assert first.wait(60) == 0
    finally:
        first.kill()
    # Every draw of the first writer is there; its lease released, the second handle goes on.
    assert_draws(chain, list(range(40)))
    append(chain, 0, 10)
    chain.close()
    assert_draws(open_chain(fmt, root, options, rid), list(range(50)))


def test_two_processes_creating_one_chain_at_once(fmt, where):
    root, options = where
    rid = f"race{fmt}"
    backend(fmt, root, options).init_run(meta(rid)).close()
    start_at = time.time() + 10  # both have imported mcbackend and listed the chains by then
    workers = [
        start(
            fmt, root, options, rid, mode="race", then="close", offset=k * 1000, start_at=start_at
        )
        for k in range(2)
    ]
    try:
        outcomes = [w.communicate(timeout=120)[0] for w in workers]
    finally:
        for w in workers:
            w.kill()
    closed = [k for k, out in enumerate(outcomes) if "CLOSED" in out.split()]
    refused = [out for out in outcomes if out.startswith("REFUSED")]
    assert len(closed) == 1 and len(refused) == 1, outcomes
    assert "ChainLockedError" in refused[0] or "already exists" in refused[0], refused
    assert_draws(open_chain(fmt, root, options, rid), [closed[0] * 1000 + i for i in range(20)])


def test_crashed_writer_elsewhere_is_taken_over_after_expiry(fmt, where):
    """A writer on another machine (its host name differs) is SIGKILLed: its chain is refused
    until the lease expires, then resumes after the committed draws."""
    root, options = where
    rid = f"gone{fmt}"
    writer = start(
        fmt, root, options, rid, mode="create", then="forever", lease_seconds=4, host="elsewhere"
    )
    try:
        for _ in range(2 + MAX_IN_FLIGHT):  # the last MAX_IN_FLIGHT flushes may be in flight
            read_until(writer, str(FLUSH_EVERY * (_ + 1)))
        writer.send_signal(signal.SIGKILL)
        writer.wait(10)
    finally:
        writer.kill()
    killed_at = time.monotonic()
    chain = open_chain(fmt, root, options, rid)
    with pytest.raises(ChainLockedError, match="host elsewhere"):
        chain.append(expected_draw(0), {"in_warmup": True})
    time.sleep(max(4.5 - (time.monotonic() - killed_at), 0))
    n = len(chain)
    assert n >= 10 and n % FLUSH_EVERY == 0
    append(chain, 0, 10)
    chain.close()
    assert_draws(open_chain(fmt, root, options, rid), list(range(n + 10)))


def test_stalled_writer_loses_the_chain_and_says_so(fmt, tmp_path):
    """A writer that stops (SIGSTOP) for longer than its lease loses the chain to a second
    writer; when it wakes up it is refused, and no draw of the second writer is lost."""
    root, rid = str(tmp_path), f"stall{fmt}"
    writer = start(fmt, root, None, rid, mode="create", then="stop", draws=20, lease_seconds=2)
    try:
        read_until(writer, "STOPPED")
        chain = open_chain(fmt, root, None, rid)
        time.sleep(2.5)
        append(chain, 500, 12)
        chain.close()
        writer.send_signal(signal.SIGCONT)
        out, err = writer.communicate(timeout=60)
    finally:
        writer.kill()
    assert "REFUSED\nChainLockedError This handle lost the writer lease of chain 0" in out, err
    assert_draws(open_chain(fmt, root, None, rid), list(range(20)) + list(range(520, 532)))


def test_second_handle_in_one_process(fmt, tmp_path):
    """Handles of one process obey the lease too; a closed or collected handle frees it."""
    b = backend(fmt, str(tmp_path), None)
    first = b.init_run(meta("one")).init_chain(0)
    append(first, 0, 7)
    second = open_chain(fmt, str(tmp_path), None, "one")
    with pytest.raises(ChainLockedError, match=f"pid {os.getpid()}"):
        append(second, 0, 1)
    first.close()
    append(second, 0, 3)  # after draw 6 (the first flushed at close)
    second.flush()
    del first
    third = open_chain(fmt, str(tmp_path), None, "one")
    with pytest.raises(ChainLockedError):
        append(third, 0, 1)
    del second
    gc.collect()  # the second handle, collected without close(), frees the chain
    append(third, 0, 2)
    third.close()
    assert_draws(open_chain(fmt, str(tmp_path), None, "one"), list(range(12)))


def test_a_lease_that_cannot_be_released_is_reported_in_one_line(tmp_path, caplog):
    """At exit storage may be gone: the warning names the chain and the error, no traceback."""
    run = backend("zarr2", str(tmp_path), None).init_run(meta("r-release"))
    chain = run.init_chain(0)
    chain.append(expected_draw(0), {"in_warmup": False})
    chain.flush()
    folder = tmp_path / "r-release" / "_mcbackend" / "leases" / "0"
    for lease_file in folder.iterdir():
        lease_file.unlink()
    folder.rmdir()
    folder.write_text("not a folder")  # the release cannot write its lease file
    with caplog.at_level("WARNING", logger="mcbackend.files.lease"):
        chain.release_lease()
    [record] = caplog.records
    assert record.exc_info is None
    message = record.getMessage()
    assert "chain 0 of run 'r-release'" in message and "lease_seconds=" in message
    assert "Error" in message  # the exception's type
