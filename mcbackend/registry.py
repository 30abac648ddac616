"""The storage formats mcbackend knows: format name -> backend class, imported on first use.

A file run's marker names its format (``"format": "zarr"``); root URLs name one as a prefix
(``parquet+s3://bucket/runs``); URL schemes that are format names (``clickhouse://...``)
belong to that backend. Other packages add formats through the entry point group
``mcbackend.backends``::

    [project.entry-points."mcbackend.backends"]
    myformat = "mypackage.backend:MyBackend"

A file backend subclasses ``mcbackend.files.FileBackend``. A backend with URLs of its own
(``myformat://...``) implements the classmethods ``open_root_url(url, storage_options,
**options)`` and ``open_run_url(url, storage_options, **options)``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from importlib import import_module
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .core import Backend, Run
    from .files import FileBackend

__all__ = [
    "ENTRY_POINT_GROUP",
    "BUILTIN_BACKENDS",
    "UrlBackendClass",
    "backend_class",
    "file_backend_class",
    "format_names",
    "url_backend_class",
]

ENTRY_POINT_GROUP = "mcbackend.backends"

#: The formats shipped with mcbackend, as ``module:class``.
BUILTIN_BACKENDS = {
    "zarr": "mcbackend.backends.zarr:ZarrBackend",
    "parquet": "mcbackend.backends.parquet:ParquetBackend",
    "clickhouse": "mcbackend.backends.clickhouse:ClickHouseBackend",
}


@functools.cache
def _targets() -> dict[str, str]:
    """Format name -> ``module:class``; built-in formats win over entry points of the same name."""
    found = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return {**found, **BUILTIN_BACKENDS}


def format_names() -> list[str]:
    """Every known format: built-in ones first, then those other packages registered."""
    return [*BUILTIN_BACKENDS, *sorted(set(_targets()) - set(BUILTIN_BACKENDS))]


def is_format(name: str) -> bool:
    return name in _targets()


def backend_class(name: str) -> type[Backend]:
    """The backend class of a format, imported now; ``KeyError`` names the known formats."""
    try:
        target = _targets()[name]
    except KeyError:
        raise KeyError(
            f"No backend for format {name!r}; known formats: {', '.join(format_names())}."
        ) from None
    module, _, attribute = target.partition(":")
    return getattr(import_module(module), attribute)


def file_backend_class(name: str) -> type[FileBackend]:
    """The backend class of a file format (runs in directories with a marker)."""
    from .files import FileBackend

    cls = backend_class(name)
    if not (isinstance(cls, type) and issubclass(cls, FileBackend)):
        raise TypeError(f"The backend of format {name!r}, {cls!r}, is not a FileBackend.")
    return cls


@runtime_checkable
class UrlBackendClass(Protocol):
    """A backend class with URLs of its own (``clickhouse://...``): its classmethods."""

    def open_root_url(
        self, url: str, storage_options: Mapping[str, Any] | None = None, **options: Any
    ) -> Backend: ...

    def open_run_url(
        self, url: str, storage_options: Mapping[str, Any] | None = None, **options: Any
    ) -> Run: ...


def url_backend_class(name: str) -> UrlBackendClass:
    """The backend class of a format whose URL scheme is its name."""
    cls = backend_class(name)
    if not isinstance(cls, UrlBackendClass):
        raise TypeError(
            f"The backend of format {name!r}, {cls!r}, has no open_root_url and open_run_url."
        )
    return cls


def refresh() -> None:
    """Forget the entry points read so far (after installing a package at runtime)."""
    _targets.cache_clear()
