"""In-memory columns of draws: the NumPy backend's storage and the file backends' buffers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ._validation import VariableSpec, validate_values

__all__ = ["ColumnStore", "as_object_array"]

ndarray = np.ndarray  # looked up per value staged


class ColumnStore:
    """Growable columns of values, one per variable.

    Rigid variables live in preallocated arrays of the exact declared dtype that double when
    full; others (dynamic shapes, str) live in lists of per-draw arrays.
    """

    def __init__(self, specs: Iterable[VariableSpec], preallocate: int) -> None:
        self.specs = {s.name: s for s in specs}
        self.length = 0
        self._capacity = max(int(preallocate), 0)
        self.columns: dict[str, np.ndarray | list[np.ndarray]] = {
            name: np.empty((self._capacity, *s.shape), dtype=s.dtype) if s.is_rigid else []
            for name, s in self.specs.items()
        }
        self._staged: list[tuple[list[np.ndarray], np.ndarray]] = []
        self._bind()

    def _bind(self) -> None:
        """What ``stage`` needs per value, looked up once (again whenever columns change)."""
        self._rigid_slots = [
            (name, s.validate, s.dtype, s.shape, column)
            for (name, s), column in zip(self.specs.items(), self.columns.values())
            if isinstance(column, np.ndarray)
        ]
        self._list_slots = [
            (name, s.validate, column)
            for (name, s), column in zip(self.specs.items(), self.columns.values())
            if isinstance(column, list)
        ]

    def stage(
        self, values: Mapping[str, Any], what: str = "values", fill_missing: bool = False
    ) -> None:
        """Validate one draw's values into the row after the last, which ``commit`` then counts.

        Raises naming a refused value (as ``validate_values``) and leaves the stored rows as
        they were: a staged row is invisible until committed, and the next ``stage``
        overwrites it. Values are copied, so callers may reuse their arrays.
        """
        if self.length == self._capacity:
            self._grow()
        if len(values) != len(self.specs):
            values = validate_values(values, self.specs, what, fill_missing)
        i = self.length
        try:
            for name, validate, dtype, shape, column in self._rigid_slots:
                value = values[name]
                if (
                    type(value) is not np.ndarray
                    or value.dtype is not dtype
                    or value.shape != shape
                ):
                    value = validate(value)  # all but arrays of exactly the declared type
                column[i] = value
            if self._list_slots:
                self._staged = [
                    (column, validate(values[name])) for name, validate, column in self._list_slots
                ]
        except KeyError:
            validate_values(values, self.specs, what, fill_missing)  # names an unknown name
            raise

    def staged(self, name: str) -> Any:
        """The staged value of a variable (after a successful ``stage``)."""
        column = self.columns[name]
        if isinstance(column, np.ndarray):
            return column[self.length]
        return next(value for staged_in, value in self._staged if staged_in is column)

    def commit(self) -> None:
        """Count the staged row."""
        if self._staged:
            for column, value in self._staged:
                column.append(value)
            self._staged = []
        self.length += 1

    def append(self, values: Mapping[str, Any]) -> None:
        """Validate and store one draw's values."""
        self.stage(values)
        self.commit()

    def extend(self, other: ColumnStore) -> None:
        """Append every row of ``other`` (same variables)."""
        self.extend_rows(other.columns, 0, other.length)

    def extend_rows(self, columns: dict[str, np.ndarray | list], lo: int, hi: int) -> None:
        """Append rows ``lo:hi`` of validated columns (arrays, or lists for list columns)."""
        n = hi - lo
        while self.length + n > self._capacity:
            self._grow()
        start, end = self.length, self.length + n
        for name, rows in columns.items():
            column = self.columns[name]
            if isinstance(column, list):
                column.extend(rows[lo:hi])
            else:
                column[start:end] = rows[lo:hi]
        self.length = end

    def _grow(self) -> None:
        self._capacity = max(2 * self._capacity, 1)
        for name, column in self.columns.items():
            if isinstance(column, np.ndarray):
                grown = np.empty((self._capacity, *column.shape[1:]), dtype=column.dtype)
                grown[: self.length] = column[: self.length]
                self.columns[name] = grown
        self._bind()

    def trim(self) -> None:
        """Release the preallocated rows beyond ``length``."""
        if self.length == self._capacity:
            return
        self._capacity = self.length
        for name, column in self.columns.items():
            if isinstance(column, np.ndarray):
                self.columns[name] = column[: self.length].copy()
        self._bind()

    @property
    def nbytes(self) -> int:
        """Memory held by the columns (per-draw arrays of list columns included)."""
        total = 0
        for column in self.columns.values():
            if isinstance(column, np.ndarray):
                total += column.nbytes
            else:
                total += sum(value.nbytes + 112 for value in column)
        return total

    @property
    def data_nbytes(self) -> int:
        """Bytes of the values held (``nbytes`` less the preallocated rows not used yet)."""
        return self.nbytes_of(self.columns, 0, self.length)

    def nbytes_of(self, columns: dict[str, np.ndarray | list], lo: int, hi: int) -> int:
        """Bytes rows ``lo:hi`` of validated columns take once held (as ``nbytes`` counts)."""
        total = 0
        for name, rows in columns.items():
            spec = self.specs.get(name)
            if spec is None:  # not validated yet: validation names it
                continue
            if isinstance(self.columns[name], np.ndarray):
                total += (hi - lo) * int(np.prod(spec.shape)) * spec.dtype.itemsize
            else:
                total += sum(np.asarray(value).nbytes + 112 for value in rows[lo:hi])
        return total

    def rows(self, name: str, lo: int, hi: int) -> np.ndarray | list[np.ndarray]:
        """Rows ``lo:hi`` of a column, not copied: an array view, or a list of draws."""
        return self.columns[name][max(lo, 0) : min(hi, self.length)]

    def get(self, name: str, slc: slice) -> np.ndarray:
        column = self.columns[name]
        if isinstance(column, np.ndarray):
            return column[: self.length][slc].copy()
        return as_object_array(column[: self.length][slc])

    def get_at(self, name: str, idx: int) -> np.ndarray:
        value = self.columns[name][idx]
        return value.copy() if isinstance(value, np.ndarray) else np.asarray(value)


def as_object_array(values: Sequence[np.ndarray]) -> np.ndarray:
    """A 1-d object array holding one array per draw (never a stacked 2-d array)."""
    out = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        out[i] = value
    return out
