"""Parquet layout version 1 (``formats/parquet.md``), read, resumed and written; v2 builds on it.

::

    <root>/<rid>/
        mcbackend.json, meta.pb            marker and RunMeta sidecar (``mcbackend.files.layout``)
        chain_<n>/part-<start>-<stop>.parquet   one immutable file per flush, draws start..stop-1

Every flush writes one new file holding one row group, atomically (a rename on local disk, a
single PUT on object stores), so a crash never leaves a file readers trip on. The committed
length of a chain is the end of the unbroken sequence of files from draw 0. Closing a chain
whose files are small (under ``COMPACT_BELOW`` on average) compacts them into one
multi-row-group file and then deletes the parts it covers; files already of a good row-group
size stay as they are; a handle compacts only chains it wrote. Readers always pick, from draw 0
on, the file reaching furthest, and re-list when a compaction removed a file under them.

Columns: ``draw`` (int64), one per variable (its name), one per stat (``stats/<name>``).
Scalars are plain columns, fixed shapes nested fixed-size lists, complex numbers a trailing
fixed-size list of (real, imag), dynamic shapes a list of the flattened values plus a
``shape/<column>`` list of the draw's shape. The Arrow schema metadata ``mcbackend`` says which.
"""

from __future__ import annotations

import functools
import io
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..._validation import VariableSpec
from ...codec import (
    ColumnMapping,
    Ragged,
    Section,
    check_unique_columns,
    complex_from_pairs,
    complex_part_dtype,
    complex_to_pairs,
    ragged_draws,
    str_array,
    str_draws,
    str_rows,
)
from ...errors import CorruptRunError
from ...files import BufferedChain, DrawBuffer, FileRun, Location
from ...files.pipeline import Encode, Store
from ...meta import ChainMeta, RunMeta, Variable

__all__ = ["FORMAT", "ParquetChain", "ParquetRun"]

FORMAT = "parquet"
FORMAT_VERSION = 1
FLUSH_TARGET_BYTES = 32 << 20  # Parquet favours large row groups
COMPACT_BELOW = 8 << 20  # average file size under which closing a chain compacts it
_PART = re.compile(r"^(part|data)-(\d{12})-(\d{12})\.parquet$")
READ_RETRIES = 5  # re-listings when a compaction removed a file a reader planned to read


# ---- columns -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParquetColumn(ColumnMapping):
    """How one variable or stat maps to Parquet columns: its values (and, for dynamic shapes,
    a ``shape/`` column), converted between NumPy and Arrow."""

    var: Variable
    shape_prefix = "shape/"

    def value_type(self) -> pa.DataType:
        if self.spec.is_str:
            return pa.string()
        if self.spec.dtype.kind == "c":
            return pa.list_(pa.from_numpy_dtype(complex_part_dtype(self.spec.dtype)), 2)
        return pa.from_numpy_dtype(self.spec.dtype)

    def arrow_type(self) -> pa.DataType:
        if self.is_ragged:
            return pa.list_(self.value_type())
        t = self.value_type()
        for size in reversed(self.spec.shape):
            t = pa.list_(t, size)
        return t

    def describe(self, kind: str) -> dict[str, Any]:
        return {
            "name": self.var.name,
            "kind": kind,
            "dtype": "str" if self.spec.is_str else self.spec.dtype.name,
            "shape": list(self.var.shape),
            "dims": list(self.var.dims),
            "undefined_ndim": bool(self.var.undefined_ndim),
        }

    # -- numpy -> arrow

    def to_arrow(self, values: np.ndarray | list[np.ndarray]) -> list[tuple[str, pa.Array]]:
        if not self.is_ragged:
            arr = str_rows(values, self.spec.shape) if self.spec.is_str else np.asarray(values)
            return [(self.column, self._nest(arr, len(arr)))]
        ragged = Ragged.encode(values)
        offsets = pa.array(ragged.offsets(np.int32))
        values_arr = pa.ListArray.from_arrays(offsets, self._leaf(ragged.data(self.spec.dtype)))
        shapes = [list(shape) for shape in ragged.shapes]
        return [
            (self.column, values_arr),
            (self.shape_column, pa.array(shapes, pa.list_(pa.int64()))),
        ]

    def _leaf(self, flat: np.ndarray) -> pa.Array:
        """A flat numpy array as Arrow values (complex numbers as (real, imag) pairs), in
        native byte order (Arrow has no other; big-endian declarations read back as such)."""
        if self.spec.is_str:
            return pa.array(np.asarray(flat).astype(object), pa.string())
        flat = np.asarray(flat)
        flat = flat.astype(flat.dtype.newbyteorder("="), copy=False)
        if self.spec.dtype.kind == "c":
            return pa.FixedSizeListArray.from_arrays(pa.array(complex_to_pairs(flat)), 2)
        return pa.array(flat)

    def _nest(self, arr: np.ndarray, n: int) -> pa.Array:
        nested = self._leaf(arr.reshape(-1))
        for size in reversed(self.spec.shape):
            nested = pa.FixedSizeListArray.from_arrays(nested, size)
        return nested

    # -- arrow -> numpy

    def from_arrow(self, table: pa.Table) -> np.ndarray:
        column = table.column(self.column).combine_chunks()
        n = len(column)
        if not self.is_ragged:
            flat = self._flat_values(column, depth=len(self.spec.shape))
            values = flat.reshape((n, *self.spec.shape))
            return str_draws(values) if self.spec.is_str else values
        flat = self._flat_values(column.flatten(), depth=0)
        shapes = table.column(self.shape_column).to_pylist()
        offsets = np.asarray(column.offsets) - column.offsets[0].as_py()
        return ragged_draws(flat, offsets, shapes)

    def _flat_values(self, arr: pa.Array, depth: int) -> np.ndarray:
        for _ in range(depth):
            arr = arr.flatten()
        if self.spec.is_str:
            return str_array(arr.to_pylist())
        if self.spec.dtype.kind == "c":
            parts = arr.flatten().to_numpy(zero_copy_only=False)
            return complex_from_pairs(parts, self.spec.dtype).copy()
        return arr.to_numpy(zero_copy_only=False).astype(self.spec.dtype, copy=False)


