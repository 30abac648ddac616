"""The runs under one URL, opened read-only and found only by the ids their backends list.

A request names a run by id; that id is looked up in the listing of the backends below the
URL, never turned into a path or a table name, so no request reaches anything else.
"""

from __future__ import annotations

import contextlib
import datetime
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..core import Backend, Run
from ..errors import RunNotFoundError
from ..files import Location
from ..urls import open_backend, url_owner

__all__ = ["RunEntry", "RunSource"]

#: Seconds a listing of the runs is reused before the backends are asked again.
LISTING_TTL = 1.0


@dataclass(frozen=True)
class RunEntry:
    rid: str
    created_at: datetime.datetime | None
    backend: Backend
    format: str


class RunSource:
    """Every run under ``url``: a directory (local or fsspec, runs of every file format side
    by side) or a backend's own root URL such as ``clickhouse://host:port/database``."""

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None) -> None:
        self.url = str(url)
        self._lock = threading.Lock()
        self._entries: dict[str, RunEntry] = {}
        self._listed_at = 0.0
        self._runs: dict[str, Run] = {}
        self._access: contextlib.AbstractContextManager = contextlib.nullcontext()
        owner = url_owner(self.url)
        if owner == "clickhouse":
            _require_clickhouse_runs_table(self.url)
            # a clickhouse_driver connection runs one query at a time
            self._access = threading.RLock()
        if owner is not None:  # a backend with URLs of its own
            self._backends = [(owner, open_backend(self.url, storage_options))]
        else:  # a directory: runs of every file format side by side
            self._backends = [
                (fmt, open_backend(f"{fmt}+{self.url}", storage_options, read_only=True))
                for fmt in file_formats()
            ]
            location = Location.from_url(self.url, storage_options)
            if not location.fs.isdir(location.path):
                raise RunNotFoundError(f"No directory at {location}.")

    def access(self) -> contextlib.AbstractContextManager:
        """Held around each request's reads: one at a time where the backend's connections
        cannot be shared between threads (ClickHouse), no waiting elsewhere."""
        return self._access

    def entries(self, max_age: float = LISTING_TTL) -> list[RunEntry]:
        """The runs, oldest first (listed again when the last listing is older than max_age)."""
        with self._lock:
            if time.monotonic() - self._listed_at > max_age:
                found: dict[str, RunEntry] = {}
                for fmt, backend in self._backends:
                    frame = backend.get_runs()
                    for rid, created in zip(frame["rid"], frame["created_at"]):
                        found.setdefault(str(rid), RunEntry(str(rid), _utc(created), backend, fmt))
                self._entries = found
                self._listed_at = time.monotonic()
            return sorted(
                self._entries.values(),
                key=lambda e: e.created_at or datetime.datetime.min.replace(tzinfo=datetime.UTC),
            )

    def entry(self, rid: str) -> RunEntry:
        """The listed run ``rid``; an id not listed (even after listing again) is refused."""
        known = {e.rid: e for e in self.entries()}
        if rid not in known:
            known = {e.rid: e for e in self.entries(max_age=0)}
        if rid not in known:
            raise RunNotFoundError(f"No run {rid!r} under {self.url}.")
        return known[rid]

    def run(self, rid: str) -> Run:
        """The run ``rid``, opened read-only once and kept (its chains re-read their length)."""
        entry = self.entry(rid)
        with self._lock:
            if rid not in self._runs:
                self._runs[rid] = entry.backend.get_run(rid)
            return self._runs[rid]


def file_formats() -> list[str]:
    """The registered formats that store runs as directories (Zarr, Parquet, plug-ins)."""
    from .. import registry
    from ..files import FileBackend

    return [
        f for f in registry.format_names() if issubclass(registry.backend_class(f), FileBackend)
    ]


def _utc(value: Any) -> datetime.datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime.datetime):
        value = getattr(value, "to_pydatetime", lambda: None)()
        if value is None:
            return None
    return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)


def _require_clickhouse_runs_table(url: str) -> None:
    """Refuse a database without mcbackend's tables, before the backend would create them:
    the viewer never writes."""
    from urllib.parse import unquote, urlsplit

    import clickhouse_driver

    parts = urlsplit(url)
    database = unquote(parts.path.strip("/"))
    client = clickhouse_driver.Client(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 9000,
        database=database,
        user=unquote(parts.username) if parts.username else "default",
        password=unquote(parts.password) if parts.password else "",
        settings={"readonly": 1},
    )
    try:
        tables = {row[0] for row in client.execute("SHOW TABLES")}
    except Exception as ex:
        raise RunNotFoundError(f"Cannot read ClickHouse database {database!r}: {ex}") from None
    finally:
        client.disconnect()
    if not {"runs", "chains"} <= tables:
        raise RunNotFoundError(f"ClickHouse database {database!r} holds no mcbackend runs.")
