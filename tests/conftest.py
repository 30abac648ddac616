"""Shared fixtures: a real S3-protocol server (moto's) on loopback for the S3 tests."""

from __future__ import annotations

import functools
import http.server
import os
import socket
import threading
import uuid

import pytest

# The conformance suite lives in the package: let pytest explain its failed asserts.
pytest.register_assert_rewrite("mcbackend.testing")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto's S3 server on 127.0.0.1 (a real HTTP server; s3fs talks to it unmodified)."""
    pytest.importorskip("s3fs")
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="session")
def s3_options(s3_endpoint) -> dict:
    return {
        "endpoint_url": s3_endpoint,
        "key": "testing",
        "secret": "testing",
    }


@pytest.fixture
def s3_bucket(s3_options) -> str:
    """A fresh bucket; returns its ``s3://`` URL."""
    import s3fs

    name = f"mcb-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem(**s3_options).mkdir(name)
    return f"s3://{name}"


CLICKHOUSE_HOST = os.environ.get("MCB_CLICKHOUSE_HOST", "127.0.0.1")


@pytest.fixture(scope="session")
def clickhouse_database():
    """A fresh database on the ClickHouse server at 127.0.0.1:9000.

    Skipped with the reason when no server answers, unless MCB_REQUIRE_CLICKHOUSE=1 (set by
    scripts/test.sh and so by CI), which turns a missing server into a failure.
    """
    clickhouse_driver = pytest.importorskip("clickhouse_driver")
    try:
        client = clickhouse_driver.Client(CLICKHOUSE_HOST, connect_timeout=3)
        client.execute("SELECT 1")
    except Exception as ex:
        if os.environ.get("MCB_REQUIRE_CLICKHOUSE"):
            pytest.fail(f"MCB_REQUIRE_CLICKHOUSE is set but no ClickHouse server answers: {ex}")
        pytest.skip(
            f"No ClickHouse server on {CLICKHOUSE_HOST}:9000 ({ex}); run scripts/clickhouse.sh"
        )
    name = f"mcb_test_{uuid.uuid4().hex[:10]}"
    client.execute(f"CREATE DATABASE {name}")
    client.disconnect()  # no socket left open across the session (tests fail on ResourceWarning)
    yield name
    client.execute(f"DROP DATABASE {name}")
    client.disconnect()


@pytest.fixture
def http_root(tmp_path):
    """A read-only static HTTP server on loopback serving ``tmp_path``."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