def parquet_columns(meta: RunMeta) -> dict[Section, dict[str, ParquetColumn]]:
    """Column mapping of variables and stats, by name."""
    return {
        Section.DRAWS: {
            v.name: ParquetColumn(v.name, VariableSpec.from_variable(v), v) for v in meta.variables
        },
        Section.STATS: {
            v.name: ParquetColumn(f"stats/{v.name}", VariableSpec.from_variable(v), v)
            for v in meta.sample_stats
        },
    }


def arrow_schema(meta: RunMeta, chain_number: int) -> pa.Schema:
    columns = parquet_columns(meta)
    fields = [pa.field("draw", pa.int64(), nullable=False)]
    described = {}
    for section, specs in columns.items():
        for c in specs.values():
            dims = json.dumps(c.describe("stat" if section is Section.STATS else "draw")).encode()
            fields.append(pa.field(c.column, c.arrow_type(), metadata={b"mcbackend": dims}))
            described[c.column] = c.describe("stat" if section is Section.STATS else "draw")
            if c.is_ragged:
                fields.append(pa.field(c.shape_column, pa.list_(pa.int64())))
    check_unique_columns([f.name for f in fields], "Parquet")
    info = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "rid": meta.rid,
        "chain_number": chain_number,
        "columns": described,
    }
    return pa.schema(fields, metadata={b"mcbackend": json.dumps(info).encode()})


# ---- files of a chain ----------------------------------------------------------------------


@dataclass(frozen=True)
class Part:
    name: str
    start: int
    stop: int


def parse_parts(names: list[str]) -> list[Part]:
    """The data files among ``names``."""
    parts = []
    for name in names:
        m = _PART.match(name)
        if m:
            parts.append(Part(name, int(m.group(2)), int(m.group(3))))
    return parts


def covering_parts(names: list[str]) -> list[Part]:
    """From draw 0 on, the files that reach furthest; stops at the first gap."""
    parts = parse_parts(names)
    chosen: list[Part] = []
    position = 0
    while True:
        candidates = [p for p in parts if p.start == position and p.stop > position]
        if not candidates:
            return chosen
        best = max(candidates, key=lambda p: p.stop)
        chosen.append(best)
        position = best.stop


def part_name(start: int, stop: int, prefix: str = "part") -> str:
    return f"{prefix}-{start:012d}-{stop:012d}.parquet"


