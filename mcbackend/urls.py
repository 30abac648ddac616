"""Open runs and backends from URLs: ``open_run("s3://bucket/runs/<rid>")``.

File runs (Zarr, Parquet) are recognised by their ``mcbackend.json`` marker on any fsspec
filesystem; a URL whose scheme names a format (``clickhouse://host:port/database/<rid>``)
goes to that format's backend (``mcbackend.registry``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import registry
from .core import Backend, Run
from .errors import RunNotFoundError
from .files import Location, read_run_info

__all__ = ["open_run", "open_backend"]

DEFAULT_FORMAT = "zarr"


def open_run(url: str, storage_options: Mapping[str, Any] | None = None, **options: Any) -> Run:
    """Open the run at ``url`` (a run directory or a ClickHouse URL), whatever its format.

    ``options`` go to the backend (e.g. ``read_only=True`` or ``flush_every``).
    """
    url = str(url)
    owner = url_owner(url)
    if owner is not None:
        return registry.url_backend_class(owner).open_run_url(url, storage_options, **options)
    run_dir = Location.from_url(url, storage_options)
    info = read_run_info(run_dir)
    if not registry.is_format(info.format):
        raise RunNotFoundError(f"{run_dir} holds a run of unknown format {info.format!r}.")
    return registry.file_backend_class(info.format).open_run_dir(run_dir, **options)


def open_backend(
    url: str, storage_options: Mapping[str, Any] | None = None, **options: Any
) -> Backend:
    """The backend for a root URL: ``zarr+s3://bucket/runs``, ``parquet+/data/runs``,
    ``clickhouse://host:port/database``; a plain path or URL means Zarr."""
    url = str(url)
    owner = url_owner(url)
    if owner is not None:
        return registry.url_backend_class(owner).open_root_url(url, storage_options, **options)
    fmt, plus, rest = url.partition("+")
    if not (plus and rest and registry.is_format(fmt)):
        fmt, rest = DEFAULT_FORMAT, url
    return registry.file_backend_class(fmt)(rest, storage_options, **options)


def url_owner(url: str) -> str | None:
    """The format whose own URLs these are (``clickhouse://...``), or ``None`` for file URLs."""
    scheme, sep, _ = str(url).partition("://")
    if sep and registry.is_format(scheme):
        return scheme
    return None
