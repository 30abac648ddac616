"""Parquet layout version 2 (``formats/parquet.md``): a run is a hive-partitioned dataset that
pandas, pyarrow, DuckDB and polars read without mcbackend.

::

    <root>/<rid>/
        _mcbackend.json, _meta.pb                   marker and RunMeta sidecar
        chain=<n>/_chain.json                       chain marker
        chain=<n>/part-<start>-<stop>.parquet       one immutable file per flush
        chain=<n>/data-<start>-<stop>.parquet       a compaction of parts

Every name that is not data starts with ``_`` so dataset readers skip it. Each file has the
columns ``run_id`` (dictionary of one string), ``draw``, ``warmup`` (the leading draws whose
warm-up stat is true), one per variable and ``stats/<name>`` per stat; ``chain`` comes from the
partition. Fixed shapes of numbers are ``arrow.fixed_shape_tensor`` over one flat fixed-size
list (encodes as fast as a flat column, reads back as arrays); coords, dims and attributes are
JSON in the schema metadata. Files, commits and compaction work as in v1.
"""

from __future__ import annotations

import datetime
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..._validation import VariableSpec
from ...codec import Section, check_unique_columns, str_draws
from ...files import DrawBuffer
from ...meta import RunMeta
from ...npproto.utils import ndarray_to_numpy
from .v1 import ParquetChain, ParquetColumn, ParquetRun, Part

__all__ = ["RESERVED_NAMES", "ParquetChainV2", "ParquetRunV2"]

FORMAT_VERSION = 2
#: Column names of the layout (and the partition key); no variable or stat may take them.
RESERVED_NAMES = ("run_id", "draw", "warmup", "chain")
RUN_ID_TYPE = pa.dictionary(pa.int32(), pa.string())


@dataclass(frozen=True)
class ColumnV2(ParquetColumn):
    """v1's mapping, but a fixed shape is one flat fixed-size list (a tensor for numbers)."""

    def _is_fixed(self) -> bool:
        return bool(self.spec.shape) and not self.is_ragged

    def _tensor_type(self) -> pa.DataType | None:
        """``arrow.fixed_shape_tensor`` for numbers of a non-empty fixed shape, else ``None``."""
        shape = list(self.spec.shape)
        if not self._is_fixed() or self.spec.dtype.kind not in "iuf" or 0 in shape:
            return None
        dims = list(self.var.dims)
        names = dims if len(dims) == len(shape) and len(set(dims)) == len(dims) else None
        return pa.fixed_shape_tensor(self.value_type(), shape, dim_names=names)

    def arrow_type(self) -> pa.DataType:
        if not self._is_fixed():
            return super().arrow_type()
        return self._tensor_type() or pa.list_(self.value_type(), math.prod(self.spec.shape))

    def _nest(self, arr: np.ndarray, n: int) -> pa.Array:
        if not self._is_fixed():
            return super()._nest(arr, n)
        size = math.prod(self.spec.shape)
        storage = pa.FixedSizeListArray.from_arrays(self._leaf(arr.reshape(-1)), size)
        tensor = self._tensor_type()
        return pa.ExtensionArray.from_storage(tensor, storage) if tensor else storage

    def from_arrow(self, table: pa.Table) -> np.ndarray:
        if not self._is_fixed():
            return super().from_arrow(table)
        column = table.column(self.column).combine_chunks()
        if isinstance(column, pa.ExtensionArray):
            column = column.storage
        values = self._flat_values(column, depth=1).reshape((len(column), *self.spec.shape))
        return str_draws(values) if self.spec.is_str else values


def columns_v2(meta: RunMeta) -> dict[Section, dict[str, ColumnV2]]:
    return {
        Section.DRAWS: {
            v.name: ColumnV2(v.name, VariableSpec.from_variable(v), v) for v in meta.variables
        },
        Section.STATS: {
            v.name: ColumnV2(f"stats/{v.name}", VariableSpec.from_variable(v), v)
            for v in meta.sample_stats
        },
    }


def check_names(meta: RunMeta) -> None:
    """Refuse variable and stat names that are column names of the layout."""
    for kind, group in (("variable", meta.variables), ("stat", meta.sample_stats)):
        for v in group:
            if v.name in RESERVED_NAMES:
                raise ValueError(
                    f"The {kind} name {v.name!r} is reserved in Parquet v2 "
                    f"(columns {', '.join(RESERVED_NAMES)}); rename it."
                )


def warmup_stat(meta: RunMeta) -> str | None:
    """The stat that says which draws are warm-up (``in_warmup``/``tune``), if any."""
    from ..._inferencedata import find_warmup_stat

    return find_warmup_stat([s.name for s in meta.sample_stats])


def run_info(meta: RunMeta, chain_number: int, columns) -> dict[str, Any]:
    """The JSON metadata every file carries (``_meta.pb`` stays canonical)."""
    from ..._inferencedata import attributes_to_python

    stat = warmup_stat(meta)
    described = []
    for section, specs in columns.items():
        for c in specs.values():
            kind = "stat" if section is Section.STATS else "draw"
            described.append({"column": c.column, **c.describe(kind)})
    return {
        "format": "parquet",
        "format_version": FORMAT_VERSION,
        "rid": meta.rid,
        "chain": chain_number,
        "warmup_stat": f"stats/{stat}" if stat else None,
        "coords": {
            c.name: ndarray_to_numpy(c.values).tolist() if c.values is not None else []
            for c in meta.coordinates
        },
        "dims": {d["column"]: d["dims"] for d in described if d["dims"]},
        "attributes": attributes_to_python(meta.attributes),
        "columns": described,
    }


