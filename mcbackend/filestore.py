"""Machinery shared by the file backends (Zarr, Parquet): locations on any fsspec filesystem,
the run marker and metadata sidecar, draw buffers with count/time flushing, and exit flushing.

A run is a directory ``<root>/<rid>`` holding::

    mcbackend.json   {"format": "zarr" or "parquet", "format_version", "rid", "created_at"}
    meta.pb          the RunMeta protobuf (binary)
    ...              the format's own files
"""

from __future__ import annotations

import atexit
import datetime
import functools
import json
import logging
import os
import posixpath
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np

from .columns import ColumnStore, as_object_array
from .core import Backend, Chain, Run
from .errors import (
    CorruptRunError,
    FlushError,
    FormatVersionError,
    ReadOnlyError,
    RunExistsError,
    RunNotFoundError,
)
from .meta import ChainMeta, RunMeta
from .validation import VariableSpec

__all__ = [
    "MARKER",
    "SIDECAR",
    "BufferedChain",
    "FileBackend",
    "FileRun",
    "FlushError",
    "Location",
    "DrawBuffer",
    "RunNotFoundError",
    "CorruptRunError",
    "read_run_info",
    "check_rid",
    "encode_name",
]

_log = logging.getLogger(__name__)

MARKER = "mcbackend.json"
SIDECAR = "meta.pb"


_SAFE_RID = re.compile(r"^[A-Za-z0-9_.\-]+$")


def check_rid(rid: str) -> str:
    """Run ids name directories, so they must be plain path components."""
    if not _SAFE_RID.match(rid) or rid in (".", ".."):
        raise ValueError(
            f"Run id {rid!r} cannot name a directory: use letters, digits, '_', '-' and '.'."
        )
    return rid


def encode_name(name: str) -> str:
    """A storage key for a variable name: '/' and '%' are percent-encoded, and so are a
    leading '.' or '__' (reserved by Zarr). Everything else, unicode and spaces included, stays."""
    key = name.replace("%", "%25").replace("/", "%2F")
    if key.startswith("."):
        key = "%2E" + key[1:]
    if key.startswith("__"):
        key = "%5F" + key[1:]
    return key


_made_folders: set[str] = set()  # local folders known to exist


@dataclass(frozen=True)
class Location:
    """A directory on an fsspec filesystem."""

    fs: fsspec.AbstractFileSystem
    path: str
    storage_options: Mapping[str, Any]

    @classmethod
    def from_url(cls, url_or_path: str, storage_options: Mapping[str, Any] | None = None):
        options = dict(storage_options or {})
        fs, path = fsspec.core.url_to_fs(str(url_or_path), **options)
        return cls(fs, path.rstrip("/") or "/", options)

    @property
    def is_local(self) -> bool:
        return "file" in _protocols(self.fs)

    def child(self, name: str) -> Location:
        return Location(self.fs, posixpath.join(self.path, name), self.storage_options)

    def url(self, name: str | None = None) -> str:
        path = posixpath.join(self.path, name) if name else self.path
        return self.fs.unstrip_protocol(path)

    def file(self, name: str) -> str:
        return posixpath.join(self.path, name)

    def listdir(self) -> list[str]:
        """Names of the entries in this directory, never from a stale listing cache."""
        self.fs.invalidate_cache(self.path)
        if not self.fs.exists(self.path):
            return []
        return [e.rstrip("/").rsplit("/", 1)[-1] for e in self.fs.ls(self.path, detail=False)]

    def exists(self, name: str) -> bool:
        return self.fs.exists(self.file(name))

    def read_bytes(self, name: str) -> bytes:
        return self.fs.cat_file(self.file(name))

    def write_bytes(self, name: str, data: bytes) -> None:
        """Write a whole file, atomically (see ``write_many``)."""
        self.write_many({name: data})

    def write_many(self, files: Mapping[str, bytes]) -> None:
        """Write files (paths relative to this directory), each atomically: on local disk via
        a temporary file and a rename, elsewhere as one PUT per file, issued concurrently."""
        if not files:
            return
        if self.is_local:
            _write_local_many([(self.file(name), data) for name, data in files.items()])
        else:
            self.fs.pipe({self.file(name): data for name, data in files.items()})

    def read_many(self, names: list[str], missing_ok: bool = False) -> dict[str, bytes]:
        """Read files (paths relative to this directory) in one batch of requests; with
        ``missing_ok`` absent files are left out of the result."""
        if not names:
            return {}
        paths = {self.fs._strip_protocol(self.file(n)): n for n in names}
        found = self.fs.cat(list(paths), on_error="omit" if missing_ok else "raise")
        return {paths[self.fs._strip_protocol(p)]: data for p, data in found.items()}

    def __str__(self) -> str:
        return self.url()


