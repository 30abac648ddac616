"""Remote storage that misbehaves or is not what it seems: an S3 endpoint that accepts
connections and never answers, a bucket that does not exist, archives that cannot be written."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
import zipfile

import numpy as np
import pytest

import mcbackend as mcb
from mcbackend.errors import BucketNotFoundError, ReadOnlyError, StorageUnreachableError
from mcbackend.files import Location
from mcbackend.files.storage import S3_CONFIG, with_storage_defaults
from mcbackend.meta import Variable
from mcbackend.testing import make_meta

FORMATS = ["zarr", "parquet"]

#: Timeouts a test passes through storage options, so an endpoint that never answers fails
#: fast (s3fs still tries each request 5 times).
FAST = {"connect_timeout": 1, "read_timeout": 1, "retries": {"total_max_attempts": 1}}


def backend_class(fmt: str):
    return getattr(mcb, {"zarr": "ZarrBackend", "parquet": "ParquetBackend"}[fmt])


@pytest.fixture(params=FORMATS)
def fmt(request) -> str:
    if request.param == "parquet":
        pytest.importorskip("pyarrow")
    return request.param


@pytest.fixture
def silent_endpoint():
    """A TCP server on loopback that accepts every connection and never sends a byte."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    server.settimeout(0.1)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                accepted.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}", accepted
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


def small_meta():
    return make_meta([Variable("x", "float64", [2])], [Variable("in_warmup", "bool", [])])


@pytest.mark.s3
def test_endpoint_that_never_answers_fails_naming_it(fmt, silent_endpoint):
    url, accepted = silent_endpoint
    options = {"endpoint_url": url, "key": "k", "secret": "s", "config_kwargs": FAST}
    backend = backend_class(fmt)(f"s3://bucket-{uuid.uuid4().hex[:8]}/runs", options)
    started = time.monotonic()
    with pytest.raises(StorageUnreachableError, match=f"S3 endpoint {url}") as raised:
        backend.init_run(small_meta())
    assert "timeout" in str(raised.value).lower()
    # 5 attempts of s3fs x 1 s, plus its back-off (about 2 s); generous for a loaded machine.
    assert time.monotonic() - started < 60
    assert accepted, "the client never connected: this did not test a silent endpoint"
    with pytest.raises(StorageUnreachableError, match=f"S3 endpoint {url}"):
        mcb.open_run("s3://bucket/runs/some-run", options)


def test_s3_timeouts_are_finite_by_default_and_options_win():
    pytest.importorskip("s3fs")
    options = {"endpoint_url": "http://127.0.0.1:1", "key": "k", "secret": "s"}
    fs = Location.from_url("s3://bucket/runs", options).fs
    assert fs.config_kwargs == S3_CONFIG
    assert S3_CONFIG["connect_timeout"] <= 10 and S3_CONFIG["read_timeout"] <= 30
    custom = {**options, "config_kwargs": {"read_timeout": 3, "max_pool_connections": 20}}
    fs = Location.from_url("s3://bucket/runs", custom).fs
    assert fs.config_kwargs == {**S3_CONFIG, "read_timeout": 3, "max_pool_connections": 20}
    # A zip archive on S3 (the zip filesystem opens it at once, so only the options here).
    chained = with_storage_defaults("zip://::s3://bucket/run.zip", {"s3": options})
    assert chained == {"s3": {**options, "config_kwargs": S3_CONFIG}}
    # Other filesystems get no S3 options.
    assert Location.from_url("memory://runs").storage_options == {}