def _json(value: Any) -> bytes:
    return json.dumps(value, default=_jsonable).encode()


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    return str(value)


def arrow_schema_v2(meta: RunMeta, chain_number: int) -> pa.Schema:
    check_names(meta)
    columns = columns_v2(meta)
    fields = [
        pa.field("run_id", RUN_ID_TYPE, nullable=False),
        pa.field("draw", pa.int64(), nullable=False),
        pa.field("warmup", pa.bool_(), nullable=False),
    ]
    for section, specs in columns.items():
        for c in specs.values():
            kind = "stat" if section is Section.STATS else "draw"
            entry = {"column": c.column, **c.describe(kind)}
            fields.append(pa.field(c.column, c.arrow_type(), metadata={b"mcbackend": _json(entry)}))
            if c.is_ragged:
                fields.append(pa.field(c.shape_column, pa.list_(pa.int64())))
    check_unique_columns([f.name for f in fields], "Parquet")
    info = run_info(meta, chain_number, columns)
    return pa.schema(fields, metadata={b"mcbackend": _json(info)})


class ParquetChainV2(ParquetChain):
    """A chain in ``chain=<n>/``: v1's files and commits, v2's columns."""

    _run: ParquetRunV2

    def __init__(self, cmeta, run: ParquetRunV2, *, created: bool = False) -> None:
        self._warmup_open: bool | None = None  # the warm-up block has not ended yet
        super().__init__(cmeta, run, created=created)

    def _column_mapping(self):
        return columns_v2(self._run.meta)

    def _arrow_schema(self) -> pa.Schema:
        return arrow_schema_v2(self._run.meta, self.cmeta.chain_number)

    def _resume(self) -> int:
        stored = super()._resume()
        # read here (on the writer thread after a failure), so planning a write does no I/O
        self._warmup_open = stored == 0 or self._last_stored_warmup()
        return stored

    def _leading_columns(self, buffer: DrawBuffer, start: int, n: int) -> dict[str, pa.Array]:
        return {
            "run_id": pa.DictionaryArray.from_arrays(
                pa.array(np.zeros(n, np.int32)), pa.array([self._run.meta.rid])
            ),
            "draw": pa.array(np.arange(start, start + n), pa.int64()),
            "warmup": pa.array(self._warmup_flags(buffer, start, n)),
        }

    def _warmup_flags(self, buffer: DrawBuffer, start: int, n: int) -> np.ndarray:
        """True for the draws of the leading block whose warm-up stat is true (in order: each
        flush continues the previous one's block)."""
        stat = self._run.warmup_stat
        if stat is None:
            return np.zeros(n, bool)
        if self._warmup_open is None:
            self._warmup_open = start == 0 or self._last_stored_warmup()
        values = np.asarray(buffer.columns(Section.STATS).columns[stat][:n], dtype=bool)
        flags = np.logical_and.accumulate(values) & self._warmup_open
        if n:
            self._warmup_open = bool(flags[-1])
        return flags

    def _last_stored_warmup(self) -> bool:
        if not self._parts:
            return True
        last = self._parts[-1]
        with self._dir.fs.open(self._dir.file(last.name), "rb") as f:
            pf = pq.ParquetFile(f)
            column = pf.read_row_group(
                pf.num_row_groups - 1, columns=["warmup"], use_threads=False
            )["warmup"]
        return bool(column[-1].as_py()) if len(column) else True


class ParquetRunV2(ParquetRun):
    """A run stored as Parquet v2 files under ``<root>/<rid>``."""

    format_version = FORMAT_VERSION
    chain_class = ParquetChainV2
    chain_marker = "_chain.json"

    def __init__(self, meta: RunMeta, location, **options) -> None:
        super().__init__(meta, location, **options)
        self.warmup_stat = warmup_stat(meta)

    @staticmethod
    def chain_folder(chain_number: int) -> str:
        return f"chain={chain_number}"

    @staticmethod
    def chain_number_of(folder: str) -> int | None:
        number = folder.removeprefix("chain=")
        return int(number) if number.isdigit() and number != folder else None

    def chain_marker_bytes(self, chain_number: int) -> bytes:
        created = datetime.datetime.now(datetime.UTC).isoformat()
        return json.dumps({"chain": chain_number, "created_at": created}).encode()

    @classmethod
    def check_meta(cls, meta: RunMeta) -> None:
        arrow_schema_v2(meta, 0)

    def _verify_content(self, where: str, table: pa.Table, part: Part) -> list[str]:
        problems = super()._verify_content(where, table, part)
        run_ids = set(table.column("run_id").to_pylist())
        if run_ids - {self.meta.rid}:
            problems.append(f"{where}: rows of run(s) {sorted(run_ids - {self.meta.rid})}")
        return problems