def _write_local(target: str, data: bytes) -> None:
    """Write a local file atomically: a temporary file, then a rename."""
    folder = os.path.dirname(target)
    if folder not in _made_folders:
        os.makedirs(folder, exist_ok=True)
        _made_folders.add(folder)
    tmp = f"{target}.{os.getpid()}.{threading.get_ident()}.partial"
    try:
        f = open(tmp, "wb")  # noqa: SIM115
    except FileNotFoundError:  # the folder was removed since we made it
        os.makedirs(folder, exist_ok=True)
        f = open(tmp, "wb")  # noqa: SIM115
    with f:
        f.write(data)
    os.replace(tmp, target)


def _write_local_many(files: list[tuple[str, bytes]]) -> None:
    """Several local files at once (file system calls release the GIL)."""
    if len(files) == 1:
        _write_local(*files[0])
        return
    futures = []
    for i, (target, data) in enumerate(files):
        try:
            futures.append(_local_writers(os.getpid()).submit(_write_local, target, data))
        except RuntimeError:  # interpreter shutdown (the exit flush): no new threads
            for rest in files[i:]:
                _write_local(*rest)
            break
    for future in futures:
        future.result()


@functools.cache
def _local_writers(pid: int) -> ThreadPoolExecutor:
    """The writer threads of this process (a forked child gets its own)."""
    return ThreadPoolExecutor(max_workers=8, thread_name_prefix="mcbackend-write")


def _protocols(fs: fsspec.AbstractFileSystem) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


# ---- run marker and sidecar ----------------------------------------------------------------


@dataclass(frozen=True)
class RunInfo:
    """What a run's marker says, plus its metadata."""

    rid: str
    format: str
    format_version: int
    created_at: datetime.datetime
    meta: RunMeta


def create_run_dir(location: Location, meta: RunMeta, fmt: str, version: int) -> Location:
    """Create ``<root>/<rid>`` with marker and sidecar; refuse a rid that exists."""
    rid = check_rid(meta.rid)
    run_dir = location.child(rid)
    if run_dir.listdir():
        raise RunExistsError(f"A run with id '{rid}' already exists at {run_dir}.")
    try:
        run_dir.fs.makedirs(run_dir.path, exist_ok=True)
        run_dir.write_bytes(SIDECAR, bytes(meta))
        marker = {
            "format": fmt,
            "format_version": version,
            "rid": rid,
            "created_at": datetime.datetime.now(datetime.UTC).isoformat(),
        }
        run_dir.write_bytes(MARKER, json.dumps(marker, indent=1).encode())
    except PermissionError as ex:
        raise PermissionError(f"Cannot write the run to {run_dir}: {ex}") from ex
    except OSError as ex:
        raise OSError(f"Cannot write the run to {run_dir}: {ex}") from ex
    return run_dir


