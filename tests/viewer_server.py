"""The viewer served for real on a free loopback port, in a thread of the test process."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

from tests.conftest import free_port


@contextlib.contextmanager
def running_viewer(url: str, storage_options: dict | None = None) -> Iterator[str]:
    """Serve the runs under ``url``; yields the base address (``http://127.0.0.1:<port>``)."""
    import uvicorn

    from mcbackend.viewer import RunSource, create_app

    port = free_port()
    config = uvicorn.Config(
        create_app(RunSource(url, storage_options)),
        host="127.0.0.1",
        port=port,
        log_level="warning",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the viewer did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def get(base: str, path: str) -> tuple[int, dict | str, str]:
    """(status, JSON body or text, content type) of GET base+path."""
    try:
        with urllib.request.urlopen(base + path, timeout=60) as response:
            status, body, kind = response.status, response.read(), response.headers["content-type"]
    except urllib.error.HTTPError as ex:
        status, body, kind = ex.code, ex.read(), ex.headers["content-type"]
    text = body.decode("utf-8", errors="replace")
    return status, json.loads(text) if kind.startswith("application/json") else text, kind


def get_json(base: str, path: str) -> dict:
    status, body, _ = get(base, path)
    assert status == 200, body
    return body
