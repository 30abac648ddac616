"""Open runs and backends from URLs: ``open_run("s3://bucket/runs/<rid>")``.

File runs (Zarr, Parquet) are recognised by their ``mcbackend.json`` marker on any fsspec
filesystem; a zip archive made by ``mcbackend export`` (``run.zip``) opens the run it holds;
a URL whose scheme names a format (``clickhouse://host:port/database/<rid>``) goes to that
format's backend (``mcbackend.registry``).
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Mapping
from typing import Any

from . import registry
from .core import Backend, Run
from .errors import CorruptRunError, RunNotFoundError
from .files import Location, read_run_info
from .files.storage import reaching

__all__ = ["open_run", "open_backend", "split_format", "zip_run_url"]

DEFAULT_FORMAT = "zarr"


def open_run(url: str, storage_options: Mapping[str, Any] | None = None, **options: Any) -> Run:
    """Open the run at ``url`` (a run directory or a ClickHouse URL), whatever its format.

    ``options`` go to the backend (e.g. ``read_only=True`` or ``flush_every``).
    """
    url = str(url)
    owner = url_owner(url)
    if owner is not None:
        return registry.url_backend_class(owner).open_run_url(url, storage_options, **options)
    url, storage_options = zip_run_url(url, storage_options)
    run_dir = Location.from_url(url, storage_options)
    with reaching(run_dir):
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
    fmt, root = split_format(url)
    return registry.file_backend_class(fmt or DEFAULT_FORMAT)(root, storage_options, **options)


_FORMAT_PREFIX = re.compile(r"^([A-Za-z][A-Za-z0-9_-]*)\+(.+)$")


def split_format(url: str) -> tuple[str | None, str]:
    """``("parquet", "s3://bucket/runs")`` for ``parquet+s3://bucket/runs``; ``(None, url)``
    without a prefix. A word before ``+`` that names no format is refused, not taken as part
    of a directory name (``./runs+old`` still names a directory)."""
    match = _FORMAT_PREFIX.match(url)
    if not match:
        return None, url
    fmt, root = match.groups()
    if not registry.is_format(fmt):
        known = ", ".join(f"{name}+URL" for name in registry.format_names())
        raise ValueError(
            f"Unknown format {fmt!r} in {url!r}: known formats are {known} "
            "(write ./path for a directory whose name contains '+')."
        )
    return fmt, root


def zip_run_url(
    url: str, storage_options: Mapping[str, Any] | None = None
) -> tuple[str, Mapping[str, Any] | None]:
    """``zip://<rid>::run.zip`` for a zip archive made by ``mcbackend export``, which holds
    exactly one run, with the storage options moved to the archive's filesystem; any other
    URL and its options as they are."""
    if not url.endswith(".zip") or "::" in url or url.startswith("zip://"):
        return url, storage_options
    archive = Location.from_url(url, storage_options)
    with reaching(archive), archive.fs.open(archive.path, "rb") as f, zipfile.ZipFile(f) as z:
        rids = sorted({n.split("/", 1)[0] for n in z.namelist() if "/" in n})
    if len(rids) != 1:
        raise CorruptRunError(f"{url} should hold exactly one run; found {rids}.")
    protocol = archive.url().split("://", 1)[0]
    return f"zip://{rids[0]}::{archive.url()}", {protocol: dict(storage_options or {})}


def url_owner(url: str) -> str | None:
    """The format whose own URLs these are (``clickhouse://...``), or ``None`` for file URLs."""
    scheme, sep, _ = str(url).partition("://")
    if sep and registry.is_format(scheme):
        return scheme
    return None