def read_run_info(run_dir: Location) -> RunInfo:
    """Read and check a run's marker and sidecar; clear errors for anything else."""
    if not run_dir.exists(MARKER):
        if run_dir.fs.isdir(run_dir.path) or run_dir.fs.exists(run_dir.path):
            raise RunNotFoundError(f"{run_dir} is not an mcbackend run (no {MARKER}).")
        raise RunNotFoundError(f"No run at {run_dir}.")
    try:
        marker = json.loads(run_dir.read_bytes(MARKER))
        rid, fmt, version = marker["rid"], marker["format"], int(marker["format_version"])
        created_at = datetime.datetime.fromisoformat(marker["created_at"])
    except (ValueError, KeyError, TypeError) as ex:
        raise CorruptRunError(f"The run marker {run_dir.url(MARKER)} is corrupt: {ex!r}") from ex
    if not run_dir.exists(SIDECAR):
        raise CorruptRunError(f"The run at {run_dir} lacks its metadata sidecar {SIDECAR}.")
    raw = run_dir.read_bytes(SIDECAR)
    try:
        meta = RunMeta.parse(raw)
    except Exception as ex:
        raise CorruptRunError(
            f"The metadata sidecar {run_dir.url(SIDECAR)} is corrupt: {ex!r}"
        ) from ex
    if meta.rid != rid or bytes(meta) != raw:
        raise CorruptRunError(
            f"The metadata sidecar {run_dir.url(SIDECAR)} is corrupt "
            f"(it does not describe run '{rid}')."
        )
    return RunInfo(rid, fmt, version, created_at, meta)


def list_runs(location: Location) -> list[RunInfo]:
    """Every readable run directly under ``location``, oldest first."""
    infos = []
    for name in location.listdir():
        run_dir = location.child(name)
        if not run_dir.exists(MARKER):
            continue
        try:
            infos.append(read_run_info(run_dir))
        except CorruptRunError as ex:
            _log.warning("Skipping %s: %s", run_dir, ex)
    return sorted(infos, key=lambda i: (i.created_at, i.rid))


def runs_dataframe(infos: Iterable[RunInfo]):
    import pandas as pd

    rows = [
        {"rid": i.rid, "created_at": i.created_at, "format": i.format, "meta": i.meta}
        for i in infos
    ]
    frame = pd.DataFrame(rows, columns=["rid", "created_at", "format", "meta"])
    return frame.set_index("rid", drop=False)


# ---- runs and backends ---------------------------------------------------------------------


class FileRun(Run):
    """What Zarr and Parquet runs share: a location, flush settings and ``chain_<n>`` folders.

    Subclasses set ``chain_class`` (called as ``chain_class(cmeta, run, created=...)``; a
    created chain makes its folder) and ``chain_marker``, the file a chain folder holds.
    """

    chain_class: type[Chain]
    chain_marker: str
    flush_target_bytes: int = 4 << 20

    def __init__(
        self,
        meta: RunMeta,
        location: Location,
        *,
        flush_every: int | None = None,
        flush_seconds: float | None = 10.0,
        background_flush: bool = True,
        read_only: bool = False,
    ) -> None:
        super().__init__(meta)
        self.location = location
        self.flush_every = flush_every or auto_flush_every(meta, self.flush_target_bytes)
        self.flush_seconds = flush_seconds
        self.background_flush = background_flush
        self.read_only = read_only
        self._chains: dict[int, Chain] = {}

    @property
    def url(self) -> str:
        return self.location.url()

    def _init_chain(self, chain_number: int) -> Chain:
        if self.read_only:
            raise ReadOnlyError(f"Run {self.meta.rid} was opened read-only.")
        cmeta = ChainMeta(rid=self.meta.rid, chain_number=chain_number)
        self._chains[chain_number] = self.chain_class(cmeta, self, created=True)
        return self._chains[chain_number]

    def get_chains(self) -> list[Chain]:
        for name in self.location.listdir():
            number = name.removeprefix("chain_")
            if not number.isdigit() or int(number) in self._chains:
                continue
            if self.location.exists(f"{name}/{self.chain_marker}"):
                cmeta = ChainMeta(rid=self.meta.rid, chain_number=int(number))
                self._chains[int(number)] = self.chain_class(cmeta, self)
        return [self._chains[n] for n in sorted(self._chains)]


# ---- the backend -------------------------------------------------------------------------