class ParquetChain(BufferedChain):
    """A chain stored as Parquet files; appends are buffered, each flush is one new file."""

    _run: ParquetRun

    def __init__(self, cmeta: ChainMeta, run: ParquetRun, *, created: bool = False) -> None:
        super().__init__(cmeta, run, created=created)
        self._dir = run.location.child(run.chain_folder(cmeta.chain_number))
        if created:
            if self._dir.exists(run.chain_marker):
                raise self._refuse_existing()
            with self._creating():
                self._dir.write_many({run.chain_marker: run.chain_marker_bytes(cmeta.chain_number)})
        self._columns = self._column_mapping()
        self._schema = self._arrow_schema()
        self._parts: list[Part] = []
        self._stranded: list[Part] = []  # files past a gap: a lost middle file
        self._wrote = False  # this handle wrote files of the chain (so may compact them)
        self._held: dict[str, pa.Table] = {}  # tables of parts this handle wrote, by name
        self._committed = self._stored_length()

    def _column_mapping(self) -> dict[Section, dict[str, ParquetColumn]]:
        return parquet_columns(self._run.meta)

    def _arrow_schema(self) -> pa.Schema:
        return arrow_schema(self._run.meta, self.cmeta.chain_number)

    def _stored_length(self) -> int:
        """Lists the chain's files and picks the covering sequence."""
        names = self._dir.listdir()
        self._parts = covering_parts(names)
        end = self._parts[-1].stop if self._parts else 0
        self._stranded = [p for p in parse_parts(names) if p.start > end]
        return end

    def _resume(self) -> int:
        return self._stored_length()

    def _write(self, buffer: DrawBuffer, start: int, n: int) -> None:
        """The draws as one new Parquet file (one row group)."""
        self._plan_write(buffer, start, n)()()

    def _plan_write(self, buffer: DrawBuffer, start: int, n: int) -> Encode:
        """The file is encoded in the encode pool (pyarrow releases the GIL), possibly beside
        the previous flush's; storing it is in order."""
        leading = self._leading_columns(buffer, start, n)

        def encode() -> Store:
            table = self._table(buffer, n, leading)
            data = _parquet_bytes([table], self._run.compression)
            return lambda: self._store_part(start, n, data, table)

        return encode

    def _store_part(self, start: int, n: int, data: bytes, table: pa.Table | None = None) -> None:
        name = part_name(start, start + n)
        self._dir.write_many({name: data})
        self._parts.append(Part(name, start, start + n))
        self._wrote = True
        if table is not None:
            self._hold(name, table)

    def _hold(self, name: str, table: pa.Table) -> None:
        """Keep a written part's table (up to ``memory_bytes`` of them), so that compacting
        small parts at close encodes them without reading them back."""
        self._held[name] = table
        held = sum(t.nbytes for t in self._held.values())
        while self._held and held > self.memory_bytes:
            held -= self._held.pop(next(iter(self._held))).nbytes

    def _leading_columns(self, buffer: DrawBuffer, start: int, n: int) -> dict[str, pa.Array]:
        """The layout's own columns (``draw``), computed in order when a flush is planned."""
        return {"draw": pa.array(np.arange(start, start + n), pa.int64())}

    def _table(self, buffer: DrawBuffer, n: int, leading: dict[str, pa.Array]) -> pa.Table:
        arrays = dict(leading)
        for section, columns in self._columns.items():
            buffered = buffer.columns(section).columns
            for name, c in columns.items():
                arrays.update(c.to_arrow(buffered[name][:n]))
        return pa.Table.from_pydict(arrays, schema=self._schema)

    def _finish(self) -> None:
        """Flush, then compact small files into one with one row group per flush; only chains
        this handle wrote (other processes may be writing the others), holding their lease."""
        super()._finish()
        if self._wrote and self._run.compact and len(self._parts) > 1 and not self._run.read_only:
            sizes = [self._dir.fs.size(self._dir.file(p.name)) for p in self._parts]
            if sum(sizes) / len(sizes) < COMPACT_BELOW:
                self._lease.confirm()
                try:
                    self._compact()
                except OSError as ex:
                    raise self._finishing_error("Compacting the part files", ex) from ex

    def _compact(self) -> None:
        """The covering file first, then one delete of the parts it replaces: readers that
        planned to read a deleted part re-list and find the covering file."""
        parts = list(self._parts)
        if all(p.name in self._held for p in parts):  # one schema: all held, or all read
            tables = [self._held[p.name] for p in parts]
        else:
            tables = [self._read_part(p) for p in parts]
        name = part_name(0, parts[-1].stop, prefix="data")
        self._dir.write_many({name: _parquet_bytes(tables, self._run.compression)})
        self._parts = [Part(name, 0, parts[-1].stop)]
        self._held.clear()
        obsolete = [self._dir.file(p.name) for p in parts if p.name != name]
        self._dir.fs.rm(obsolete)
        self._dir.fs.invalidate_cache(self._dir.path)

    # ---- reading ------------------------------------------------------------------------

    def _read_part(self, part: Part, columns: list[str] | None = None) -> pa.Table:
        with self._dir.fs.open(self._dir.file(part.name), "rb") as f:
            return pq.ParquetFile(f, page_checksum_verification=True).read(
                columns=columns, use_threads=False
            )

    def _read_stored(self, c: ParquetColumn, lo: int, hi: int) -> pa.Table:
        """Rows ``lo:hi`` of column ``c``; when a compaction removed a planned file meanwhile,
        re-lists the chain's files and reads again."""
        for attempt in range(READ_RETRIES + 1):
            self._check_complete(hi)
            try:
                return self._read_planned(c, lo, hi)
            except FileNotFoundError:
                if attempt == READ_RETRIES:
                    raise
                self._stored_length()
        raise AssertionError("unreachable")

    def _check_complete(self, hi: int) -> None:
        """Refuse to read past a gap: a missing middle file must not truncate a chain."""
        end = self._parts[-1].stop if self._parts else 0
        if self._stranded or hi > end:
            self._stored_length()  # the listing may be older than the files
            end = self._parts[-1].stop if self._parts else 0
        if self._stranded:
            raise CorruptRunError(
                f"Chain {self.cid} at {self._dir}: the files end at draw {end}, yet "
                f"{self._stranded[0].name} follows: the file(s) holding draws {end}..."
                f"{self._stranded[0].start - 1} are missing."
            )

    def _read_planned(self, c: ParquetColumn, lo: int, hi: int) -> pa.Table:
        """Rows ``lo:hi`` of column ``c``, reading only the row groups that hold them; the
        files concurrently (pyarrow releases the GIL while it reads and decodes)."""
        columns = [c.column, c.shape_column] if c.is_ragged else [c.column]
        parts = [p for p in self._parts if p.stop > lo and p.start < hi]
        if len(parts) > 1:
            pool = _readers(os.getpid())
            futures = [pool.submit(self._read_rows, p, columns, lo, hi) for p in parts]
            wait(futures)  # no read left in flight when one fails (pyarrow aborts at exit)
            found = [f.result() for f in futures]
        else:
            found = [self._read_rows(p, columns, lo, hi) for p in parts]
        tables = [t for t in found if t is not None]
        if not tables:
            return pa.table({col: pa.array([], self._schema.field(col).type) for col in columns})
        return pa.concat_tables(tables)

    def _read_rows(self, part: Part, columns: list[str], lo: int, hi: int) -> pa.Table | None:
        """Rows ``lo:hi`` (chain positions) held by one file, or ``None`` if it holds none."""
        with self._open(part) as source:
            pf = _open_checked(source, part, self._dir)
            groups, first, offset = [], None, part.start
            for g in range(pf.num_row_groups):
                rows = pf.metadata.row_group(g).num_rows
                if offset < hi and offset + rows > lo:
                    groups.append(g)
                    first = offset if first is None else first
                offset += rows
            if first is None:
                return None
            table = pf.read_row_groups(groups, columns=columns, use_threads=False)
        return table.slice(max(lo - first, 0), hi - max(lo, first))

    def _open(self, part: Part) -> Any:
        """A file to read: local files through pyarrow's own I/O (much faster than a Python
        file object), others through fsspec."""
        path = self._dir.file(part.name)
        if self._dir.is_local:
            return pa.OSFile(path, "rb")
        return self._dir.fs.open(path, "rb")

    def _reader(self, spec, section):
        c = self._columns[section][spec.name]
        return lambda lo, hi: c.from_arrow(self._read_stored(c, lo, hi))


