"""Runs in a ClickHouse database, through clickhouse-driver's native protocol.

Tables::

    runs    (created_at, rid String, proto String)         one row per run, RunMeta base64
    chains  (rid String, chain_number UInt32, table_name String)
    `__mcb_run_<rid>`  (empty) created first: the atomic claim of the run id
    `<rid>_chain_<n>`  (_draw_idx UInt64, <variable>..., __stat_<stat>..., __shape_<col>...)
    `__mcb_writer_<rid>_chain_<n>`  (token, renewed) while a handle appends: the chain's lease

Tables of this backend's own start with ``__mcb_`` (run ids may not), so that mcbackend 0.5.x,
which takes every table whose name starts with the run id for a chain, still lists chains.

``runs`` and the chain table names are those of published mcbackend 0.5.x, whose runs stay
readable (``clickhouse_legacy``). Tables are created on the first write, never by reading.
See formats/clickhouse.md.

Scalars are plain columns, arrays are flattened into ``Array(T)`` (complex numbers as
(real, imag) pairs), and dynamic shapes add an ``Array(UInt64)`` shape column. Column types
are picked by server version: ``Bool`` and ``DateTime64`` on servers that have them,
``UInt8`` and ``DateTime`` on older ones (e.g. 18.16). Identifiers are always quoted and
values always passed as query parameters.
"""

from __future__ import annotations

import base64
import datetime
import logging
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import numpy as np

from .. import codec
from .._validation import VariableSpec
from ..columns import ColumnStore, as_object_array
from ..core import (
    MAX_UNSTORED_BYTES,
    Backend,
    Chain,
    Run,
    checked_unstored_bytes,
    positions,
    read_positions,
    runs_dataframe,
)
from ..deprecation import renamed
from ..errors import (
    CorruptRunError,
    DrawNotKeptError,
    FlushError,
    MCBackendError,
    ReadOnlyError,
    RunExistsError,
    RunNotFoundError,
)
from ..meta import ChainMeta, RunMeta
from .clickhouse_arrays import array_rows, install
from .clickhouse_lease import LEASE_PREFIX, ChainLease
from .clickhouse_legacy import chain_tables, legacy_values
from .clickhouse_sql import (
    ServerCode,
    check_identifier,
    quote_identifier,
    quote_string,
    server_code,
    table_exists,
    tables_named,
)

if TYPE_CHECKING:
    import pandas

__all__ = ["ClickHouseBackend", "ClickHouseChain", "ClickHouseRun", "quote_identifier"]

_log = logging.getLogger(__name__)

_INT_TYPES = {
    "int8": "Int8", "int16": "Int16", "int32": "Int32", "int64": "Int64",
    "uint8": "UInt8", "uint16": "UInt16", "uint32": "UInt32", "uint64": "UInt64",
    "float16": "Float32", "float32": "Float32", "float64": "Float64",
    "complex64": "Float32", "complex128": "Float64",
}  # fmt: skip


#: Chain numbers are stored as UInt32.
MAX_CHAIN_NUMBER = 2**32 - 1
#: Table engines for chain tables (reads order by ``_draw_idx`` whatever the engine).
ENGINES = {"StripeLog": "StripeLog", "MergeTree": "MergeTree() ORDER BY _draw_idx"}
#: Tables this backend makes besides runs and chains start with this; run ids may not.
RESERVED_PREFIX = "__mcb_"
#: The name prefix of a run's claim table.
CLAIM_PREFIX = RESERVED_PREFIX + "run_"


@dataclass(frozen=True)
class ServerTypes:
    """Column types that depend on the server version."""

    version: tuple[int, ...]

    @property
    def modern(self) -> bool:
        return self.version >= (21, 12)

    @property
    def bool(self) -> str:
        return "Bool" if self.modern else "UInt8"

    @property
    def timestamp(self) -> str:
        return "DateTime64(6, 'UTC')" if self.modern else "DateTime"