class FileBackend(Backend):
    """What Zarr and Parquet backends share: runs at ``<root>/<rid>`` with marker and sidecar.

    Subclasses set ``format``, ``format_version`` and ``run_class`` (called as
    ``run_class(meta, run_dir, **run_options)``), and may extend ``_prepare_run``.
    """

    format: str
    format_version: int
    run_class: type[Run]

    def __init__(
        self, url_or_path: str, storage_options: Mapping[str, Any] | None, **run_options: Any
    ) -> None:
        self.location = Location.from_url(url_or_path, storage_options)
        self._run_options = run_options

    def _init_run(self, meta: RunMeta) -> Run:
        if self._run_options.get("read_only"):
            raise ReadOnlyError(f"{self.location} was opened read-only.")
        self._check_meta(meta)
        run_dir = create_run_dir(self.location, meta, self.format, self.format_version)
        self._prepare_run(run_dir, meta)
        return self.run_class(meta, run_dir, **self._run_options)

    def _check_meta(self, meta: RunMeta) -> None:
        """Refuse metadata the format cannot store, before anything is written."""

    def _prepare_run(self, run_dir: Location, meta: RunMeta) -> None:
        """Write format-specific files of a new run."""

    def get_run(self, rid: str) -> Run:
        return self.open_run_dir(self.location.child(rid), **self._run_options)

    @classmethod
    def open_run_dir(cls, run_dir: Location, **run_options: Any) -> Run:
        """Open the run in ``run_dir``, refusing other formats and newer layout versions."""
        info = read_run_info(run_dir)
        if info.format != cls.format:
            raise RunNotFoundError(f"{run_dir} holds a {info.format} run, not a {cls.format} run.")
        if info.format_version > cls.format_version:
            raise FormatVersionError(
                f"{run_dir} uses {cls.format} layout v{info.format_version}; this mcbackend "
                f"reads up to v{cls.format_version}. Upgrade mcbackend."
            )
        return cls.run_class(info.meta, run_dir, **run_options)

    def get_runs(self):
        """A DataFrame of the runs under the root: rid, created_at, format, meta."""
        return runs_dataframe(i for i in list_runs(self.location) if i.format == self.format)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location.url()!r})"


# ---- buffering -----------------------------------------------------------------------------


class DrawBuffer:
    """Draws and stats not yet flushed, with the count/time policy that decides when to flush.

    A count flush happens when the chain length reaches a multiple of ``flush_every``, so
    flushes stay aligned with storage chunks even after a time-triggered flush.
    """

    def __init__(
        self,
        draw_specs: Iterable[VariableSpec],
        stat_specs: Iterable[VariableSpec],
        *,
        flush_every: int,
        flush_seconds: float | None,
    ) -> None:
        if flush_every < 1:
            raise ValueError(f"flush_every must be at least 1, got {flush_every}.")
        self.flush_every = int(flush_every)
        self.flush_seconds = flush_seconds
        self._draw_specs = list(draw_specs)
        self._stat_specs = list(stat_specs)
        self.reset()

    def reset(self) -> None:
        self.draws = ColumnStore(self._draw_specs, self.flush_every)
        self.stats = ColumnStore(self._stat_specs, self.flush_every)
        self.started = time.monotonic()

    def __len__(self) -> int:
        return self.stats.length

    def append(self, draw: dict[str, np.ndarray], stats: dict[str, np.ndarray]) -> None:
        if not len(self):
            self.started = time.monotonic()
        self.draws.append(draw)
        self.stats.append(stats)

    def extend_rows(self, draws: dict[str, Any], stats: dict[str, Any], lo: int, hi: int) -> None:
        if not len(self):
            self.started = time.monotonic()
        self.draws.extend_rows(draws, lo, hi)
        self.stats.extend_rows(stats, lo, hi)

    def room(self, committed: int) -> int:
        """Draws that fit before the next count flush."""
        return self.flush_every - (committed + len(self)) % self.flush_every

    def due(self, committed: int) -> bool:
        if not len(self):
            return False
        if (committed + len(self)) % self.flush_every == 0:
            return True
        return (
            self.flush_seconds is not None and time.monotonic() - self.started >= self.flush_seconds
        )

    def columns(self, is_stat: bool) -> ColumnStore:
        return self.stats if is_stat else self.draws

    def trim(self) -> None:
        """Release unused preallocated rows (the buffer takes no more draws)."""
        self.draws.trim()
        self.stats.trim()

    @property
    def nbytes(self) -> int:
        return self.draws.nbytes + self.stats.nbytes

    def empty_like(self) -> DrawBuffer:
        return DrawBuffer(
            self._draw_specs,
            self._stat_specs,
            flush_every=self.flush_every,
            flush_seconds=self.flush_seconds,
        )

    def merged_with(self, later: DrawBuffer) -> DrawBuffer:
        """A buffer holding this buffer's draws, then ``later``'s."""
        merged = self.empty_like()
        for part in (self, later):
            merged.draws.extend(part.draws)
            merged.stats.extend(part.stats)
        merged.started = self.started
        return merged


