"""mcbackend: framework-agnostic storage for MCMC draws.

Sample into memory, ClickHouse, or Zarr / Parquet on any fsspec filesystem (local, S3, ...),
then reopen a run from its URL and read it lazily as ArviZ data.
"""

from importlib import import_module
from typing import Any

from . import _betterproto, npproto  # noqa: F401  (_betterproto first: before any message)
from .backends import null, numpy
from .backends.null import NullBackend, NullChain, NullRun
from .backends.numpy import NumPyBackend, NumPyChain, NumPyRun
from .core import Backend, Chain, Run
from .errors import (
    ChainLockedError,
    CorruptRunError,
    FlushError,
    FormatVersionError,
    MCBackendError,
    ReadOnlyError,
    RunExistsError,
    RunNotFoundError,
)
from .meta import ChainMeta, Coordinate, DataVariable, ExtendedValue, RunMeta, Variable

__version__ = "0.6.0"

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
    "copy_run": "mcbackend.copying",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mcbackend' has no attribute {name!r}")


__all__ = [
    "Backend",
    "Chain",
    "ChainLockedError",
    "ChainMeta",
    "Coordinate",
    "CorruptRunError",
    "DataVariable",
    "ExtendedValue",
    "FlushError",
    "FormatVersionError",
    "MCBackendError",
    "NullBackend",
    "NullChain",
    "NullRun",
    "NumPyBackend",
    "NumPyChain",
    "NumPyRun",
    "ReadOnlyError",
    "Run",
    "RunExistsError",
    "RunMeta",
    "RunNotFoundError",
    "Variable",
    "npproto",
    "null",
    "numpy",
    *_LAZY,
]
