"""How values become stored columns, for every storage format: storage keys for variable names,
and (below) ragged shapes, complex numbers and strings. Zarr, Parquet and ClickHouse all
encode through here, so the formats agree on what a value is."""

from __future__ import annotations

__all__ = ["encode_name"]


def encode_name(name: str) -> str:
    """A storage key for a variable name: '/' and '%' are percent-encoded, and so are a
    leading '.' or '__' (reserved by Zarr). Everything else, unicode and spaces included, stays."""
    key = name.replace("%", "%25").replace("/", "%2F")
    if key.startswith("."):
        key = "%2E" + key[1:]
    if key.startswith("__"):
        key = "%5F" + key[1:]
    return key