def auto_flush_every(meta: RunMeta, target_bytes: int = 4 << 20) -> int:
    """A power of two of draws that buffers about ``target_bytes`` (64 to 16384 draws)."""
    draw_bytes = 0
    for var in [*meta.variables, *meta.sample_stats]:
        spec = VariableSpec.from_variable(var)
        size = int(np.prod(spec.shape)) if spec.is_rigid else 8
        draw_bytes += size * (spec.dtype.itemsize or 16)
    draws = max(target_bytes // max(draw_bytes, 1), 1)
    return int(np.clip(2 ** int(np.log2(draws)), 64, 16384))


class BufferedChain(Chain):
    """Buffering and flushing shared by the file backends' chains.

    Appends collect in a ``DrawBuffer``. When a flush is due (by count or time), the buffer is
    handed to a background thread that writes it while appends go on into a fresh buffer; at
    most one write is under way per chain. ``flush()`` (and every read) waits for it and writes
    the rest in the calling thread. A failed write loses nothing: its draws go back in front of
    the buffer, the writer restarts from storage, and the next flush retries.

    Written buffers stay in memory up to ``memory_bytes`` per chain, so reading recent draws
    (PyMC reading a chain right after sampling it, progress checks) never touches storage.

    Subclasses implement ``_stored_length`` (committed draws, read from storage), ``_resume``
    (prepare appending after them; sets ``_committed``) and ``_write(buffer, start, n)``
    (write ``n`` buffered draws as draws ``start...``, commit point last).
    """

    #: Bytes of written draws each chain keeps in memory for reads.
    memory_bytes: int = 64 << 20

    def __init__(self, cmeta: ChainMeta, run: FileRun, *, created: bool) -> None:
        super().__init__(cmeta, run.meta)
        self._run = run
        self._buffer = DrawBuffer(
            self._variable_specs.values(),
            self._stat_specs.values(),
            flush_every=run.flush_every,
            flush_seconds=run.flush_seconds,
        )
        self._committed = 0  # draws durable in storage
        self._queued = 0  # draws handed to a writer: where the buffer starts
        self._writing = created
        self._background: tuple[Future, DrawBuffer, int] | None = None
        self._kept: list[tuple[int, DrawBuffer]] = []  # written draws held: (start, buffer)
        self._executor: ThreadPoolExecutor | None = None
        # Held by every write and read: the idle flusher's thread writes buffers too.
        self._lock = threading.RLock()
        register_for_exit_flush(self)

    def _stored_length(self) -> int:
        raise NotImplementedError()

    def _resume(self) -> None:
        raise NotImplementedError()

    def _write(self, buffer: DrawBuffer, start: int, n: int) -> None:
        raise NotImplementedError()

    # ---- writing ------------------------------------------------------------------------

    def _start_writing(self) -> None:
        if self._run.read_only:
            raise ReadOnlyError(f"Chain {self.cid} was opened read-only.")
        self._resume()
        self._queued = self._committed
        self._kept.clear()  # storage is the reference from here on
        self._writing = True

    def _append(self, draw, stats) -> None:
        with self._lock:
            if not self._writing:
                self._start_writing()
            self._buffer.append(draw, stats)
            self._flush_if_due()

    def _append_many(self, draws, stats, n) -> None:
        with self._lock:
            if not self._writing:
                self._start_writing()
            done = 0
            while done < n:  # in pieces that end where count flushes are due
                end = done + min(n - done, self._buffer.room(self._queued))
                self._buffer.extend_rows(draws, stats, done, end)
                done = end
                self._flush_if_due()

    def _flush_if_idle(self) -> None:
        """Write a buffer that waited ``flush_seconds`` for the next append (from the idle
        flusher's thread). A chain busy elsewhere, with a write under way, or whose last write
        failed (the next flush reports and retries it) is left alone."""
        if not self._lock.acquire(blocking=False):
            return
        try:
            if self._background is not None:
                future = self._background[0]
                if not future.done() or future.exception() is not None:
                    return
                self._wait_for_background()  # it succeeded: only bookkeeping
            if self._writing and self._buffer.due(self._queued):
                self._flush_in_background()
        finally:
            self._lock.release()

    def _flush_if_due(self) -> None:
        if self._buffer.due(self._queued):
            if self._run.background_flush:
                self._flush_in_background()
            else:
                self.flush()

    def _flush_in_background(self) -> None:
        self._wait_for_background()
        buffer, start, n = self._buffer, self._queued, len(self._buffer)
        self._buffer = buffer.empty_like()
        self._queued = start + n
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"mcbackend-{self.cid}")
        future = self._executor.submit(self._write_and_commit, buffer, start, n)
        self._background = (future, buffer, start)

    def _write_and_commit(self, buffer: DrawBuffer, start: int, n: int) -> None:
        self._write(buffer, start, n)
        self._committed = start + n

    def _wait_for_background(self) -> None:
        if self._background is None:
            return
        future, buffer, start = self._background
        self._background = None
        try:
            future.result()
        except Exception as ex:
            self._buffer = buffer.merged_with(self._buffer)
            self._queued = start
            self._writing = False  # the writers restart from storage
            raise self._flush_error(ex) from ex
        self._keep(start, buffer)

    def flush(self, wait: bool = True) -> None:
        """Wait for a background write, then write what is buffered (commit point last).

        With ``wait=False`` (and background flushes enabled) the buffer is written in the
        background instead; a failure surfaces at the next flush or read.
        """
        with self._lock:
            if not wait and self._run.background_flush and len(self._buffer):
                if not self._writing:
                    self._start_writing()
                self._flush_in_background()
                return
            self._wait_for_background()
            n = len(self._buffer)
            if not n:
                return
            if not self._writing:
                self._start_writing()
            try:
                self._write(self._buffer, self._queued, n)
            except Exception as ex:
                self._writing = False
                raise self._flush_error(ex) from ex
            self._keep(self._queued, self._buffer)
            self._buffer = self._buffer.empty_like()
            self._committed = self._queued = self._queued + n

    def _keep(self, start: int, buffer: DrawBuffer) -> None:
        """Hold written draws for reads; the oldest go once more than ``memory_bytes`` are held."""
        buffer.trim()
        self._kept.append((start, buffer))
        held = sum(kept.nbytes for _, kept in self._kept)
        while self._kept and held > self.memory_bytes:
            held -= self._kept.pop(0)[1].nbytes

    def _flush_error(self, ex: Exception) -> FlushError:
        return FlushError(
            f"Writing draws of chain {self.cid} failed: {ex}. Every appended draw is kept "
            f"({len(self)} in all); the next flush retries the unwritten ones."
        )

    def close(self) -> None:
        with self._lock:
            self.flush()
            if self._executor is not None:
                self._executor.shutdown()
                self._executor = None

    # ---- reading ------------------------------------------------------------------------

    def __len__(self) -> int:
        with self._lock:
            if not self._writing:
                self._committed = self._stored_length()
                return self._committed + len(self._buffer)
            return self._queued + len(self._buffer)

    def _get_values(self, spec, slc, *, is_stat):
        return self._get_many_values([spec], slc, is_stat=is_stat)[spec.name]

    def _get_many_values(self, specs, slc, *, is_stat):
        with self._lock:
            self.flush()  # reads see every appended draw, and make it durable
            idx = positions(slc, len(self))
            held = self._read_held(specs, idx, is_stat=is_stat)
        if held is not None:
            return held
        return self._read_many_stored(specs, idx, is_stat=is_stat)

    def _read_held(
        self, specs: Sequence[VariableSpec], idx: np.ndarray, *, is_stat: bool
    ) -> dict[str, np.ndarray] | None:
        """Draws ``idx`` from the written buffers still in memory (after a flush they hold the
        chain's newest draws), or ``None`` if some are not held there."""
        if not self._kept or not len(idx):
            return None
        lo, hi = int(idx.min()), int(idx.max()) + 1
        if lo < self._kept[0][0]:
            return None
        parts = [(s, buf) for s, buf in self._kept if s < hi and s + len(buf) > lo]
        out = {}
        for spec in specs:
            pieces = [buf.columns(is_stat).rows(spec.name, lo - s, hi - s) for s, buf in parts]
            if spec.is_rigid:
                rows = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
            else:
                rows = as_object_array([value for piece in pieces for value in piece])
            out[spec.name] = rows[idx - lo]
        return out

    def _read_many_stored(
        self, specs: Sequence[VariableSpec], idx: np.ndarray, *, is_stat: bool
    ) -> dict[str, np.ndarray]:
        """Draws ``idx`` from storage."""
        return {s.name: read_positions(idx, self._reader(s, is_stat)) for s in specs}

    def _reader(self, spec: VariableSpec, is_stat: bool) -> Callable[[int, int], np.ndarray]:
        """Reads stored draws ``lo:hi`` of one variable or stat."""
        raise NotImplementedError()