@dataclass(frozen=True)
class ClickHouseColumn(codec.ColumnMapping):
    """How one variable or stat maps to columns of a chain table (and, for dynamic shapes, a
    ``__shape_`` column), converted between NumPy and insert/query values."""

    shape_prefix = "__shape_"

    @property
    def is_scalar(self) -> bool:
        return (
            self.spec.shape == () and not self.spec.undefined_ndim and self.spec.dtype.kind != "c"
        )

    def element_type(self, types: ServerTypes) -> str:
        if self.spec.is_str:
            return "String"
        if self.spec.dtype.kind == "b":
            return types.bool
        return _INT_TYPES[self.spec.dtype.name]

    @property
    def names(self) -> list[str]:
        return (
            [self.column, self.shape_column]
            if self.is_ragged and not self.is_scalar
            else [self.column]
        )

    def columns(self, types: ServerTypes) -> list[tuple[str, str]]:
        t = self.element_type(types)
        if self.is_scalar:
            return [(self.column, t)]
        cols = [(self.column, f"Array({t})")]
        if self.is_ragged:
            cols.append((self.shape_column, "Array(UInt64)"))
        return cols

    # -- buffered columns -> insert values

    @property
    def numpy_insertable(self) -> bool:
        """Inserted from NumPy values: scalars by clickhouse-driver's NumPy mode, arrays as
        ``ArrayRows`` (``clickhouse_arrays``); str values only as lists."""
        return not self.spec.is_str

    def to_values(self, rows, *, as_numpy: bool = False) -> list:
        """Insert values of buffered rows (an array with a draw axis, or a list of draws)."""
        if self.is_scalar:
            arr = np.asarray(rows)
            return [_storable(arr, self.spec) if as_numpy else _scalar_list(arr, self.spec)]
        if as_numpy:
            return self._array_rows(rows)
        if isinstance(rows, np.ndarray):  # rigid: one flat list per draw, in one conversion
            table = np.ascontiguousarray(rows).reshape(len(rows), -1)
            if self.spec.dtype.kind == "c":
                table = codec.complex_to_pairs(table).reshape(len(rows), -1)
            return [_scalar_list(table, self.spec)]
        ragged = codec.Ragged.encode(rows)
        flat = [self._flat(v) for v in ragged.flat]
        if self.is_ragged:
            return [flat, [list(shape) for shape in ragged.shapes]]
        return [flat]

    def _array_rows(self, rows) -> list:
        """The ``ArrayRows`` columns of buffered rows, in the dtype of the column type."""
        if isinstance(rows, np.ndarray):  # rigid: a row per draw, in one conversion
            table = np.ascontiguousarray(rows).reshape(len(rows), -1)
            if self.spec.dtype.kind == "c":
                table = codec.complex_to_pairs(table).reshape(len(rows), -1)
            return [array_rows(_storable(table, self.spec))]
        flat = [
            _storable(codec.complex_to_pairs(v) if self.spec.dtype.kind == "c" else v, self.spec)
            for v in rows
        ]
        if not self.is_ragged:
            return [array_rows(flat)]
        shapes = [np.array(np.shape(v), dtype=np.uint64) for v in rows]
        return [array_rows(flat), array_rows(shapes)]

    def _flat(self, v: np.ndarray) -> list:
        if self.spec.dtype.kind == "c":
            v = codec.complex_to_pairs(v)
        return _scalar_list(v, self.spec)

    # -- query result -> numpy

    def from_values(self, columns: Mapping[str, list], n: int) -> np.ndarray:
        raw = columns[self.column]
        if self.is_scalar:
            if self.spec.is_str:
                return codec.str_draws(codec.str_array(raw))
            return np.array(raw, dtype=self.spec.dtype).reshape(n)  # the declared byte order
        shapes = columns[self.shape_column] if self.is_ragged else [self.spec.shape] * n
        out = []
        for flat, shape in zip(raw, shapes):
            arr = np.array(flat, dtype=self._storage_dtype())
            if self.spec.dtype.kind == "c":
                arr = codec.complex_from_pairs(arr, self.spec.dtype)
            out.append(arr.reshape(tuple(int(s) for s in shape)))
        if self.spec.is_rigid:
            if not out:
                return np.empty((0, *self.spec.shape), self.spec.dtype)
            return np.stack(out).astype(self.spec.dtype, copy=False)  # the declared byte order
        if not self.spec.is_str:
            out = [v.astype(self.spec.dtype, copy=False) for v in out]
        return as_object_array(out)

    def _storage_dtype(self) -> np.dtype | type:
        if self.spec.is_str:
            return str
        if self.spec.dtype.kind == "c":
            return codec.complex_part_dtype(self.spec.dtype)
        return self.spec.dtype


def _storable(v: np.ndarray, spec: VariableSpec) -> np.ndarray:
    """Values in a dtype the column type stores (float16 as Float32, bool as UInt8)."""
    if spec.dtype.kind == "f" and spec.dtype.itemsize == 2:
        return v.astype("float32")
    if spec.dtype.kind == "b":
        return v.astype("uint8")
    return v


def _scalar_list(v: np.ndarray, spec: VariableSpec) -> list:
    return _storable(v, spec).tolist()


def clickhouse_columns(meta: RunMeta) -> dict[codec.Section, dict[str, ClickHouseColumn]]:
    """Column mapping of variables and stats, by name; colliding column names refused."""
    specs = {
        codec.Section.DRAWS: {
            v.name: ClickHouseColumn(v.name, VariableSpec.from_variable(v)) for v in meta.variables
        },
        codec.Section.STATS: {
            v.name: ClickHouseColumn(f"__stat_{v.name}", VariableSpec.from_variable(v))
            for v in meta.sample_stats
        },
    }
    names = ["_draw_idx"]
    for group in specs.values():
        for c in group.values():
            names += [c.column, c.shape_column]
    codec.check_unique_columns(names, "ClickHouse")
    return specs


