"""How draws become stored columns, for every storage format (Zarr, Parquet, ClickHouse), so
the formats agree on what a value is: the two sections of a run, storage keys for names,
ragged (dynamic-shape) draws as flat values plus shapes, complex numbers as (real, imag)
pairs, strings, and column name collisions. Each format keeps its own layout on top."""

from __future__ import annotations

import enum
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ._validation import VariableSpec
from .columns import as_object_array

__all__ = [
    "ColumnMapping",
    "Ragged",
    "Section",
    "check_unique_columns",
    "complex_from_pairs",
    "complex_part_dtype",
    "complex_to_pairs",
    "encode_name",
    "key_problem",
    "ragged_draws",
    "shape_offsets",
    "str_array",
    "str_draws",
    "str_rows",
]


class Section(enum.Enum):
    """The two groups of values of every draw: the model's variables and the sampler's stats."""

    DRAWS = "draws"
    STATS = "stats"


# ---- names ---------------------------------------------------------------------------------


#: Bytes a file name may have on common filesystems (ext4, APFS, NTFS: 255).
MAX_KEY_BYTES = 255
#: Node names Zarr stores its own documents under (compared case-insensitively: macOS and
#: Windows filesystems are).
RESERVED_KEYS = ("zarr.json",)


def encode_name(name: str) -> str:
    """A storage key for a variable name: '/', '\\' (a separator to zarr-python) and '%' are
    percent-encoded, and so are a leading '.' or '__' (reserved by Zarr). Everything else,
    unicode and spaces included, stays."""
    key = name.replace("%", "%25").replace("/", "%2F").replace("\\", "%5C")
    if key.startswith("."):
        key = "%2E" + key[1:]
    if key.startswith("__"):
        key = "%5F" + key[1:]
    return key


def key_problem(name: str) -> str | None:
    """Why ``encode_name(name)`` cannot name a file or directory, or ``None`` when it can."""
    key = encode_name(name)
    if "\0" in key:
        return "it contains a NUL character, which no filesystem allows in a file name"
    size = len(key.encode("utf-8"))
    if size > MAX_KEY_BYTES:
        return (
            f"its storage key is {size} bytes long, longer than the {MAX_KEY_BYTES} bytes "
            "filesystems allow in a file name"
        )
    if key.casefold() in RESERVED_KEYS:
        return "Zarr's metadata documents have that name"
    return None


def check_unique_columns(names: Sequence[str], storage: str) -> None:
    """Refuse variable and stat names that map to the same column of ``storage``."""
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"Names {duplicates} collide with {storage} column names.")


@dataclass(frozen=True)
class ColumnMapping:
    """How one variable or stat maps to the columns of a table format (Parquet, ClickHouse):
    a column of values and, for dynamic shapes, a column of each draw's shape."""

    column: str
    spec: VariableSpec
    #: Prefix of the shape column's name.
    shape_prefix: ClassVar[str]

    @property
    def is_ragged(self) -> bool:
        return self.spec.is_ragged

    @property
    def shape_column(self) -> str:
        return f"{self.shape_prefix}{self.column}"


# ---- ragged draws --------------------------------------------------------------------------


@dataclass(frozen=True)
class Ragged:
    """Draws of varying shape as flat values (every draw raveled, one after the other) plus each
    draw's shape."""

    flat: list[np.ndarray]  # each draw raveled
    shapes: list[tuple[int, ...]]

    @classmethod
    def encode(cls, values: Sequence[np.ndarray] | np.ndarray) -> Ragged:
        return cls([np.ravel(v) for v in values], [tuple(np.shape(v)) for v in values])

    def data(self, dtype: np.dtype) -> np.ndarray:
        """All values, flat."""
        return np.concatenate(self.flat) if self.flat else np.empty(0, dtype)

    @property
    def ndims(self) -> np.ndarray:
        return np.array([len(s) for s in self.shapes], dtype=np.int64)

    @property
    def flat_shapes(self) -> np.ndarray:
        """Every draw's shape, one after the other (``ndims`` says where each ends)."""
        return np.array([s for shape in self.shapes for s in shape], dtype=np.int64)

    def offsets(self, dtype: type = np.int64) -> np.ndarray:
        """Where each draw's values start in ``data``, and where the last ends (n + 1)."""
        sizes = [len(f) for f in self.flat]
        return np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).astype(dtype)


def ragged_draws(
    flat: np.ndarray,
    offsets: Sequence[int] | np.ndarray,
    shapes: Iterable[Sequence[int] | np.ndarray],
    dtype: np.dtype | None = None,
) -> np.ndarray:
    """An object array of draws: draw ``i`` is ``flat[offsets[i]:offsets[i + 1]]`` in its shape."""
    out = []
    for i, shape in enumerate(shapes):
        values = flat[offsets[i] : offsets[i + 1]].reshape(tuple(int(s) for s in shape))
        out.append(values if dtype is None else values.astype(dtype, copy=False))
    return as_object_array(out)


def shape_offsets(ndims: np.ndarray, flat_shapes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """From per-draw ``ndims`` and the concatenated shapes: where each draw's shape starts in
    ``flat_shapes`` and where its values start in the flat data (each of length n + 1)."""
    shape_starts = np.concatenate([[0], np.cumsum(ndims)]).astype(np.int64)
    sizes = [int(np.prod(flat_shapes[a:b])) for a, b in itertools.pairwise(shape_starts)]
    return shape_starts, np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])


# ---- complex numbers -----------------------------------------------------------------------


def complex_part_dtype(dtype: np.dtype) -> np.dtype:
    """The float type of a complex type's real and imaginary parts."""
    return np.dtype(dtype.type(0).real.dtype)


def complex_to_pairs(values: np.ndarray) -> np.ndarray:
    """Complex values, raveled, as their parts: real, imag, real, imag..."""
    values = np.ascontiguousarray(values)
    return values.view(values.real.dtype).reshape(-1)


def complex_from_pairs(parts: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """The inverse of ``complex_to_pairs``: flat complex values of ``dtype`` (of any byte
    order: the pairs are paired up in native order, then converted)."""
    native = dtype.newbyteorder("=")
    pairs = np.ascontiguousarray(parts, dtype=complex_part_dtype(native))
    return pairs.view(native).astype(dtype, copy=False)


# ---- strings -------------------------------------------------------------------------------


def str_array(values: Iterable[str] | np.ndarray) -> np.ndarray:
    """Strings as a fixed-width ``str`` array (as mcbackend hands them out), whatever the
    storage returned (Python strings, NumPy's variable-width ``StringDType``...)."""
    return np.asarray(values, dtype=object).astype(str)


def str_rows(values: Sequence[np.ndarray] | np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Per-draw ``str`` arrays of one shape, stacked into one array (draw, *shape)."""
    return np.array([np.asarray(v) for v in values]).reshape((len(values), *shape))


def str_draws(rows: np.ndarray) -> np.ndarray:
    """An array (draw, *shape) of strings as ``get_draws`` returns them: one array per draw."""
    return as_object_array([rows[i, ...] for i in range(len(rows))])