# ---- flushing at exit ----------------------------------------------------------------------

_open_chains: weakref.WeakSet = weakref.WeakSet()
_exit_hook_installed = False


def register_for_exit_flush(chain: Any) -> None:
    """Flush ``chain`` when it idles ``flush_seconds`` and when the interpreter exits.

    The exit hook runs at threading shutdown, before thread pools (which storage libraries use
    for I/O) stop taking work; plain ``atexit`` handlers would run too late.
    """
    global _exit_hook_installed, _idle_flusher
    if not _exit_hook_installed:
        register = getattr(threading, "_register_atexit", atexit.register)
        register(_flush_at_exit)
        _exit_hook_installed = True
    with _idle_flusher_lock:
        _open_chains.add(chain)
        if _idle_flusher is None or not _idle_flusher.is_alive():  # none yet, or forked
            _idle_flusher = threading.Thread(
                target=_flush_idle_chains, name="mcbackend-idle-flush", daemon=True
            )
            _idle_flusher.start()


#: How often the idle flusher looks at the open chains.
IDLE_CHECK_SECONDS = 0.25
_idle_flusher: threading.Thread | None = None
_idle_flusher_lock = threading.Lock()


def _flush_idle_chains() -> None:
    """Give buffers that wait for an append longer than ``flush_seconds`` to their writers
    (a sampler that stalls, or finished without closing its chains); ends with the chains."""
    global _idle_flusher
    while True:
        time.sleep(IDLE_CHECK_SECONDS)
        with _idle_flusher_lock:
            chains = list(_open_chains)
            if not chains:
                _idle_flusher = None
                return
        for chain in chains:
            try:
                chain._flush_if_idle()
            except Exception:  # pragma: no cover - the chain's own flush reports it
                _log.debug("Idle flush of %r failed.", chain, exc_info=True)
        del chains


def _flush_at_exit() -> None:
    for chain in list(_open_chains):
        try:
            chain.flush()
        except Exception:  # pragma: no cover - best effort at interpreter exit
            _log.exception("Could not flush %r at exit.", chain)


def positions(slc: slice, length: int) -> np.ndarray:
    """The draw indices a slice selects from a chain of ``length``."""
    return np.arange(*slc.indices(length))


def read_positions(idx: np.ndarray, read_range: Callable[[int, int], np.ndarray]) -> np.ndarray:
    """Draws ``idx`` (any order, as a slice selects them) from one contiguous range read."""
    lo, hi = (int(idx.min()), int(idx.max()) + 1) if len(idx) else (0, 0)
    return read_range(lo, hi)[idx - lo]
