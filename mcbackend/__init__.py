"""mcbackend: framework-agnostic storage for MCMC draws.

Sample into memory, ClickHouse, or Zarr / Parquet on any fsspec filesystem (local, S3, ...),
then reopen a run from its URL and read it lazily as ArviZ data.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from . import _betterproto, npproto  # noqa: F401  (_betterproto first: before any message)
from .backends import null, numpy
from .backends.null import NullBackend, NullChain, NullRun
from .backends.numpy import NumPyBackend, NumPyChain, NumPyRun
from .core import Backend, Chain, Run
from .errors import (
    BucketNotFoundError,
    ChainLockedError,
    CorruptRunError,
    DrawNotKeptError,
    FlushError,
    FormatVersionError,
    MCBackendError,
    ReadOnlyError,
    RunExistsError,
    RunNotFoundError,
    StorageUnreachableError,
)
from .meta import ChainMeta, Coordinate, DataVariable, ExtendedValue, RunMeta, Variable

try:  # the version is written once, in pyproject.toml
    __version__ = version("mcbackend")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

if TYPE_CHECKING:  # what type checkers see of the names below, which load on first use
    from ._copying import copy_run
    from .backends.clickhouse import ClickHouseBackend, ClickHouseChain, ClickHouseRun
    from .backends.parquet import ParquetBackend, ParquetChain, ParquetRun
    from .backends.zarr import ZarrBackend, ZarrChain, ZarrRun
    from .urls import open_backend, open_run

# Backends with optional dependencies load on first use.
_LAZY = {
    "ZarrBackend": "mcbackend.backends.zarr",
    "ZarrRun": "mcbackend.backends.zarr",
    "ZarrChain": "mcbackend.backends.zarr",
    "ParquetBackend": "mcbackend.backends.parquet",
    "ParquetRun": "mcbackend.backends.parquet",
    "ParquetChain": "mcbackend.backends.parquet",
    "ClickHouseBackend": "mcbackend.backends.clickhouse",
    "ClickHouseRun": "mcbackend.backends.clickhouse",
    "ClickHouseChain": "mcbackend.backends.clickhouse",
    "open_run": "mcbackend.urls",
    "open_backend": "mcbackend.urls",
    "copy_run": "mcbackend._copying",
}


if not TYPE_CHECKING:  # hidden from type checkers, so they flag misspelled names

    def __getattr__(name: str) -> Any:
        if name in _LAZY:
            return getattr(import_module(_LAZY[name]), name)
        raise AttributeError(f"module 'mcbackend' has no attribute {name!r}")


__all__ = [
    "Backend",
    "BucketNotFoundError",
    "Chain",
    "ChainLockedError",
    "ChainMeta",
    "ClickHouseBackend",
    "ClickHouseChain",
    "ClickHouseRun",
    "Coordinate",
    "CorruptRunError",
    "DataVariable",
    "ExtendedValue",
    "DrawNotKeptError",
    "FlushError",
    "FormatVersionError",
    "MCBackendError",
    "NullBackend",
    "NullChain",
    "NullRun",
    "NumPyBackend",
    "NumPyChain",
    "NumPyRun",
    "ParquetBackend",
    "ParquetChain",
    "ParquetRun",
    "ReadOnlyError",
    "Run",
    "RunExistsError",
    "RunMeta",
    "RunNotFoundError",
    "StorageUnreachableError",
    "Variable",
    "ZarrBackend",
    "ZarrChain",
    "ZarrRun",
    "copy_run",
    "npproto",
    "null",
    "numpy",
    "open_backend",
    "open_run",
]
