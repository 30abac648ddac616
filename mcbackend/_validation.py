"""Checks of run metadata and of every appended value against its declared variable."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .meta import RunMeta, Variable
from .npproto.utils import ndarray_to_numpy

__all__ = [
    "VariableSpec",
    "check_text",
    "numpy_dtype",
    "specs_by_name",
    "validate_run_meta",
    "validate_values",
]


def numpy_dtype(dtype_name: str) -> np.dtype:
    """The NumPy dtype of a ``Variable.dtype`` name; ``"str"`` maps to unicode."""
    if dtype_name in ("str", "unicode", "string"):
        return np.dtype(str)
    try:
        dtype = np.dtype(dtype_name)
    except TypeError:
        raise TypeError(f"Unsupported dtype {dtype_name!r}.") from None
    if dtype.kind in "OVSaMm" or _is_extended_precision(dtype):
        raise TypeError(
            f"Unsupported dtype {dtype_name!r}: no backend stores it portably. Use an integer, "
            "float (at most 64 bit), complex (at most 128 bit), 'bool' or 'str' type; store "
            "datetimes and durations as integers (e.g. int64 nanoseconds) or strings."
        )
    return dtype


def _is_extended_precision(dtype: np.dtype) -> bool:
    """``longdouble``/``clongdouble`` (80 or 128 bit on most platforms): Zarr, Parquet and
    ClickHouse have no such type."""
    return (dtype.kind == "f" and dtype.itemsize > 8) or (dtype.kind == "c" and dtype.itemsize > 16)


#: Scalar types whose every value the dtype holds exactly (Python ``int`` may overflow: absent).
_EXACT_SCALARS: dict[str, tuple[type, ...]] = {
    "float64": (float, np.float64, np.float32, np.float16),
    "float32": (np.float32, np.float16),
    "int64": (np.int64, np.int32, np.int16, np.int8),
    "int32": (np.int32, np.int16, np.int8),
    "bool": (bool, np.bool_),
}


@dataclass(frozen=True)
class VariableSpec:
    """A ``Variable`` digested for fast per-draw checks (everything derived is computed once)."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    undefined_ndim: bool
    #: The dtype is str.
    is_str: bool = field(init=False)
    #: Draws differ in shape (``-1``/legacy ``0`` in ``shape``, or ``undefined_ndim``).
    is_ragged: bool = field(init=False)
    #: Every draw has the same shape and a fixed-size dtype.
    is_rigid: bool = field(init=False)
    #: Scalar types passed through unconverted (scalar variables only).
    _exact_scalars: tuple[type, ...] = field(init=False, repr=False)
    #: Python ints the (scalar, numeric) dtype holds exactly, as (lowest, highest).
    _int_range: tuple[int, int] | None = field(init=False, repr=False)
    #: A scalar str variable.
    _scalar_str: bool = field(init=False, repr=False)

    def __post_init__(self) -> None:
        is_str = self.dtype.kind == "U"
        ragged = self.undefined_ndim or any(s <= 0 for s in self.shape)
        rigid = not ragged and not is_str
        exact = _EXACT_SCALARS.get(self.dtype.name, ()) if self.shape == () and rigid else ()
        object.__setattr__(self, "is_str", is_str)
        object.__setattr__(self, "is_ragged", ragged)
        object.__setattr__(self, "is_rigid", rigid)
        object.__setattr__(self, "_exact_scalars", exact)
        scalar_numeric = self.shape == () and rigid and self.dtype.kind in "iuf"
        object.__setattr__(
            self, "_int_range", _exact_int_range(self.dtype) if scalar_numeric else None
        )
        object.__setattr__(self, "_scalar_str", is_str and self.shape == () and not ragged)

    @classmethod
    def from_variable(cls, var: Variable) -> VariableSpec:
        return cls(var.name, numpy_dtype(var.dtype), tuple(var.shape), bool(var.undefined_ndim))

    def validate(self, value: Any) -> np.ndarray:
        """Return ``value`` as an array of the declared dtype, or raise naming the problem.

        Scalars of a type that stores exactly (``float`` for float64, ``np.int32`` for int32,
        ...) pass through as they are: every store accepts them.
        """
        kind = type(value)
        if kind in self._exact_scalars:
            return value
        if kind is np.ndarray:
            if (
                (value.dtype is self.dtype or value.dtype == self.dtype)
                and value.shape == self.shape
                and not self.is_str
            ):
                return value
        elif kind is int and self._int_range is not None:
            lowest, highest = self._int_range
            if lowest <= value <= highest:
                return self.dtype.type(value)
            if self.dtype.kind in "iu":  # it would wrap around
                raise ValueError(
                    f"Value {value} of {self.name!r} is out of range for its dtype {self.dtype}."
                )
        elif kind is str and self._scalar_str:
            if not value.isascii():
                check_text(value, f"Value of {self.name!r}")
            return np.array(value)
        arr = self._as_array(value)
        self._check_dtype(arr)
        self._check_shape(arr.shape)
        if self.is_str:
            text = arr.astype(str)
            _check_unicode(text, f"Value of {self.name!r}")
            return text
        self._check_range(arr)
        # Draws of dynamic shape are kept as they are: never alias the caller's array.
        return self._converted(arr, copy=not self.is_rigid)

    def missing_value(self) -> np.ndarray:
        """What stands for a value left out: NaN where the dtype has it, else 0, False or "";
        dynamic dimensions are empty."""
        shape = (0,) if self.undefined_ndim else tuple(max(s, 0) for s in self.shape)
        fill = np.nan if self.dtype.kind in "fc" else "" if self.is_str else 0
        return np.full(shape, fill, dtype=self.dtype)

    def validate_many(self, values: Any, n: int) -> np.ndarray | list[np.ndarray]:
        """Validate ``n`` draws at once: an array with a leading draw axis (rigid variables), or
        a list of per-draw arrays. Raises like ``validate``, naming the problem."""
        if not self.is_rigid:
            if len(values) != n:
                raise ValueError(f"{self.name!r} has {len(values)} values, expected {n}.")
            return [self.validate(value) for value in values]
        if not len(values):
            if n:
                raise ValueError(f"{self.name!r} has 0 values, expected {n}.")
            return np.empty((0, *self.shape), dtype=self.dtype)
        arr = self._as_array(values)
        if arr.dtype is not self.dtype and arr.dtype != self.dtype:
            self._check_dtype(arr)
            self._check_range(arr)
            arr = self._converted(arr)
        if arr.shape[:1] != (n,):
            raise ValueError(f"{self.name!r} has {len(arr)} values, expected {n}.")
        if arr.shape[1:] != self.shape:
            raise ValueError(
                f"Values of {self.name!r} have shape {arr.shape[1:]}, declared {self.shape}."
            )
        return arr

    def _as_array(self, value: Any) -> np.ndarray:
        """``np.asarray(value)``; for integer dtypes, lists of Python ints NumPy would make
        floats of (``[0, 2**64 - 1]``) are kept exact, as object arrays ``_check_range``
        checks."""
        arr = np.asarray(value)
        if arr.dtype.kind == "f" and self.dtype.kind in "iu" and isinstance(value, (list, tuple)):
            exact = np.array(value, dtype=object)
            if exact.shape == arr.shape and all(
                isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in exact.flat
            ):
                return exact
        return arr

    def _check_range(self, arr: np.ndarray) -> None:
        """Integers that would wrap around in the declared integer dtype are refused (floats
        that would overflow: ``_converted``)."""
        if self.dtype.kind not in "iu" or not arr.size:
            return
        if arr.dtype.kind == "O" and _all_ints(arr):
            lowest, highest = min(arr.flat), max(arr.flat)
        elif arr.dtype.kind not in "iu" or np.can_cast(arr.dtype, self.dtype, "safe"):
            return
        else:
            lowest, highest = arr.min(), arr.max()
        info = np.iinfo(self.dtype)
        if lowest < info.min or highest > info.max:
            bad = lowest if lowest < info.min else highest
            raise ValueError(
                f"Value {bad} of {self.name!r} is out of range for its dtype {self.dtype}."
            )

    def _converted(self, arr: np.ndarray, copy: bool = True) -> np.ndarray:
        """``arr`` in the declared dtype. Finite values that become infinite (1e6 in float16)
        are refused, as integers that would wrap are; inf and nan themselves are values."""
        if not _may_overflow(arr.dtype, self.dtype) or _within(arr, _largest(self.dtype)):
            return arr.astype(self.dtype, copy=copy)
        with np.errstate(over="ignore", invalid="ignore"):
            out = arr.astype(self.dtype, copy=copy)
        if np.isinf(out).any():
            overflow = np.isinf(out) & np.isfinite(arr)
            if overflow.any():
                bad = np.atleast_1d(arr)[np.atleast_1d(overflow)][0]
                raise ValueError(
                    f"Value {bad} of {self.name!r} is out of range for its dtype {self.dtype}."
                )
        return out

    def _check_dtype(self, arr: np.ndarray) -> None:
        if self.is_str:
            if arr.dtype.kind == "U" or (
                arr.dtype.kind == "O" and all(isinstance(v, str) for v in arr.flat)
            ):
                return
        elif arr.dtype.kind not in "OUSV" and np.can_cast(arr.dtype, self.dtype, "same_kind"):
            return
        elif arr.dtype.kind in "iu" and self.dtype.kind in "iu":
            return  # signed into unsigned (or back): ``_check_range`` refuses what would wrap
        elif arr.dtype.kind == "O" and self.dtype.kind in "iu" and _all_ints(arr):
            return  # Python ints beyond int64: ``_check_range`` checks them
        raise TypeError(
            f"Value of {self.name!r} has dtype {arr.dtype}, which cannot be stored as "
            f"the declared dtype {self.dtype if not self.is_str else 'str'}."
        )

    def _check_shape(self, shape: tuple[int, ...]) -> None:
        if self.undefined_ndim:
            return
        if len(shape) == len(self.shape) and all(
            want <= 0 or want == got for want, got in zip(self.shape, shape)
        ):
            return
        declared = tuple("?" if s <= 0 else s for s in self.shape)
        raise ValueError(f"Value of {self.name!r} has shape {shape}, declared {declared}.")