@functools.cache
def _readers(pid: int) -> ThreadPoolExecutor:
    """Threads reading a chain's files (a forked child gets its own)."""
    return ThreadPoolExecutor(max_workers=8, thread_name_prefix="mcbackend-parquet-read")


def _open_checked(f, part: Part, folder) -> pq.ParquetFile:
    """A data file whose footer agrees with its name: as many rows as the name says, and
    ``draw`` statistics (where written) spanning ``start..stop-1``."""
    where = folder.url(part.name)
    try:
        pf = pq.ParquetFile(f, page_checksum_verification=True)
    except (OSError, pa.ArrowException) as ex:
        if isinstance(ex, FileNotFoundError):
            raise
        raise CorruptRunError(f"{where} is not a readable Parquet file: {ex}") from ex
    md = pf.metadata
    if md.num_rows != part.stop - part.start:
        raise CorruptRunError(
            f"{where} holds {md.num_rows} rows, but its name says {part.stop - part.start}."
        )
    draw_index = pf.schema_arrow.get_field_index("draw")
    if draw_index >= 0 and md.num_row_groups:
        low = md.row_group(0).column(draw_index).statistics
        high = md.row_group(md.num_row_groups - 1).column(draw_index).statistics
        known = low is not None and high is not None and low.has_min_max and high.has_min_max
        if known and (low.min, high.max) != (part.start, part.stop - 1):
            raise CorruptRunError(
                f"{where} holds draws {low.min}..{high.max}, but its name says "
                f"{part.start}..{part.stop - 1}."
            )
    return pf


