"""Open runs and backends from URLs: ``open_run("s3://bucket/runs/<rid>")``.

File runs (Zarr, Parquet) are recognised by their ``mcbackend.json`` marker on any fsspec
filesystem; ``clickhouse://host:port/database/<rid>`` opens a run in ClickHouse.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from .core import Backend, Run
from .filestore import Location, RunNotFoundError, read_run_info

__all__ = ["open_run", "open_backend"]


def open_run(url: str, storage_options: Mapping[str, Any] | None = None, **options: Any) -> Run:
    """Open the run at ``url`` (a run directory or a ClickHouse URL), whatever its format.

    ``options`` go to the backend (e.g. ``read_only=True`` or ``flush_every``).
    """
    if str(url).startswith("clickhouse://"):
        backend, rid = _clickhouse_backend(str(url))
        return backend.get_run(rid)
    run_dir = Location.from_url(url, storage_options)
    info = read_run_info(run_dir)
    if info.format == "zarr":
        from .backends.zarr import ZarrBackend

        return ZarrBackend.open_run_dir(run_dir, **options)
    if info.format == "parquet":
        from .backends.parquet import ParquetBackend

        return ParquetBackend.open_run_dir(run_dir, **options)
    raise RunNotFoundError(f"{run_dir} holds a run of unknown format {info.format!r}.")


def open_backend(
    url: str, storage_options: Mapping[str, Any] | None = None, **options: Any
) -> Backend:
    """The backend for a root URL: ``zarr+s3://bucket/runs``, ``parquet+/data/runs``,
    ``clickhouse://host:port/database``; a plain path or URL means Zarr."""
    url = str(url)
    if url.startswith("clickhouse://"):
        return _clickhouse_backend(url + "/-")[0]
    scheme, _, rest = url.partition("+")
    if scheme == "parquet" and rest:
        from .backends.parquet import ParquetBackend

        return ParquetBackend(rest, storage_options, **options)
    from .backends.zarr import ZarrBackend

    return ZarrBackend(rest if scheme == "zarr" and rest else url, storage_options, **options)


def _clickhouse_backend(url: str):
    from .backends.clickhouse import ClickHouseBackend

    parts = urlsplit(url)
    segments = [unquote(s) for s in parts.path.strip("/").split("/") if s]
    if len(segments) != 2:
        raise ValueError(
            f"ClickHouse run URLs look like clickhouse://host:port/database/<rid>; got {url!r}."
        )
    database, rid = segments
    backend = ClickHouseBackend.from_url(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 9000,
        database=database,
        user=unquote(parts.username) if parts.username else "default",
        password=unquote(parts.password) if parts.password else "",
    )
    return backend, rid
