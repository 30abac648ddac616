"""Storage that goes away while a chain is written (issue #13): each append keeps its draw or
raises saying it did not, waiting draws stay within their memory bound, everything kept is
written once storage is back, and a flush never renumbers draws that storage lost.

The outage is real: the S3 clients reach moto's server through a TCP forwarder on loopback
that the test cuts (connections refused, requests under way broken) and restores.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import socket
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import mcbackend as mcb
from mcbackend.backends.clickhouse import ClickHouseChain
from mcbackend.errors import CorruptRunError, DrawNotKeptError, FlushError
from mcbackend.files import BufferedChain
from mcbackend.meta import Variable
from mcbackend.testing import make_meta

from .conftest import CLICKHOUSE_HOST

#: Layouts of new runs: Zarr v1/v2 and Parquet v1/v2.
BACKENDS = {
    "zarr1": functools.partial(mcb.ZarrBackend, format_version=1),
    "zarr2": functools.partial(mcb.ZarrBackend, format_version=2, chunk_bytes=256),
    "parquet1": functools.partial(mcb.ParquetBackend, format_version=1),
    "parquet2": functools.partial(mcb.ParquetBackend, format_version=2),
}
#: No retry inside botocore: a refused connection fails at once.
FAST_FAILING = {"connect_timeout": 5, "read_timeout": 5, "retries": {"total_max_attempts": 1}}
VARIABLES = [Variable("x", "float64", [4]), Variable("i", "int64", [])]
DRAW_BYTES = 4 * 8 + 8
LIMIT = 30 * DRAW_BYTES  # draws that may wait for storage, in bytes


class Link:
    """A TCP forwarder on loopback between the S3 clients and moto's server: ``cut`` closes
    its port and every connection through it (an outage: connections are refused, requests
    under way fail), ``restore`` listens on the same port again."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.split("//")[-1].split(":")
        self._upstream = (host, int(port))
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        for port in random.sample(range(20000, 32000), 100):  # below the ephemeral ports,
            with contextlib.suppress(OSError):  # which outgoing connections take meanwhile
                self.port = port
                self.restore()
                break
        self.endpoint = f"http://127.0.0.1:{self.port}"

    @property
    def up(self) -> bool:
        return self._listener is not None

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(1024)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            doomed = list(self._sockets)
            self._sockets.clear()
        assert listener is not None
        listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); no more listening
        listener.close()
        for sock in doomed:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            threading.Thread(target=self._forward, args=(listener, client), daemon=True).start()

    def _forward(self, listener: socket.socket, client: socket.socket) -> None:
        server = socket.create_connection(self._upstream)
        with self._lock:
            if self._listener is not listener:  # cut meanwhile
                client.close()
                server.close()
                return
            self._sockets |= {client, server}
        threading.Thread(target=self._pump, args=(server, client), daemon=True).start()
        self._pump(client, server)

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)

    def options(self) -> dict:
        return {
            "endpoint_url": self.endpoint,
            "key": "testing",
            "secret": "testing",
            "config_kwargs": FAST_FAILING,
        }

    def fs(self):
        import s3fs

        return s3fs.S3FileSystem(**self.options(), skip_instance_cache=True)


@pytest.fixture
def s3(s3_endpoint):
    link = Link(s3_endpoint)
    yield link
    if link.up:
        link.cut()


@pytest.fixture
def bucket(s3_bucket) -> str:
    return s3_bucket


@pytest.fixture(params=list(BACKENDS))
def layout(request) -> str:
    if request.param.startswith("parquet"):
        pytest.importorskip("pyarrow")
    return request.param


def draw(i: int) -> dict[str, np.ndarray]:
    return {"x": np.full(4, i / 2), "i": np.array(i)}


def append_recording(chain, numbers, kept: list[int], refused: list[int]) -> None:
    """Append draws ``numbers``; each either returns (kept) or raises saying it was not kept."""
    for i in numbers:
        try:
            chain.append(draw(i))
        except DrawNotKeptError as ex:
            assert f"draw {len(kept)} was not kept" in str(ex)
            refused.append(i)
        else:
            kept.append(i)


def stored_numbers(url: str, options: dict) -> list[int]:
    (chain,) = mcb.open_run(url, storage_options=options).get_chains()
    numbers = [int(i) for i in chain.get_draws("i")]
    np.testing.assert_array_equal(chain.get_draws("x"), [draw(i)["x"] for i in numbers])
    return numbers