def _parquet_bytes(tables: list[pa.Table], compression: str | None) -> bytes:
    """One Parquet file, one row group per table. Dictionaries only for strings, statistics
    only for flat columns: both cost much and gain nothing on lists of floats."""
    schema = tables[0].schema
    flat = [f.name for f in schema if not pa.types.is_list(f.type) and not _is_fixed_list(f)]
    strings = [f.name for f in schema if f.type == pa.string() or pa.types.is_dictionary(f.type)]
    options = dict(
        compression=compression or "none",
        use_dictionary=strings,
        write_statistics=flat,
        write_page_checksum=True,
    )
    sink = io.BytesIO()
    with pq.ParquetWriter(sink, schema, **options) as writer:
        for table in tables:
            writer.write_table(table, row_group_size=max(len(table), 1))
    return sink.getvalue()


def _is_fixed_list(f: pa.Field) -> bool:
    storage = f.type.storage_type if isinstance(f.type, pa.ExtensionType) else f.type
    return pa.types.is_fixed_size_list(storage)


class ParquetRun(FileRun[ParquetChain]):
    """A run stored as Parquet files under ``<root>/<rid>``."""

    format_version = 1
    chain_class: type[ParquetChain] = ParquetChain
    chain_marker = ".chain"
    flush_target_bytes = FLUSH_TARGET_BYTES

    def chain_marker_bytes(self, chain_number: int) -> bytes:
        return b""

    def __init__(
        self,
        meta: RunMeta,
        location: Location,
        *,
        compression: str | None = "zstd",
        compact: bool = True,
        **options,
    ) -> None:
        self.check_meta(meta)  # refuse colliding column names early
        super().__init__(meta, location, **options)
        self.compression = compression
        self.compact = compact

    @classmethod
    def check_meta(cls, meta: RunMeta) -> None:
        """Refuse metadata this layout cannot store."""
        arrow_schema(meta, 0)

    def verify(self) -> list[str]:
        """Open every file of every chain: its name agrees with its rows, every row group
        reads (checking page CRCs), and no file lies past a gap; the problems found."""
        problems = []
        for chain in self.get_chains():
            chain._stored_length()
            end = chain._parts[-1].stop if chain._parts else 0
            for part in chain._stranded:
                problems.append(
                    f"{chain._dir.url(part.name)}: past draw {end}, where the chain's files "
                    "end: the files holding the draws between are missing"
                )
            for part in chain._parts:
                problems.extend(self._verify_part(chain, part))
        return problems

    def _verify_part(self, chain: ParquetChain, part: Part) -> list[str]:
        where = chain._dir.url(part.name)
        try:
            with chain._dir.fs.open(chain._dir.file(part.name), "rb") as f:
                pf = _open_checked(f, part, chain._dir)
                problems = []
                for g in range(pf.num_row_groups):
                    try:
                        pf.read_row_group(g, use_threads=False)
                    except Exception as ex:
                        problems.append(f"{where}: row group {g} is corrupt: {ex}")
                if not problems:
                    problems.extend(self._verify_content(where, pf.read(use_threads=False), part))
                return problems
        except Exception as ex:
            return [f"{where}: unreadable: {ex}"]

    def _verify_content(self, where: str, table: pa.Table, part: Part) -> list[str]:
        draws = table.column("draw").to_numpy()
        if not np.array_equal(draws, np.arange(part.start, part.stop)):
            return [f"{where}: its draw column is not {part.start}..{part.stop - 1}"]
        return []