@pytest.mark.s3
def test_missing_bucket_is_refused_not_created(fmt, s3_options):
    import s3fs

    bucket = f"mcb-missing-{uuid.uuid4().hex[:8]}"
    backend = backend_class(fmt)(f"s3://{bucket}/runs", s3_options)
    with pytest.raises(BucketNotFoundError, match=f"bucket '{bucket}' does not exist") as raised:
        backend.init_run(small_meta())
    assert "create_bucket=True" in str(raised.value)
    fs = s3fs.S3FileSystem(**s3_options)
    fs.invalidate_cache()
    assert bucket not in [b.rstrip("/") for b in fs.ls("")]

    created = backend_class(fmt)(f"s3://{bucket}/runs", s3_options, create_bucket=True)
    run = created.init_run(small_meta())
    run.init_chain(0).append({"x": [1.0, 2.0]}, {"in_warmup": False})
    run.close()
    fs.invalidate_cache()
    assert bucket in [b.rstrip("/") for b in fs.ls("")]
    (chain,) = mcb.open_run(f"s3://{bucket}/runs/{run.meta.rid}", s3_options).get_chains()
    np.testing.assert_array_equal(chain.get_draws("x"), [[1.0, 2.0]])
    # Once the bucket exists, backends without create_bucket use it.
    assert backend.init_run(small_meta()).meta.rid in backend.get_runs().index


def zip_directory(folder, archive) -> None:
    """A zip of ``folder``'s contents, paths relative to its parent (as ``export`` writes)."""
    with zipfile.ZipFile(archive, "w") as z:
        for parent, _, files in os.walk(folder):
            for name in files:
                path = os.path.join(parent, name)
                z.write(path, os.path.relpath(path, os.path.dirname(folder)))


def test_runs_in_zip_archives_and_on_web_servers_are_read_only(fmt, tmp_path, http_root):
    run = backend_class(fmt)(str(tmp_path)).init_run(small_meta())
    rid = run.meta.rid
    run.init_chain(0).append_many({"x": [[1.0, 2.0], [3.0, 4.0]]}, {"in_warmup": [True, False]})
    run.close()
    archive = tmp_path / "shared.zip"
    zip_directory(tmp_path / rid, archive)
    before = archive.read_bytes()
    for url in [f"zip://{rid}::{archive}", str(archive), f"{http_root}/{rid}"]:
        for options in [{}, {"read_only": False}]:  # asking to write changes nothing
            opened = mcb.open_run(url, **options)
            (chain,) = opened.get_chains()
            np.testing.assert_array_equal(chain.get_draws("x"), [[1.0, 2.0], [3.0, 4.0]])
            with pytest.raises(ReadOnlyError, match="read-only"):
                opened.init_chain(1)
            with pytest.raises(ReadOnlyError, match="read-only"):
                chain.append({"x": [5.0, 6.0]}, {"in_warmup": False})
            with pytest.raises(ReadOnlyError, match="read-only"):
                chain.append_many({"x": [[5.0, 6.0]]}, {"in_warmup": [False]})
            assert len(chain) == 2
            opened.close()
    for root in [f"zip://::{archive}", http_root]:
        with pytest.raises(ReadOnlyError, match="read-only"):
            backend_class(fmt)(root).init_run(small_meta())
        with pytest.raises(ReadOnlyError, match="read-only"):
            mcb.open_backend(f"{fmt}+{root}").init_run(small_meta())
    assert archive.read_bytes() == before
    (chain,) = mcb.open_run(str(tmp_path / rid)).get_chains()
    assert len(chain) == 2


def test_a_failed_local_batch_raises_only_once_every_write_of_it_ended(tmp_path):
    """One file of a batch fails at once while big ones are still being written: the failure
    is raised only after those writes end, so no temporary file (nor write) outlives it."""
    from mcbackend.files.location import PARTIAL, _write_local_many

    blocked = tmp_path / "blocked"
    blocked.write_text("a file, not a folder")
    big = os.urandom(32 << 20)
    files = [(str(blocked / "x"), b"fails")] + [(str(tmp_path / f"big{i}"), big) for i in range(6)]
    with pytest.raises(OSError):
        _write_local_many(files)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(PARTIAL)] == []
    assert all((tmp_path / f"big{i}").stat().st_size == len(big) for i in range(6))
