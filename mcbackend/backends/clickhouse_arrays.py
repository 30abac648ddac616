"""``Array(T)`` insert columns written as offsets and flat data in one piece.

clickhouse-driver writes an ``Array(T)`` column from a list of per-row lists: it converts
every element to a Python object, flattens the rows twice and packs them with ``struct``,
about a microsecond per element. Its NumPy mode has no ``Array`` columns at all. An
``ArrayRows`` column instead holds the rows as NumPy values and is written as the Native
format lays an ``Array(T)`` column out: every row's end offset (UInt64), then every value
(little-endian ``T``), each as one ``tobytes``.

The driver has no hook for column writers, so ``install`` wraps the ``write_column`` its
block stream calls: an ``ArrayRows`` column is written here, any other column by the
driver as before (other users of the driver see no change).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import numpy as np

__all__ = ["ArrayRows", "array_rows", "install"]

_log = logging.getLogger(__name__)


class ArrayRows(np.ndarray):
    """An ``Array(T)`` insert column: a 2-D array (a row per draw, each of the same size) or an
    object array of 1-D arrays, in the dtype of ``T`` (byte order aside). Slices (the driver
    cuts inserts of over ``insert_block_size`` rows) stay ``ArrayRows``."""

    def encoded(self) -> bytes:
        """The column as the Native format writes it: offsets, then the flat values."""
        rows = self.view(np.ndarray)
        if rows.dtype == object:
            sizes = np.fromiter((len(r) for r in rows), np.uint64, len(rows))
            flat = np.concatenate(list(rows)) if len(rows) else np.empty(0, np.uint8)
        else:
            sizes = np.full(len(rows), rows[0].size if len(rows) else 0, np.uint64)
            flat = rows
        offsets = np.cumsum(sizes, dtype="<u8")
        data = np.ascontiguousarray(flat, dtype=flat.dtype.newbyteorder("<"))
        return offsets.tobytes() + data.tobytes()


def array_rows(rows: np.ndarray | list[np.ndarray]) -> ArrayRows:
    """Rows as an ``ArrayRows`` column: a 2-D array as it is, a list of 1-D arrays (of varying
    size) as an object array."""
    if isinstance(rows, np.ndarray) and rows.dtype != object:
        return np.asarray(rows).reshape(len(rows), -1).view(ArrayRows)
    column = np.empty(len(rows), dtype=object)
    column[:] = [np.asarray(r).reshape(-1) for r in rows]
    return column.view(ArrayRows)


@functools.cache
def install() -> bool:
    """Make clickhouse-driver write ``ArrayRows`` columns in one piece; whether it could (a
    driver without the expected ``write_column``, or without pandas for its NumPy mode, keeps
    inserting lists)."""
    try:
        # NumPy inserts need pandas (the driver imports it on the first one): imported now,
        # when a chain is opened, not in the middle of sampling.
        import clickhouse_driver.columns.numpy.service
        import clickhouse_driver.numpy.helpers  # noqa: F401
        from clickhouse_driver.streams import native
    except ImportError:  # pragma: no cover - ClickHouse support (or pandas) not installed
        return False
    original = getattr(native, "write_column", None)
    if original is None:  # pragma: no cover - a driver of another layout
        _log.warning(
            "clickhouse-driver has no streams.native.write_column; Array columns "
            "are inserted as lists (slower)."
        )
        return False

    @functools.wraps(original)
    def write_column(context, column_name, column_spec, items, buf, *args: Any, **kwargs: Any):
        if isinstance(items, ArrayRows):
            buf.write(items.encoded())
            return None
        return original(context, column_name, column_spec, items, buf, *args, **kwargs)

    native.write_column = write_column
    return True
