"""Runs in a ClickHouse database, through clickhouse-driver's native protocol.

Tables::

    runs    (created_at, rid String, proto String)         one row per run, RunMeta base64
    chains  (rid String, chain_number UInt32, table_name String)
    `<rid>_chain_<n>`  (_draw_idx UInt64, <variable>..., __stat_<stat>..., __shape_<col>...)

Scalars are plain columns, arrays are flattened into ``Array(T)`` (complex numbers as
(real, imag) pairs), and dynamic shapes add an ``Array(UInt64)`` shape column. Column types
are picked by server version: ``Bool`` and ``DateTime64`` on servers that have them,
``UInt8`` and ``DateTime`` on older ones (e.g. 18.16). Identifiers are always quoted and
values always passed as query parameters.
"""

from __future__ import annotations

import base64
import datetime
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np

from .. import codec
from .._validation import VariableSpec
from ..columns import as_object_array
from ..core import Backend, Chain, Run, positions, read_positions
from ..deprecation import renamed
from ..errors import RunExistsError, RunNotFoundError
from ..meta import ChainMeta, RunMeta

__all__ = ["ClickHouseBackend", "ClickHouseChain", "ClickHouseRun", "quote_identifier"]

_INT_TYPES = {
    "int8": "Int8", "int16": "Int16", "int32": "Int32", "int64": "Int64",
    "uint8": "UInt8", "uint16": "UInt16", "uint32": "UInt32", "uint64": "UInt64",
    "float16": "Float32", "float32": "Float32", "float64": "Float64",
    "complex64": "Float32", "complex128": "Float64",
}  # fmt: skip


def quote_identifier(name: str) -> str:
    """A ClickHouse identifier in backticks, backslash-escaped; control characters refused."""
    if not name or any(ord(ch) < 32 for ch in name) or len(name) > 200:
        raise ValueError(
            f"{name!r} cannot be a ClickHouse identifier (empty, too long or control characters)."
        )
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


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

    # -- numpy -> insert values

    def to_values(self, values) -> list[list]:
        if self.is_scalar:
            return [_scalar_list(np.asarray(values), self.spec)]
        ragged = codec.Ragged.encode(values)
        flat = [self._flat(v) for v in ragged.flat]
        if self.is_ragged:
            return [flat, [list(shape) for shape in ragged.shapes]]
        return [flat]

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
            return np.array(raw, dtype=self.spec.dtype).reshape(n)
        shapes = columns[self.shape_column] if self.is_ragged else [self.spec.shape] * n
        out = []
        for flat, shape in zip(raw, shapes):
            arr = np.array(flat, dtype=self._storage_dtype())
            if self.spec.dtype.kind == "c":
                arr = codec.complex_from_pairs(arr, self.spec.dtype)
            out.append(arr.reshape(tuple(int(s) for s in shape)))
        if self.spec.is_rigid:
            return np.stack(out) if out else np.empty((0, *self.spec.shape), self.spec.dtype)
        return as_object_array(out)

    def _storage_dtype(self) -> np.dtype | type:
        if self.spec.is_str:
            return str
        if self.spec.dtype.kind == "c":
            return codec.complex_part_dtype(self.spec.dtype)
        return self.spec.dtype


def _scalar_list(v: np.ndarray, spec: VariableSpec) -> list:
    if spec.dtype.kind == "f" and spec.dtype.itemsize == 2:
        v = v.astype("float32")
    if spec.dtype.kind == "b":
        v = v.astype("uint8")
    return v.tolist()


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


# ---- chains and runs -----------------------------------------------------------------------