@functools.cache
def _largest(dtype: np.dtype) -> float:
    """The largest finite value of a float dtype."""
    return float(np.finfo(dtype).max)


def _within(arr: np.ndarray, limit: float) -> bool:
    """Every value of a real array lies in ``[-limit, limit]``: a quick test, much cheaper
    than converting under NumPy's error state (nan, inf or complex: ``False``, look closer)."""
    if arr.dtype.kind not in "iuf" or not arr.size:
        return not arr.size
    if arr.ndim == 0:
        return abs(float(arr)) <= limit
    return float(arr.max()) <= limit and float(arr.min()) >= -limit


@functools.cache
def _may_overflow(source: np.dtype, target: np.dtype) -> bool:
    """Some finite number of ``source`` is too large for the float/complex ``target``."""
    if target.kind not in "fc" or source.kind not in "iufc":
        return False
    largest = np.iinfo(source).max if source.kind in "iu" else np.finfo(source).max
    return float(largest) > _largest(target)


def check_text(text: str, what: str) -> None:
    """Refuse text without a UTF-8 encoding (lone surrogates such as ``"\\ud800"``): no
    storage can hold it, so accepting it would fail every later write."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as ex:
        raise ValueError(
            f"{what} {text!r} holds a lone surrogate ({text[ex.start]!r} at position "
            f"{ex.start}), which has no UTF-8 encoding: no backend can store it."
        ) from None


def _check_unicode(values: np.ndarray, what: str) -> None:
    """``check_text`` of every string of a ``str`` array: all of them joined are checked at
    once (a lone surrogate stays one when joined), each only when that fails."""
    joined = "".join(values.ravel().tolist())
    if joined.isascii():
        return
    try:
        joined.encode("utf-8")
    except UnicodeEncodeError:
        for text in values.ravel().tolist():
            check_text(text, what)


def _all_ints(arr: np.ndarray) -> bool:
    return all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in arr.flat)


def _exact_int_range(dtype: np.dtype) -> tuple[int, int] | None:
    """The Python ints a numeric dtype stores exactly (floats: up to their mantissa)."""
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return int(info.min), int(info.max)
    if dtype.kind == "f":
        limit = 2 ** (np.finfo(dtype).nmant + 1)
        return -limit, limit
    return None


def specs_by_name(variables: Iterable[Variable], kind: str) -> dict[str, VariableSpec]:
    specs: dict[str, VariableSpec] = {}
    for var in variables:
        if var.name in specs:
            raise ValueError(f"Duplicate {kind} name {var.name!r}.")
        specs[var.name] = VariableSpec.from_variable(var)
    return specs


def validate_values(
    values: Mapping[str, Any],
    specs: Mapping[str, VariableSpec],
    what: str,
    fill_missing: bool = False,
) -> dict[str, np.ndarray]:
    """Every value of one draw (or its stats) validated, by name; unknown names are refused,
    missing ones too unless ``fill_missing`` (then stored as ``missing_value``)."""
    if len(values) == len(specs):
        try:
            return {name: spec.validate(values[name]) for name, spec in specs.items()}
        except KeyError:
            pass  # a name is missing: named below
    unknown = [name for name in values if name not in specs]
    if unknown:
        raise KeyError(f"The {what} has unknown names {unknown}; known: {list(specs)}.")
    missing = [name for name in specs if name not in values]
    if missing and not fill_missing:
        raise ValueError(f"The {what} lacks values for {missing}.")
    return {
        name: spec.validate(values[name]) if name in values else spec.missing_value()
        for name, spec in specs.items()
    }


def validate_run_meta(meta: RunMeta) -> None:
    """Refuse metadata that no backend could store faithfully."""
    if not isinstance(meta, RunMeta):
        raise TypeError(f"Expected a RunMeta, got {type(meta).__name__}.")
    if not meta.rid:
        raise ValueError("RunMeta.rid is empty; give the run an id.")
    _check_meta_text(meta)
    for group, kind in [(meta.variables, "variable"), (meta.sample_stats, "sample stat")]:
        for var in group:
            if not var.name:
                raise ValueError(f"A {kind} has an empty name.")
            numpy_dtype(var.dtype)
            if any(s < -1 for s in var.shape):
                raise ValueError(f"The {kind} {var.name!r} has an invalid shape {list(var.shape)}.")
            if var.dims and len(var.dims) != len(var.shape) and not var.undefined_ndim:
                raise ValueError(
                    f"The {kind} {var.name!r} has {len(var.dims)} dims {list(var.dims)} "
                    f"but shape {list(var.shape)}."
                )
        specs_by_name(group, kind)
    for dvar in meta.data:
        if dvar.value is None:
            raise ValueError(f"The data variable {dvar.name!r} has no value.")


def _check_meta_text(meta: RunMeta) -> None:
    """Every text of the metadata has a UTF-8 encoding (protobuf, Zarr and Parquet need one)."""
    check_text(meta.rid, "The run id")
    for group, kind in [(meta.variables, "variable"), (meta.sample_stats, "sample stat")]:
        for var in group:
            check_text(var.name, f"The {kind} name")
            for dim in var.dims:
                check_text(dim, f"A dim of the {kind} {var.name!r}")
    for dvar in meta.data:
        check_text(dvar.name, "The data variable name")
        for dim in dvar.dims:
            check_text(dim, f"A dim of the data variable {dvar.name!r}")
    for coord in meta.coordinates:
        check_text(coord.name, "The coordinate name")
        labels = ndarray_to_numpy(coord.values) if coord.values else np.empty(0)
        if labels.dtype.kind == "U":
            _check_unicode(labels, f"A label of the coordinate {coord.name!r}")
    for key, value in meta.attributes.items():
        check_text(key, "The attribute name")
        if isinstance(value.string_value, str):
            check_text(value.string_value, f"The attribute {key!r}")
    try:
        bytes(meta)
    except UnicodeEncodeError as ex:  # text nested deeper (struct or list attributes)
        raise ValueError(
            f"The run metadata holds text with a lone surrogate ({ex.object[ex.start]!r}), "
            "which has no UTF-8 encoding: no backend can store it."
        ) from None