@pytest.mark.parametrize("background", [True, False], ids=["background", "foreground"])
@pytest.mark.s3
def test_outage_keeps_or_refuses_each_draw_and_writes_the_kept_ones_once_back(
    s3, bucket, layout, background
):
    backend = BACKENDS[layout](
        bucket,
        s3.options(),
        flush_every=4,
        flush_seconds=None,
        background_flush=background,
        max_unstored_bytes=LIMIT,
    )
    meta = make_meta(VARIABLES)
    run = backend.init_run(meta)
    chain = run.init_chain(0)
    kept: list[int] = []
    refused: list[int] = []
    append_recording(chain, range(6), kept, refused)
    chain.flush()
    assert kept == list(range(6))

    s3.cut()
    append_recording(chain, range(6, 60), kept, refused)
    waiting = len(kept) - 6
    assert refused == list(range(6 + waiting, 60)), "refused draws are the last ones"
    assert waiting * DRAW_BYTES <= LIMIT < (waiting + 1) * DRAW_BYTES, "the bound, used fully"
    assert len(chain) == len(kept)
    with pytest.raises(FlushError, match=f"{s3.endpoint}.*{waiting} .*not yet stored") as info:
        chain.flush()
    assert not isinstance(info.value, DrawNotKeptError)

    s3.restore()
    append_recording(chain, range(60, 70), kept, refused)
    chain.flush()  # nothing waits any more: every later draw is kept
    append_recording(chain, range(70, 75), kept, refused)
    assert kept[-5:] == list(range(70, 75))
    run.close()
    assert stored_numbers(f"{bucket}/{meta.rid}", s3.options()) == kept


@pytest.mark.s3
def test_outage_across_several_flushes_loses_nothing(s3, bucket, layout, monkeypatch):
    """Storage comes and goes: every draw appended while it fits the bound reaches storage
    once, in order. (Flushes in the calling thread: appends wait for each retry, as a
    sampler slower than storage would.)"""
    monkeypatch.setattr(BufferedChain, "retry_seconds", 0.0)  # every due flush retries
    backend = BACKENDS[layout](
        bucket,
        s3.options(),
        flush_every=3,
        flush_seconds=None,
        background_flush=False,
        max_unstored_bytes=LIMIT,
    )
    meta = make_meta(VARIABLES)
    run = backend.init_run(meta)
    chain = run.init_chain(0)
    kept: list[int] = []
    refused: list[int] = []
    for lo in range(0, 80, 10):
        down = lo in (20, 50, 60)
        if down and s3.up:
            s3.cut()
        elif not down and not s3.up:
            s3.restore()
        append_recording(chain, range(lo, lo + 10), kept, refused)
    run.close()
    assert not refused
    assert stored_numbers(f"{bucket}/{meta.rid}", s3.options()) == list(range(80))


def roll_back(fs, run_dir: str, layout: str, earlier: dict[str, bytes]) -> None:
    """Storage loses the newest flush: the commit point as it was, or the newest file gone."""
    if layout.startswith("parquet"):
        parts = sorted(p for p in fs.find(run_dir) if p.endswith(".parquet"))
        fs.rm_file(parts[-1])
    else:
        for path, data in earlier.items():
            fs.pipe_file(path, data)


def commit_points(fs, run_dir: str) -> dict[str, bytes]:
    """A Zarr chain's commit point (v2: with the staged segments it names)."""
    paths = [
        p
        for p in fs.find(run_dir)
        if p.endswith(("chain_0/zarr.json", "chains/0.json")) or "chains/0/seg-" in p
    ]
    return {p: fs.cat_file(p) for p in paths}


@pytest.mark.s3
def test_flush_never_renumbers_draws_storage_lost_meanwhile(s3, bucket, layout):
    backend = BACKENDS[layout](
        bucket, s3.options(), flush_every=4, flush_seconds=None, background_flush=False
    )
    meta = make_meta(VARIABLES)
    run = backend.init_run(meta)
    chain = run.init_chain(0)
    for i in range(4):
        chain.append(draw(i))
    fs = s3.fs()
    run_dir = f"{bucket}/{meta.rid}".removeprefix("s3://")
    earlier = commit_points(fs, run_dir)
    for i in range(4, 8):
        chain.append(draw(i))  # a second flush: 8 draws stored
    s3.cut()
    for i in range(8, 11):
        chain.append(draw(i))
    with pytest.raises(FlushError):
        chain.flush()
    s3.restore()
    roll_back(fs, run_dir, layout, earlier)  # storage lost draws 4...7 meanwhile
    with pytest.raises(CorruptRunError, match="holds 4 .*8 were stored.*lost"):
        chain.flush()
    with pytest.raises(CorruptRunError, match="not kept"):
        chain.append(draw(11))
    assert stored_numbers(f"{bucket}/{meta.rid}", s3.options()) == [0, 1, 2, 3]