class ClickHouseChain(Chain):
    """A chain stored in its own table; inserts are batched by count and time."""

    def __init__(
        self,
        cmeta: ChainMeta,
        rmeta: RunMeta,
        *,
        client,
        table: str,
        flush_every: int,
        flush_seconds: float,
    ) -> None:
        super().__init__(cmeta, rmeta)
        self._client = client
        self._table = quote_identifier(table)
        self._columns = clickhouse_columns(rmeta)
        self._flush_every = flush_every
        self._flush_seconds = flush_seconds
        self._pending: list[tuple[dict, dict]] = []
        self._last_insert = time.monotonic()
        self._committed = self._count()

    def _count(self) -> int:
        return int(self._client.execute(f"SELECT count() FROM {self._table}")[0][0])

    # ---- writing ------------------------------------------------------------------------

    def _append(self, draw, stats) -> None:
        self._pending.append((_copied(draw), _copied(stats)))  # the caller may reuse its arrays
        due_by_time = time.monotonic() - self._last_insert >= self._flush_seconds
        if len(self._pending) >= self._flush_every or due_by_time:
            self.flush()

    def flush(self, wait: bool = True) -> None:
        """Insert the pending draws in one INSERT (always before returning)."""
        if not self._pending:
            return
        n = len(self._pending)
        names = ["_draw_idx"]
        values: list[list] = [list(range(self._committed, self._committed + n))]
        for section, columns in self._columns.items():
            for name, c in columns.items():
                batch = [
                    (s if section is codec.Section.STATS else d)[name] for d, s in self._pending
                ]
                names += c.names
                values += c.to_values(batch)
        quoted = ", ".join(quote_identifier(n) for n in names)
        self._client.execute(f"INSERT INTO {self._table} ({quoted}) VALUES", values, columnar=True)
        self._committed += n
        self._pending.clear()
        self._last_insert = time.monotonic()

    # ---- reading ------------------------------------------------------------------------

    def __len__(self) -> int:
        if not self._pending:
            self._committed = self._count()
        return self._committed + len(self._pending)

    def _read(self, c: ClickHouseColumn, lo: int, hi: int) -> np.ndarray:
        names = c.names
        quoted = ", ".join(quote_identifier(n) for n in names)
        rows = self._client.execute(
            f"SELECT {quoted} FROM {self._table} "
            "WHERE _draw_idx >= %(lo)s AND _draw_idx < %(hi)s ORDER BY _draw_idx",
            {"lo": lo, "hi": hi},
            columnar=True,
        )
        columns = dict(zip(names, rows)) if rows else {n: [] for n in names}
        return c.from_values(columns, hi - lo)

    def _get_values(self, spec, slc, *, section):
        self.flush()  # reads see every appended draw
        c = self._columns[section][spec.name]
        return read_positions(positions(slc, len(self)), lambda lo, hi: self._read(c, lo, hi))

    def close(self) -> None:
        self.flush()