def check_names(meta: RunMeta) -> None:
    """Refuse, before anything is created, names of tables or columns ClickHouse cannot hold."""
    if meta.rid.startswith(RESERVED_PREFIX):
        raise ValueError(f"Run ids starting with {RESERVED_PREFIX!r} are reserved in ClickHouse.")
    longest_table = f"{LEASE_PREFIX}{meta.rid}_chain_{MAX_CHAIN_NUMBER}"
    for table in (CLAIM_PREFIX + meta.rid, longest_table):
        check_identifier(table, f"Run id {meta.rid!r} gives table name")
    for section, group in clickhouse_columns(meta).items():
        for c in group.values():
            for name in c.names:
                kind = "sample stat" if section is codec.Section.STATS else "variable"
                check_identifier(name, f"The {kind} {c.spec.name!r} gives column name")


# ---- chains and runs -----------------------------------------------------------------------


class ClickHouseChain(Chain):
    """A chain stored in its own table; inserts are batched by count and time.

    Draws wait in columns (NumPy arrays) and go to the server as one columnar INSERT (on a
    thread of the chain's own when it has a client of its own, so that appends go on). A handle
    appends only while it holds the chain's lease (``clickhouse_lease``): a second writer is
    refused with ``ChainLockedError``. Chains of 0.5.x runs (``legacy``) are read-only.

    While the server is unreachable, draws wait in memory up to ``max_unstored_bytes``
    (``append`` then raises ``DrawNotKeptError`` and keeps nothing of its draw); appends retry
    at most every ``retry_seconds``, ``flush()`` always, raising ``FlushError``.
    """

    #: While inserts fail, appends retry at most this often (``flush()`` always tries).
    retry_seconds: float = 5.0

    def __init__(
        self,
        cmeta: ChainMeta,
        rmeta: RunMeta,
        *,
        client,
        table: str,
        flush_every: int,
        flush_seconds: float,
        flush_bytes: int = 16 << 20,
        lease_seconds: float = 600.0,
        max_unstored_bytes: int = MAX_UNSTORED_BYTES,
        legacy: bool = False,
        owns_client: bool = False,
        created: bool = False,
    ) -> None:
        super().__init__(cmeta, rmeta)
        self._max_unstored_bytes = max_unstored_bytes
        self._failure: BaseException | None = None  # why the newest insert failed
        self._failed_rows = 0  # rows that insert sent: they may have landed all the same
        self._retry_at = 0.0  # appends retry a failed insert from this time.monotonic() on
        self._client = client
        self._table = quote_identifier(table)
        self._columns = clickhouse_columns(rmeta)
        draw_bytes = sum(
            _draw_bytes(s) for s in (*self._variable_specs.values(), *self._stat_specs.values())
        )
        self._flush_every = max(1, min(flush_every, flush_bytes // max(draw_bytes, 1)))
        self._draw_nbytes = draw_bytes
        self._flush_seconds = flush_seconds
        self._legacy = legacy
        self._lease = ChainLease(client, table, lease_seconds)
        self._as_numpy = install() and all(
            c.numpy_insertable for group in self._columns.values() for c in group.values()
        )
        self._new_buffers()
        self._flush_at = time.monotonic() + self._flush_seconds
        self._committed = 0
        #: With a client of its own, the chain inserts on a thread of its own: appends go on
        #: while the server stores a batch. A client the caller passed in may be used by the
        #: caller meanwhile, and a client serves one query at a time: its inserts stay inline.
        self._background = owns_client
        self._sending: _Batch | None = None  # the batch a background insert is storing
        # Give the lease up and disconnect an own client even if the handle is never closed.
        self._owns_client = owns_client
        weakref.finalize(self, _finish, self._lease, client, owns_client)
        if created:  # its creator writes it: the lease now, not at the first append
            self._take_lease()
        else:
            self._committed = self._count()

    def _new_buffers(self) -> None:
        rows = self._flush_every
        self._draws = ColumnStore(self._variable_specs.values(), rows)
        self._stats = ColumnStore(self._stat_specs.values(), rows)

    def _count(self) -> int:
        return int(self._client.execute(f"SELECT count() FROM {self._table}")[0][0])

    # ---- writing ------------------------------------------------------------------------

    def _take_lease(self) -> None:
        if self._lease.held:
            return
        if self._legacy:
            raise ReadOnlyError(
                f"Chain '{self.cid}' was written by mcbackend 0.5.x; it is read-only here."
            )
        self._lease.acquire()
        self._committed = self._count()  # a previous writer may have added draws

    def _validate_and_append(self, draw, stats) -> None:
        # Copied into the buffer's next row: the caller may reuse its arrays.
        self._draws.stage(draw, "draw")
        self._stats.stage(stats, "stats", fill_missing=True)
        sending = self._sending
        if (
            self._failure is not None
            or not self._lease.held
            or (
                sending is not None  # a batch in the background: in memory until stored
                and sending.nbytes + (self._draws.length + 1) * self._draw_nbytes
                > self._max_unstored_bytes
            )
        ):
            buffers = self._draws
            self._admit(draw, stats, 1, single=True)
            if self._draws is not buffers:  # an insert made new buffers: stage the draw again
                self._draws.stage(draw, "draw")
                self._stats.stage(stats, "stats", fill_missing=True)
        self._draws.commit()
        self._stats.commit()
        if self._draws.length >= self._flush_every or time.monotonic() >= self._flush_at:
            self._flush_if_due()

    def _append_many(self, draws, stats, n: int) -> None:
        self._admit(draws, stats, n)
        self._draws.extend_rows(draws, 0, n)
        self._stats.extend_rows(stats, 0, n)
        self._flush_if_due()

    def _admit(self, draws, stats, n: int, single: bool = False) -> None:
        """Before ``n`` draws (one, unwrapped, if ``single``) are kept: hold the lease, and
        while inserts fail, keep the draws waiting within ``max_unstored_bytes``. Raises,
        keeping none of them, if they cannot be kept (as the file backends'
        ``BufferedChain._admit``)."""
        if self._sending is not None:  # a failed background insert's draws wait here again
            sending = self._sending
            rows = self._draws.length + n
            estimate = sending.nbytes + rows * self._draw_nbytes
            self._collect(wait=estimate > self._max_unstored_bytes or not self._lease.held)
        first = self._committed + self._rows_sending() + self._draws.length
        not_kept = (
            f"draw {first} was not kept"
            if n == 1
            else f"draws {first}-{first + n - 1} were not kept"
        )
        try:
            self._take_lease()
        except Exception as ex:
            if not _unreachable(ex):
                raise
            raise DrawNotKeptError(
                f"Chain {self.cid}: {not_kept}: {self._server()} is unreachable ({ex})."
            ) from ex
        if self._failure is None:
            return
        if single:
            draws, stats = {k: [v] for k, v in draws.items()}, {k: [v] for k, v in stats.items()}
        nbytes = self._draws.nbytes_of(draws, 0, n) + self._stats.nbytes_of(stats, 0, n)
        if self._unstored_nbytes() + nbytes <= self._max_unstored_bytes:
            return
        if time.monotonic() >= self._retry_at:
            self._insert(report=False)
        if self._failure is None:
            return
        raise DrawNotKeptError(
            f"Chain {self.cid}: {not_kept}: inserting into {self._server()} failed "
            f"({self._failure}), and the {self._draws.length} draws waiting in memory take "
            f"{self._unstored_nbytes()} bytes (max_unstored_bytes={self._max_unstored_bytes}). "
            f"The {first} draws appended before are kept and are inserted once the server answers."
        )

    def _unstored_nbytes(self) -> int:
        sending = self._sending.nbytes if self._sending is not None else 0
        return sending + self._draws.data_nbytes + self._stats.data_nbytes

    def _rows_sending(self) -> int:
        return self._sending.draws.length if self._sending is not None else 0

    def _server(self) -> str:
        hosts = getattr(getattr(self._client, "connection", None), "hosts", None) or [("?", "?")]
        return f"the ClickHouse server at {hosts[0][0]}:{hosts[0][1]}"

    def _flush_if_due(self) -> None:
        due_by_time = time.monotonic() >= self._flush_at
        due = self._draws.length >= self._flush_every or due_by_time
        if not due or (self._failure is not None and time.monotonic() < self._retry_at):
            return
        if not self._background:
            self._insert(report=False)
            return
        sending = self._sending
        if sending and sending.thread.is_alive() and self._draws.length < self._flush_every:
            return  # keep buffering (up to a batch more) while the server stores a batch
        self._collect(wait=True)
        if self._failure is not None:  # while inserts fail, retries are inline
            if time.monotonic() >= self._retry_at:  # not at once if that insert just failed
                self._insert(report=False)
        elif self._draws.length:
            self._send_in_background()

    def flush(self, wait: bool = True) -> None:
        """Insert the pending draws in one INSERT (always before returning); raises
        ``FlushError`` while the server is unreachable, keeping every draw."""
        self._collect(wait=True)
        self._insert(report=True)

    # ---- background inserts ---------------------------------------------------------------

    def _send_in_background(self) -> None:
        """Hand the buffered draws to a thread that inserts them; appends go on meanwhile."""
        batch = self._take_batch()
        # The thread holds the chain: it is not collected (its client not disconnected)
        # while its insert is under way.
        batch.thread = threading.Thread(target=self._send, args=(batch,), name=f"mcb-{self.cid}")
        self._sending = batch
        batch.thread.start()

    def _send(self, batch: _Batch) -> None:
        batch.send(self._lease, self._client)

    def _collect(self, wait: bool = False) -> None:
        """Take the outcome of the background insert (waiting for it with ``wait``): count its
        draws as stored, or put them back in front of the buffer, as a failed inline insert
        leaves them (an unreachable server then makes inserts inline until it answers)."""
        batch = self._sending
        if batch is None or (not wait and batch.thread.is_alive()):
            return
        batch.thread.join()
        self._sending = None
        if batch.error is None:
            self._committed += batch.draws.length
            return
        batch.draws.extend(self._draws)
        batch.stats.extend(self._stats)
        self._draws, self._stats = batch.draws, batch.stats
        self._failed_rows = batch.draws.length if batch.sent else 0
        if not _unreachable(batch.error):
            raise batch.error
        self._failed(batch.error, report=False)

    def _insert(self, report: bool) -> None:
        """Insert the pending draws. An unreachable server keeps them waiting (retried at the
        next flush, or append after ``retry_seconds``); with ``report`` that raises."""
        try:
            if self._failure is not None:
                self._recheck()
            self._insert_pending()
        except Exception as ex:
            if not _unreachable(ex):
                raise
            self._failed(ex, report)
            return
        if self._failure is not None:
            _log.warning(
                "Chain %s: the server answers again; the waiting draws are stored.", self.cid
            )
            self._failure = None

    def _failed(self, ex: BaseException, report: bool) -> None:
        """The server did not answer an insert: its draws wait; retried after a while."""
        first = self._failure is None
        self._failure = ex
        self._retry_at = time.monotonic() + self.retry_seconds
        error = FlushError(
            f"Inserting draws of chain {self.cid} into {self._server()} failed: {ex}. "
            f"Every appended draw is kept ({len(self)} in all); {self._draws.length} of "
            "them are not yet stored and wait in memory; the next flush (or append) "
            "retries them."
        )
        if first:
            _log.warning("%s", error)
        if report:
            raise error from ex

    def _recheck(self) -> None:
        """After a failed insert: the table must hold the draws committed before, or those
        and the failed insert's rows (it landed, its reply was lost): never renumber draws."""
        stored = self._count()
        if stored == self._committed + self._failed_rows and self._failed_rows:
            self._committed = stored  # drop the rows the failed insert stored after all
            rest = self._draws.length - self._failed_rows
            draws, stats = self._draws, self._stats
            self._new_buffers()
            self._draws.extend_rows(draws.columns, self._failed_rows, draws.length)
            self._stats.extend_rows(stats.columns, self._failed_rows, stats.length)
            assert self._draws.length == rest
        elif stored != self._committed:
            raise CorruptRunError(
                f"Chain {self.cid}: table {self._table} holds {stored} draws, yet "
                f"{self._committed} were stored before (and {self._failed_rows} sent since): "
                "draws were lost or added there. Nothing more is inserted, so no draw is "
                "renumbered."
            )
        self._failed_rows = 0

    def _insert_pending(self) -> None:
        if not self._draws.length:
            return
        batch = self._take_batch()
        try:
            batch.send(self._lease, self._client)
        finally:
            if batch.error is not None:  # the draws wait in the buffer again
                self._draws, self._stats = batch.draws, batch.stats
                self._failed_rows = batch.draws.length if batch.sent else 0
        self._committed += batch.draws.length

    def _take_batch(self) -> _Batch:
        """The buffered draws as an INSERT; the buffer starts over."""
        n = self._draws.length
        as_numpy = self._as_numpy
        start = self._committed
        names = ["_draw_idx"]
        values: list = [
            np.arange(start, start + n, dtype=np.uint64)
            if as_numpy
            else list(range(start, start + n))
        ]
        for section, columns in self._columns.items():
            store = self._stats if section is codec.Section.STATS else self._draws
            for name, c in columns.items():
                names += c.names
                values += c.to_values(store.rows(name, 0, n), as_numpy=as_numpy)
        quoted = ", ".join(quote_identifier(n) for n in names)
        batch = _Batch(
            f"INSERT INTO {self._table} ({quoted}) VALUES",
            values,
            as_numpy,
            self._draws,
            self._stats,
            self._unstored_nbytes(),
        )
        self._new_buffers()
        self._flush_at = time.monotonic() + self._flush_seconds
        return batch

    # ---- reading ------------------------------------------------------------------------

    def __len__(self) -> int:
        self._collect(wait=True)  # the client serves one query at a time
        if not self._draws.length:
            self._committed = self._count()
        return self._committed + self._draws.length

    def _read(self, c: ClickHouseColumn, lo: int, hi: int) -> np.ndarray:
        names = [c.column] if self._legacy else c.names
        quoted = ", ".join(quote_identifier(n) for n in names)
        rows = self._client.execute(
            f"SELECT {quoted} FROM {self._table} "
            f"WHERE _draw_idx >= {int(lo)} AND _draw_idx < {int(hi)} ORDER BY _draw_idx",
            columnar=True,
        )
        columns = dict(zip(names, rows)) if rows else {n: [] for n in names}
        if self._legacy:
            return legacy_values(c.spec, list(columns[c.column]), hi - lo)
        return c.from_values(columns, hi - lo)

    def _get_values(self, spec, slc, *, section):
        self.flush()  # reads see every appended draw
        c = self._columns[section][spec.name]
        return read_positions(positions(slc, len(self)), lambda lo, hi: self._read(c, lo, hi))

    def close(self) -> None:
        """Insert pending draws, give the lease up, and disconnect a client made for this chain."""
        self.flush()
        _finish(self._lease, self._client, self._owns_client)  # reading later reconnects


@dataclass
class _Batch:
    """Draws taken from the buffer to be inserted, and how that went."""

    query: str
    values: list
    as_numpy: bool
    draws: ColumnStore
    stats: ColumnStore
    nbytes: int  # of the draws in memory
    sent: bool = False  # the INSERT went out: its rows may be stored even if it failed
    error: BaseException | None = None
    thread: threading.Thread = None  # type: ignore[assignment]  # set when in the background

    def send(self, lease: ChainLease, client) -> None:
        """Insert the draws (on the chain's thread, or the background one); ``error`` says why
        not (and is raised when not in the background)."""
        try:
            lease.confirm()
            self.sent = True
            client.execute(
                self.query,
                self.values,
                columnar=True,
                settings={"use_numpy": True} if self.as_numpy else None,
            )
        except BaseException as ex:
            self.error = ex
            if self.thread is None:
                raise


def _unreachable(ex: BaseException) -> bool:
    """Whether ``ex`` says the server did not answer (refused, cut, timed out)."""
    if isinstance(ex, MCBackendError):  # ours, e.g. ReadOnlyError (a PermissionError)
        return False
    if isinstance(ex, EOFError | OSError):
        return True
    try:
        from clickhouse_driver.errors import NetworkError, SocketTimeoutError
    except ImportError:  # pragma: no cover - ClickHouse support not installed
        return False
    return isinstance(ex, NetworkError | SocketTimeoutError)


def _draw_bytes(spec: VariableSpec) -> int:
    """Bytes one draw of a variable takes in a buffer (an estimate for dynamic shapes)."""
    if spec.is_rigid:
        return int(np.prod(spec.shape)) * spec.dtype.itemsize
    return 64


def _finish(lease: ChainLease, client, owns_client: bool) -> None:
    try:
        lease.release()
    except Exception as ex:  # the server may be gone: the lease then expires by itself
        _log.debug("Could not release %s: %s", lease.name, str(ex).splitlines()[0])
    if owns_client:
        client.disconnect()


class ClickHouseRun(Run):
    def __init__(
        self, meta: RunMeta, backend: ClickHouseBackend, created_at=None, *, legacy: bool = False
    ) -> None:
        super().__init__(meta)
        self._backend = backend
        self.created_at = created_at
        #: Written by mcbackend 0.5.x: chains are found by table name and are read-only.
        self.legacy = legacy
        self._chains: dict[int, ClickHouseChain] = {}

    def _init_chain(self, chain_number: int) -> ClickHouseChain:
        if self.legacy:
            raise ReadOnlyError(
                f"Run '{self.meta.rid}' was written by mcbackend 0.5.x; it is read-only here."
            )
        if chain_number > MAX_CHAIN_NUMBER:
            raise ValueError(
                f"Chain number {chain_number} is too large for ClickHouse "
                f"(at most {MAX_CHAIN_NUMBER})."
            )
        b = self._backend
        table = f"{self.meta.rid}_chain_{chain_number}"
        columns = [("_draw_idx", "UInt64")]
        for group in clickhouse_columns(self.meta).values():
            for c in group.values():
                columns += c.columns(b.types)
        definition = ", ".join(f"{quote_identifier(n)} {t}" for n, t in columns)
        try:  # without IF NOT EXISTS: of two processes creating one chain, one is refused
            b.client.execute(
                f"CREATE TABLE {quote_identifier(table)} ({definition}) ENGINE = {b.engine}"
            )
        except Exception as ex:
            if server_code(ex) in (
                ServerCode.TABLE_ALREADY_EXISTS,
                ServerCode.TABLE_IS_BEING_CREATED,
            ):
                raise ValueError(
                    f"Chain {chain_number} already exists in run '{self.meta.rid}'."
                ) from None
            raise
        b.client.execute(
            "INSERT INTO chains (rid, chain_number, table_name) VALUES",
            [{"rid": self.meta.rid, "chain_number": chain_number, "table_name": table}],
        )
        return self._chain(chain_number, table, created=True)

    def _chain(self, chain_number: int, table: str, created: bool = False) -> ClickHouseChain:
        if chain_number not in self._chains:
            b = self._backend
            self._chains[chain_number] = ClickHouseChain(
                ChainMeta(rid=self.meta.rid, chain_number=chain_number),
                self.meta,
                client=b.client_fn() if b.client_fn else b.client,
                owns_client=b.client_fn is not None,
                table=table,
                flush_every=b.flush_every,
                flush_seconds=b.flush_seconds,
                flush_bytes=b.flush_bytes,
                lease_seconds=b.lease_seconds,
                max_unstored_bytes=b.max_unstored_bytes,
                legacy=self.legacy,
                created=created,
            )
        return self._chains[chain_number]

    def verify(self) -> list[str]:
        """The server's own checksums: ``CHECK TABLE`` where the server supports it for
        MergeTree, else a full read of every column (which verifies each compressed block)."""
        problems = []
        client = self._backend.client
        for chain in self.get_chains():
            table = chain._table
            try:
                result = client.execute(f"CHECK TABLE {table}")
                if not all(row[-1] for row in result):
                    problems.append(f"table {table}: CHECK TABLE failed: {result}")
                continue
            except Exception as ex:
                if "not supported" not in str(ex):
                    problems.append(f"table {table}: {ex}")
                    continue
            try:
                client.execute(f"SELECT sum(cityHash64(*)) FROM {table}")
            except Exception as ex:
                problems.append(f"table {table}: unreadable: {str(ex).splitlines()[0]}")
        return problems

    def get_chains(self) -> list[ClickHouseChain]:
        for number, table in self._stored_chains():
            self._chain(number, table)
        return [self._chains[n] for n in sorted(self._chains)]

    def _stored_chains(self) -> list[tuple[int, str]]:
        client = self._backend.client
        if self.legacy:
            pattern, prefix = chain_tables(self.meta.rid)
            tables = tables_named(client, pattern, prefix)
            return [(int(t[len(prefix) :]), t) for t in tables]
        rows = client.execute(
            "SELECT chain_number, table_name FROM chains "
            f"WHERE rid = {quote_string(self.meta.rid)} ORDER BY chain_number"
        )
        return [(int(number), table) for number, table in rows]


class ClickHouseBackend(Backend):
    """Stores runs in ClickHouse.

    Parameters
    ----------
    client
        A ``clickhouse_driver.Client`` used for metadata (and chains, without ``client_fn``).
        The caller keeps it and disconnects it.
    client_fn
        A callable returning a new client; each chain then gets its own client. Clients made
        with it are disconnected when their chain (or this backend) is closed or collected.
        A chain with a client of its own inserts on a thread while appends go on (at most
        one insert under way, and a batch more waiting); with ``client`` inserts are inline,
        as the caller may use that client between appends.
    flush_every, flush_bytes, flush_seconds
        Insert a chain's pending draws when there are this many, or they take this many bytes,
        or this many seconds passed since its last insert. Pending draws are also inserted
        before any read and on ``flush()``/``close()``. Every INSERT costs the server a
        fixed amount per column, so few large inserts are much faster than many small ones.
        (``insert_every`` and ``insert_interval`` are deprecated names of the first and last.)
    engine
        The table engine of new chain tables. ``StripeLog`` (default) appends each INSERT to
        one file, cheap however many variables a run has; ``MergeTree`` writes each INSERT as
        an atomic part of a file (or two) per column: a server crash can never leave half an
        insert, but each insert of a 300-variable draw costs the server 0.3-3 s here.
    lease_seconds
        A chain's writer that neither closed nor wrote for this long (e.g. it crashed) can be
        replaced by another; until then other handles are refused with ``ChainLockedError``.
    max_unstored_bytes
        While the server is unreachable, each chain keeps the draws not yet inserted in
        memory up to this many bytes (default 256 MiB) and retries; beyond it ``append``
        raises ``DrawNotKeptError`` and does not keep the draw.
    """

    def __init__(
        self,
        client=None,
        client_fn: Callable[[], Any] | None = None,
        *,
        flush_every: int = 10_000,
        flush_seconds: float = 1.0,
        flush_bytes: int = 16 << 20,
        lease_seconds: float = 600.0,
        max_unstored_bytes: int = MAX_UNSTORED_BYTES,
        engine: str = "StripeLog",
        insert_every: int | None = None,
        insert_interval: float | None = None,
    ) -> None:
        flush_every = renamed("insert_every", "flush_every", insert_every, flush_every, 10_000)
        flush_seconds = renamed(
            "insert_interval", "flush_seconds", insert_interval, flush_seconds, 1.0
        )
        self._owns_client = client is None
        if client is None:
            if client_fn is None:
                raise ValueError(
                    "Pass a clickhouse_driver.Client (client=) or a factory (client_fn=)."
                )
            client = client_fn()
        self.client = client
        self.client_fn = client_fn
        self.flush_every = flush_every
        self.flush_seconds = flush_seconds
        self.flush_bytes = flush_bytes
        self.lease_seconds = lease_seconds
        self.max_unstored_bytes = checked_unstored_bytes(max_unstored_bytes)
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {sorted(ENGINES)}, got {engine!r}.")
        self.engine = ENGINES[engine]
        if self._owns_client:
            weakref.finalize(self, self.client.disconnect)
        version = self.client.execute("SELECT version()")[0][0]
        self.types = ServerTypes(tuple(int(p) for p in version.split(".")[:2]))

    def close(self) -> None:
        """Refuse new runs and disconnect the client this backend made with ``client_fn``."""
        super().close()
        if self._owns_client:
            self.client.disconnect()  # reading on reconnects; collecting disconnects again

    @classmethod
    def from_url(cls, *, host: str, port: int, database: str, user: str, password: str):
        import clickhouse_driver

        def connect():
            return clickhouse_driver.Client(
                host=host, port=port, database=database, user=user, password=password
            )

        return cls(client_fn=connect)

    @classmethod
    def open_root_url(
        cls, url: str, storage_options: Mapping[str, Any] | None = None, **options: Any
    ) -> ClickHouseBackend:
        """The backend of ``clickhouse://user:password@host:port/database``."""
        return _connect(url, with_rid=False)[0]

    @classmethod
    def open_run_url(
        cls, url: str, storage_options: Mapping[str, Any] | None = None, **options: Any
    ) -> ClickHouseRun:
        """The run at ``clickhouse://user:password@host:port/database/<rid>``."""
        backend, rid = _connect(url, with_rid=True)
        return backend.get_run(rid)

    def _ensure_tables(self) -> None:
        """Create the shared tables; only ever called to write."""
        self.client.execute(
            f"CREATE TABLE IF NOT EXISTS runs (created_at {self.types.timestamp}, "
            "rid String, proto String) ENGINE = MergeTree() ORDER BY rid"
        )
        self.client.execute(
            "CREATE TABLE IF NOT EXISTS chains (rid String, chain_number UInt32, "
            "table_name String) ENGINE = MergeTree() ORDER BY (rid, chain_number)"
        )

    def _init_run(self, meta: RunMeta) -> ClickHouseRun:
        check_names(meta)
        self._ensure_tables()
        exists = RunExistsError(f"A run with id '{meta.rid}' already exists in ClickHouse.")
        if self._run_rows(meta.rid, ensured=True):
            raise exists
        claim = quote_identifier(CLAIM_PREFIX + meta.rid)
        try:  # the atomic claim of the id: of concurrent creators exactly one succeeds
            self.client.execute(f"CREATE TABLE {claim} (rid String) ENGINE = Null")
        except Exception as ex:
            if server_code(ex) in (
                ServerCode.TABLE_ALREADY_EXISTS,
                ServerCode.TABLE_IS_BEING_CREATED,
            ):
                raise exists from None
            raise
        created_at = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
        proto = base64.b64encode(bytes(meta)).decode("ascii")
        self.client.execute(
            "INSERT INTO runs (created_at, rid, proto) VALUES",
            [{"created_at": created_at, "rid": meta.rid, "proto": proto}],
        )
        return ClickHouseRun(meta, self, created_at)

    def _run_rows(self, rid: str, ensured: bool = False) -> list[tuple]:
        """The ``runs`` rows of ``rid`` (none without a ``runs`` table, unless ``ensured``)."""
        if not ensured and not table_exists(self.client, "runs"):
            return []
        return self.client.execute(
            f"SELECT created_at, proto FROM runs WHERE rid = {quote_string(rid)}"
        )

    def get_runs(self) -> pandas.DataFrame:
        """A DataFrame of all runs, indexed by rid: rid, created_at, meta (the ``RunMeta``;
        also as ``proto``, the column name of earlier mcbackend releases)."""
        rows = []
        if table_exists(self.client, "runs"):
            rows = self.client.execute(
                "SELECT created_at, rid, proto FROM runs ORDER BY created_at"
            )
        return runs_dataframe(
            {"rid": r, "created_at": c, "meta": RunMeta.parse(base64.b64decode(p))}
            for c, r, p in rows
        )

    def get_run(self, rid: str) -> ClickHouseRun:
        rows = self._run_rows(rid)
        if not rows:
            raise RunNotFoundError(f"No run with id '{rid}' in ClickHouse.")
        created_at, proto = rows[0]
        legacy = not table_exists(self.client, CLAIM_PREFIX + rid)
        meta = RunMeta.parse(base64.b64decode(proto))  # 0.5.x wrapped lines: ignored
        return ClickHouseRun(meta, self, created_at, legacy=legacy)


def _connect(url: str, *, with_rid: bool) -> tuple[ClickHouseBackend, str]:
    """A backend for a ``clickhouse://`` URL, and the run id the URL ends with."""
    parts = urlsplit(url)
    segments = [unquote(s) for s in parts.path.strip("/").split("/") if s]
    if not with_rid:
        segments.append("-")
    if len(segments) != 2:
        raise ValueError(
            f"ClickHouse run URLs look like clickhouse://host:port/database/<rid>; got {url!r}."
        )
    database, rid = segments
    backend = ClickHouseBackend.from_url(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 9000,
        database=database,
        user=unquote(parts.username) if parts.username else "default",
        password=unquote(parts.password) if parts.password else "",
    )
    return backend, rid


def _copied(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in values.items()}
