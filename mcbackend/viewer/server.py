"""Start the viewer: open the runs under a URL, then serve them with uvicorn."""

from __future__ import annotations

import ipaddress
import warnings
from collections.abc import Mapping
from typing import Any

from .app import create_app
from .source import RunSource

__all__ = ["serve", "is_loopback"]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    url: str,
    storage_options: Mapping[str, Any] | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    echo=print,
) -> None:
    """Serve the runs under ``url`` at http://host:port/ until interrupted."""
    import uvicorn

    source = RunSource(url, storage_options)
    if not is_loopback(host):
        warnings.warn(
            f"Serving on {host}: anyone who reaches this interface can read every run under "
            f"{url}. The viewer has no login; bind 127.0.0.1 unless that is intended.",
            UserWarning,
            stacklevel=2,
        )
    config = uvicorn.Config(
        create_app(source),
        host=host,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=2,  # open pages keep polling: do not wait for them
    )
    server = uvicorn.Server(config)
    shown = f"[{host}]" if ":" in host else host
    echo(f"mcbackend viewer serving {url} at http://{shown}:{port}/ (Ctrl+C stops it)")
    server.run()