EXIT_SCRIPT = """
import functools, sys, numpy as np, mcbackend as mcb
from mcbackend.meta import Variable
from mcbackend.testing import make_meta
options = {"endpoint_url": sys.argv[2], "key": "testing", "secret": "testing",
           "config_kwargs": {"connect_timeout": 1, "read_timeout": 5,
                             "retries": {"total_max_attempts": 1}}}
backend = BACKEND(sys.argv[1], options, flush_every=4)
meta = make_meta([Variable("x", "float64", [4]), Variable("i", "int64", [])])
meta.rid = "exit"
chain = backend.init_run(meta).init_chain(0)
for i in range(5):
    chain.append({"x": np.full(4, i / 2), "i": np.array(i)})
chain.flush()
print("stored", flush=True)
sys.stdin.readline()  # the test stops the server
for i in range(5, 12):
    chain.append({"x": np.full(4, i / 2), "i": np.array(i)})
"""


@pytest.mark.s3
@pytest.mark.parametrize("layout", ["zarr2", "parquet2"])
def test_exit_during_outage_ends_and_says_what_was_lost(s3, bucket, layout):
    backend_code = {
        "zarr2": "functools.partial(mcb.ZarrBackend, format_version=2)",
        "parquet2": "mcb.ParquetBackend",
    }[layout]
    code = textwrap.dedent(EXIT_SCRIPT).replace("BACKEND", backend_code)
    cwd = os.path.dirname(os.path.dirname(__file__))
    proc = subprocess.Popen(
        [sys.executable, "-c", code, bucket, s3.endpoint],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
    )
    try:
        assert proc.stdout.readline() == "stored\n", proc.stderr.read()
        s3.cut()
        _, err = proc.communicate("go\n", timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "7 of them are not yet stored" in err and "are lost" in err, err
    assert s3.endpoint in err, err
    s3.restore()
    assert stored_numbers(f"{bucket}/exit", s3.options()) == list(range(5))


@pytest.mark.clickhouse
def test_clickhouse_outage_keeps_or_refuses_each_draw_and_inserts_the_kept_ones_once_back(
    clickhouse_database,
):
    """The same contract for a ClickHouse server that goes away (the link to it cut)."""
    clickhouse_driver = pytest.importorskip("clickhouse_driver")
    link = Link(f"{CLICKHOUSE_HOST}:9000")

    def connect():
        return clickhouse_driver.Client(
            "127.0.0.1",
            port=link.port,
            database=clickhouse_database,
            connect_timeout=5,
            send_receive_timeout=10,
        )

    backend = mcb.ClickHouseBackend(
        client_fn=connect, flush_every=4, flush_seconds=10**6, max_unstored_bytes=LIMIT
    )
    meta = make_meta(VARIABLES)
    run = backend.init_run(meta)
    chain = run.init_chain(0)
    assert isinstance(chain, ClickHouseChain)
    kept: list[int] = []
    refused: list[int] = []
    append_recording(chain, range(6), kept, refused)
    chain.flush()
    try:
        link.cut()
        append_recording(chain, range(6, 60), kept, refused)
        waiting = len(kept) - 6
        assert refused == list(range(6 + waiting, 60)), "refused draws are the last ones"
        assert waiting * DRAW_BYTES <= LIMIT < (waiting + 1) * DRAW_BYTES, "the bound, used fully"
        match = f"ClickHouse server at 127.0.0.1:{link.port}.*{waiting} of them are not yet stored"
        with pytest.raises(FlushError, match=match):
            chain.flush()
    finally:
        link.restore()
    append_recording(chain, range(60, 70), kept, refused)
    chain.flush()
    append_recording(chain, range(70, 75), kept, refused)
    assert kept[-5:] == list(range(70, 75))
    chain.close()
    link.cut()
    direct = mcb.ClickHouseBackend(
        clickhouse_driver.Client(CLICKHOUSE_HOST, database=clickhouse_database)
    )
    (stored,) = direct.get_run(meta.rid).get_chains()
    assert [int(i) for i in stored.get_draws("i")] == kept
    np.testing.assert_array_equal(stored.get_draws("x"), [draw(i)["x"] for i in kept])
    direct.client.disconnect()


@pytest.mark.parametrize("limit", [-1, 1.5, "1 GiB"])
def test_bad_memory_bound_is_refused_at_once(tmp_path, limit):
    with pytest.raises(ValueError, match="max_unstored_bytes must be a number of bytes"):
        mcb.ZarrBackend(str(tmp_path), max_unstored_bytes=limit)
    with pytest.raises(ValueError, match="max_unstored_bytes must be a number of bytes"):
        mcb.ParquetBackend(str(tmp_path), max_unstored_bytes=limit)