class ClickHouseRun(Run):
    def __init__(self, meta: RunMeta, backend: ClickHouseBackend, created_at=None) -> None:
        super().__init__(meta)
        self._backend = backend
        self.created_at = created_at
        self._chains: dict[int, ClickHouseChain] = {}

    def _init_chain(self, chain_number: int) -> ClickHouseChain:
        b = self._backend
        table = f"{self.meta.rid}_chain_{chain_number}"
        columns = [("_draw_idx", "UInt64")]
        for group in clickhouse_columns(self.meta).values():
            for c in group.values():
                columns += c.columns(b.types)
        definition = ", ".join(f"{quote_identifier(n)} {t}" for n, t in columns)
        b.client.execute(
            f"CREATE TABLE {quote_identifier(table)} ({definition}) "
            "ENGINE = MergeTree() ORDER BY _draw_idx"
        )
        b.client.execute(
            "INSERT INTO chains (rid, chain_number, table_name) VALUES",
            [{"rid": self.meta.rid, "chain_number": chain_number, "table_name": table}],
        )
        return self._chain(chain_number, table)

    def _chain(self, chain_number: int, table: str) -> ClickHouseChain:
        if chain_number not in self._chains:
            b = self._backend
            self._chains[chain_number] = ClickHouseChain(
                ChainMeta(rid=self.meta.rid, chain_number=chain_number),
                self.meta,
                client=b.client_fn() if b.client_fn else b.client,
                table=table,
                flush_every=b.flush_every,
                flush_seconds=b.flush_seconds,
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
        rows = self._backend.client.execute(
            "SELECT chain_number, table_name FROM chains WHERE rid = %(rid)s ORDER BY chain_number",
            {"rid": self.meta.rid},
        )
        for number, table in rows:
            self._chain(int(number), table)
        return [self._chains[n] for n in sorted(self._chains)]


class ClickHouseBackend(Backend):
    """Stores runs in ClickHouse.

    Parameters
    ----------
    client
        A ``clickhouse_driver.Client`` used for metadata (and chains, without ``client_fn``).
    client_fn
        A callable returning a new client; each chain then gets its own client.
    flush_every, flush_seconds
        Insert a chain's pending draws when there are this many, or when this many seconds
        passed since its last insert. Pending draws are also inserted before any read and on
        ``flush()``/``close()``. (``insert_every`` and ``insert_interval`` are their
        deprecated names.)
    """

    def __init__(
        self,
        client=None,
        client_fn: Callable[[], Any] | None = None,
        *,
        flush_every: int = 100,
        flush_seconds: float = 1.0,
        insert_every: int | None = None,
        insert_interval: float | None = None,
    ) -> None:
        flush_every = renamed("insert_every", "flush_every", insert_every, flush_every, 100)
        flush_seconds = renamed(
            "insert_interval", "flush_seconds", insert_interval, flush_seconds, 1.0
        )
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
        version = self.client.execute("SELECT version()")[0][0]
        self.types = ServerTypes(tuple(int(p) for p in version.split(".")[:2]))
        self._ensure_tables()

    def close(self) -> None:
        """Refuse new runs and disconnect the clients this backend made with ``client_fn``."""
        super().close()
        if self.client_fn is not None:
            self.client.disconnect()

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
        self.client.execute(
            f"CREATE TABLE IF NOT EXISTS runs (created_at {self.types.timestamp}, "
            "rid String, proto String) ENGINE = MergeTree() ORDER BY rid"
        )
        self.client.execute(
            "CREATE TABLE IF NOT EXISTS chains (rid String, chain_number UInt32, "
            "table_name String) ENGINE = MergeTree() ORDER BY (rid, chain_number)"
        )

    def _init_run(self, meta: RunMeta) -> ClickHouseRun:
        clickhouse_columns(meta)
        quote_identifier(f"{meta.rid}_chain_0")
        exists = self.client.execute(
            "SELECT count() FROM runs WHERE rid = %(rid)s", {"rid": meta.rid}
        )[0][0]
        if exists:
            raise RunExistsError(f"A run with id '{meta.rid}' already exists in ClickHouse.")
        created_at = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
        proto = base64.b64encode(bytes(meta)).decode("ascii")
        self.client.execute(
            "INSERT INTO runs (created_at, rid, proto) VALUES",
            [{"created_at": created_at, "rid": meta.rid, "proto": proto}],
        )
        return ClickHouseRun(meta, self, created_at)

    def get_runs(self):
        """A DataFrame of all runs, indexed by rid: rid, created_at, meta (the ``RunMeta``;
        also as ``proto``, the column name of earlier mcbackend releases)."""
        import pandas as pd

        rows = self.client.execute("SELECT created_at, rid, proto FROM runs ORDER BY created_at")
        metas = [RunMeta.parse(base64.b64decode(p)) for _, _, p in rows]
        frame = pd.DataFrame(
            {"rid": [r for _, r, _ in rows], "created_at": [c for c, _, _ in rows], "meta": metas}
        )
        frame["proto"] = frame["meta"]
        return frame.set_index("rid", drop=False)

    def get_run(self, rid: str) -> ClickHouseRun:
        rows = self.client.execute(
            "SELECT created_at, proto FROM runs WHERE rid = %(rid)s", {"rid": rid}
        )
        if not rows:
            raise RunNotFoundError(f"No run with id '{rid}' in ClickHouse.")
        created_at, proto = rows[0]
        return ClickHouseRun(RunMeta.parse(base64.b64decode(proto)), self, created_at)


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
