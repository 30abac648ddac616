"""``BufferedChain``: what the file backends' chains share. Appends collect in a ``DrawBuffer``
and go to storage through the chain's ``WritePipeline``; reads see every appended draw."""

from __future__ import annotations

import contextlib
import logging
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .._validation import VariableSpec
from ..codec import Section
from ..columns import as_object_array
from ..core import Chain, positions, read_positions
from ..errors import (
    ChainLockedError,
    CorruptRunError,
    DrawNotKeptError,
    FlushError,
    ReadOnlyError,
    StorageUnreachableError,
)
from ..meta import ChainMeta
from . import flusher
from .buffer import DrawBuffer
from .lease import ChainLease, release_later
from .pipeline import Encode, Store, WriteFailed, WritePipeline, in_order
from .storage import reaching, where

if TYPE_CHECKING:
    from .base import FileRun

__all__ = ["BufferedChain"]

_log = logging.getLogger(__name__)


class BufferedChain(Chain):
    """Buffering and flushing shared by the file backends' chains.

    When a flush is due (by count or time), the buffer is handed to the write pipeline, whose
    writer thread writes it while appends go on into a fresh buffer. ``flush()`` (and every
    read) waits for the pipeline and writes the rest in the calling thread.

    A failed write loses nothing (storage away, disk full): its draws go back in front of the
    buffer and wait in memory. ``append`` keeps its draw and returns, or raises and keeps
    nothing of it: while writes fail it refuses draws (``DrawNotKeptError``) once the draws
    waiting would take more than ``max_unstored_bytes``. Appends retry writing at most every
    ``retry_seconds`` (in the background with ``background_flush``), ``flush()`` and
    ``close()`` at once, raising ``FlushError`` while storage fails. Before the next write
    the writers are rebuilt from storage, which must hold exactly the draws stored before:
    if storage lost some meanwhile, writing stops with ``CorruptRunError`` rather than
    renumbering draws.

    Written buffers stay in memory up to ``memory_bytes`` per chain, so reading recent draws
    (PyMC reading a chain right after sampling it, progress checks) never touches storage.

    Every field is guarded by the pipeline's lock (``self._writes.lock``), which every append,
    flush and read holds; the idle flusher's thread only tries it. ``_stale`` is also read and
    cleared by the writer thread, only while no failure is being collected; the writers' state
    (what ``_plan_write`` reads) is changed by one thread at a time (see ``_plan_step``).

    A handle writes only while it holds the chain's ``ChainLease`` (one writer per chain): taken
    when it creates the chain or starts appending to it, confirmed before every write, given up
    by ``close()``, at interpreter exit, or when the handle is collected.

    Subclasses implement ``_stored_length`` (committed draws, read from storage), ``_resume``
    (prepare appending after the committed draws, returns their number), ``_write(buffer,
    start, n)`` (write ``n`` buffered draws as draws ``start...``, commit point last;
    ``self._lease.confirm()`` again right before the commit point; or ``_plan_write`` to encode
    ahead in the encode pool) and ``_reader``. A created chain takes its lease here unless the
    subclass passes ``created=False`` and takes it itself.
    """

    #: Bytes of written draws each chain keeps in memory for reads.
    memory_bytes: int = 64 << 20
    #: While writes fail, appends try again at most this often (``flush()`` always tries).
    retry_seconds: float = 5.0

    def __init__(self, cmeta: ChainMeta, run: FileRun, *, created: bool = False) -> None:
        super().__init__(cmeta, run.meta)
        self._run = run
        self._buffer = DrawBuffer(
            self._variable_specs.values(),
            self._stat_specs.values(),
            flush_every=run.flush_every,
            flush_seconds=run.flush_seconds,
        )
        self._writes = WritePipeline(plan=self._plan_step, name=self.cid, on_written=self._written)
        self._writing = created  # appending: the pipeline's counters are valid
        self._kept: list[tuple[int, DrawBuffer]] = []  # written draws held: (start, buffer)
        self._failure: BaseException | None = None  # why the newest write failed
        self._retry_at = 0.0  # appends retry a failed write from this time.monotonic() on
        self._stale = False  # a write failed: rebuild the writers from storage first
        self._lease = ChainLease(
            run.lease_folder(cmeta.chain_number),
            chain=cmeta.chain_number,
            rid=run.meta.rid,
            seconds=run.lease_seconds,
        )
        weakref.finalize(self, release_later, self._lease).atexit = False  # exit: see flusher
        if created:
            self._lease.acquire(new_chain=True)
        flusher.register(self)

    @property
    def _committed(self) -> int:
        """Draws durable in storage."""
        return self._writes.committed

    @_committed.setter
    def _committed(self, value: int) -> None:
        self._writes.reset(value)
        self._buffer.check_at = 0

    def _stored_length(self) -> int:
        raise NotImplementedError()

    def _resume(self) -> int:
        raise NotImplementedError()

    def _write(self, buffer: DrawBuffer, start: int, n: int) -> None:
        raise NotImplementedError()

    def _plan_write(self, buffer: DrawBuffer, start: int, n: int) -> Encode:
        """The write's steps (``mcbackend.files.pipeline.Plan``); by default all of it is
        stored in order by ``_write``. A format whose encoding needs no state of earlier
        writes returns an encode step that runs in the encode pool."""
        return in_order(self._write)(buffer, start, n)

    def _reader(self, spec: VariableSpec, section: Section) -> Callable[[int, int], np.ndarray]:
        """Reads stored draws ``lo:hi`` of one variable or stat."""
        raise NotImplementedError()

    # ---- appending ----------------------------------------------------------------------

    def _validate_and_append(self, draw: Any, stats: Any) -> None:
        """The steady state (writing, lease held, no failed write) stages and counts the
        draw as ``NumPyChain`` does, then compares two numbers to see whether a flush may be
        due; everything else goes through ``_append_one``."""
        lock = self._writes.lock
        lock.acquire()  # not ``with``: half the cost, and appends are what a sampler waits on
        try:
            if not (self._writing and self._failure is None and self._lease.held):
                self._append_one(draw, stats)
                return
            buffer = self._buffer
            draws, kept = buffer.draws, buffer.stats
            draws.stage(draw, "draw")
            kept.stage(stats, "stats", fill_missing=True)
            lead = self._leading_stat
            if lead is not None:
                if not kept.columns[lead][kept.length]:
                    self._leading_over = True
                elif self._leading_over:
                    self._check_staged(buffer)  # raises
            if self._checks_staged:
                self._check_staged(buffer)
            if not kept.length:
                buffer.started = time.monotonic()
            draws.commit()
            kept.commit()
            if kept.length >= buffer.check_at or time.monotonic() >= buffer.deadline:
                self._flush_if_due()
                self._buffer.plan_check(self._writes.queued)
        finally:
            lock.release()

    def _append_one(self, draw: Any, stats: Any) -> None:
        """Append one draw whatever the chain's state (resuming, failed writes, lease lost)."""
        with self._writes.lock:
            if not self._appending:  # a bad draw is refused before the lease is taken
                self._stage(self._buffer, draw, stats)
            nbytes = 0
            if self._failure is not None:
                one = ({k: [v] for k, v in draw.items()}, {k: [v] for k, v in stats.items()})
                nbytes = self._buffer.nbytes_of(*one, 0, 1)
            self._admit(nbytes, 1)
            buffer = self._buffer
            self._stage(buffer, draw, stats)
            buffer.commit()
            self._flush_if_due()
            self._buffer.check_at = 0  # counters may have moved: the next append checks

    def _stage(self, buffer: DrawBuffer, draw: Any, stats: Any) -> None:
        """Validate the draw into the buffer's next row (uncounted until ``commit``)."""
        buffer.stage(draw, stats)
        self._check_staged(buffer)

    #: Whether ``_check_staged`` refuses anything (formats that override it say so at init).
    _checks_staged = False
    #: A bool stat whose true values must lead the chain (warm-up draws first): appends check
    #: it inline, and call ``_check_staged`` (which raises) for a true one after a false one.
    _leading_stat: str | None = None
    _leading_over = False  # a draw whose leading stat is false was appended

    def _check_staged(self, buffer: DrawBuffer) -> None:
        """Refuse the draw staged in ``buffer`` for reasons of the format (it is validated)."""

    def _append_many(self, draws: Any, stats: Any, n: int) -> None:
        with self._writes.lock:
            self._admit(self._buffer.nbytes_of(draws, stats, 0, n) if self._failure else 0, n)
            done = 0
            while done < n:  # in pieces that end where count flushes are due
                end = done + min(n - done, self._buffer.room(self._writes.queued))
                self._buffer.extend_rows(draws, stats, done, end)
                done = end
                self._flush_if_due()
            self._buffer.check_at = 0

    def _admit(self, nbytes: int, n: int) -> None:
        """Before ``n`` draws taking ``nbytes`` are kept: start writing (a reopened chain
        resumes from storage), and while writes fail, make sure the draws waiting stay within
        ``max_unstored_bytes``. Raises, keeping none of them, if they cannot be kept."""
        if not self._appending:
            try:
                with reaching(self._run.location):
                    self._start_writing()
            except StorageUnreachableError as ex:
                raise DrawNotKeptError(
                    f"Chain {self.cid}: {self._not_kept(n)}: appending needs the chain's "
                    f"committed length from storage. {ex}"
                ) from ex
        if self._failure is None:
            return
        if isinstance(self._failure, CorruptRunError):
            raise CorruptRunError(f"{self._failure} {self._not_kept(n)}.")
        limit = self._run.max_unstored_bytes
        if self._unstored_nbytes() + nbytes <= limit:
            return
        self._retry()
        if self._failure is None and self._unstored_nbytes() + nbytes <= limit:
            return
        waiting = len(self) - self._committed
        raise DrawNotKeptError(
            f"Chain {self.cid}: {self._not_kept(n)}: writing to {where(self._run.location)} "
            f"failed ({self._failure}), and the {waiting} draws waiting in memory take "
            f"{self._unstored_nbytes()} bytes (max_unstored_bytes={limit}). The {len(self)} "
            "draws appended before are kept and are written once storage answers."
        )

    def _not_kept(self, n: int) -> str:
        first = self._writes.queued + len(self._buffer)
        if n == 1:
            return f"draw {first} was not kept"
        return f"draws {first}-{first + n - 1} were not kept"

    def _unstored_nbytes(self) -> int:
        return sum(b.data_nbytes for b in [*self._writes.buffers, self._buffer])

    @property
    def _appending(self) -> bool:
        """Appends go on from the pipeline's counters: resumed, and the lease still held."""
        return self._writing and self._lease.held

    def _start_writing(self) -> None:
        """Take the writer lease, then append after the draws storage holds (the writers
        rebuilt from storage)."""
        if self._run.read_only:
            raise ReadOnlyError(f"Chain {self.cid} at {self._run.location} is open read-only.")
        self._checked(self._writes.wait, report=False)  # a lost lease's writes end first
        self._lease.acquire()
        self._committed = self._resume()
        self._stale = False
        self._kept.clear()  # storage is the reference from here on
        self._writing = True

    @contextlib.contextmanager
    def _creating(self) -> Iterator[None]:
        """Around a new chain's first files: a failure (a full disk) gives the lease up, so the
        chain number stays usable."""
        try:
            yield
        except BaseException:
            self._lease.release()
            raise

    def _refuse_existing(self) -> ChainLockedError:
        """For a chain created meanwhile by another handle (which held the lease then)."""
        self._lease.release()
        return ChainLockedError(
            f"Chain {self.cmeta.chain_number} of run {self._run.meta.rid} exists (another "
            "writer created it); use get_chains() to continue it."
        )

    # ---- writing ------------------------------------------------------------------------

    def flush_if_idle(self) -> None:
        """Write a buffer that waited ``flush_seconds`` for the next append (from the idle
        flusher's thread). A chain busy elsewhere or with a write under way is left alone. A
        chain waiting for draws keeps its writer lease."""
        self._lease.keep_alive()
        if not self._writes.lock.acquire(blocking=False):
            return
        try:
            if self._writing and self._writes.done and self._may_retry():
                self._checked(self._writes.wait, report=False)
                if self._buffer.due(self._writes.queued):
                    self._flush_in_background(report=False)
        finally:
            self._writes.lock.release()

    def _flush_if_due(self) -> None:
        """A due flush from an append: a failure is reported by a later flush (or by an append
        that cannot keep its draw), never by the append that kept its draw."""
        if not self._buffer.due(self._writes.queued) or not self._may_retry():
            return
        if not self._run.background_flush:
            self._write_buffer(report=False)
        elif self._failure is None or self._writes.done:  # never wait on failing storage
            self._flush_in_background(report=False)

    def _may_retry(self) -> bool:
        return self._failure is None or time.monotonic() >= self._retry_at

    def _retry(self) -> None:
        """Try writing the waiting draws again, without waiting on storage in the background."""
        if not self._may_retry():
            return
        if not self._run.background_flush:
            self._write_buffer(report=False)
        elif self._writes.done:
            self._checked(self._writes.wait, report=False)
            if self._failure is not None and len(self._buffer):
                self._flush_in_background(report=False)

    def _flush_in_background(self, report: bool) -> None:
        buffer = self._buffer
        if self._checked(self._writes.submit, buffer, len(buffer), report=report):
            self._buffer = buffer.empty_like()

    def flush(self, wait: bool = True) -> None:
        """Wait for the writes under way, then write what is buffered (commit point last).

        With ``wait=False`` (and background flushes enabled) the buffer is handed to the
        writer thread instead; a failure surfaces at the next flush or read.
        """
        with self._writes.lock:
            if not wait and self._run.background_flush and len(self._buffer):
                if self._failure is None or self._writes.done:
                    self._flush_in_background(report=False)
                return
            self._write_buffer(report=True)

    def _write_buffer(self, report: bool) -> None:
        """Wait for the writes under way (the draws of failed ones rejoin the buffer), then
        write the buffer in this thread."""
        self._checked(self._writes.wait, report=False)
        if len(self._buffer) and self._checked(
            self._writes.write_now, self._buffer, len(self._buffer), report=report
        ):
            self._buffer = self._buffer.empty_like()

    def _checked(self, step: Callable[..., None], *args: Any, report: bool = True) -> bool:
        """Run a pipeline step; whether it succeeded. A failed write's draws go back in front
        of the buffer; with ``report`` the failure is raised (``FlushError``, or
        ``CorruptRunError`` when storage lost draws)."""
        try:
            step(*args)
        except WriteFailed as failure:
            if not failure.buffers or failure.buffers[-1] is not self._buffer:
                failure.buffers.append(self._buffer)
            merged = failure.buffers[0]
            for later in failure.buffers[1:]:
                merged = merged.merged_with(later)
            self._buffer = merged
            self._stale = True  # the writers restart from storage
            if isinstance(failure.cause, ChainLockedError):  # another writer has the chain
                self._buffer = merged.empty_like()  # the message says these were not stored
                self._writing = False
                raise failure.cause from None
            if self._failure is None:
                _log.warning("%s", self._flush_error(failure.cause))
            self._failure = failure.cause
            self._retry_at = time.monotonic() + self.retry_seconds
            if report:
                raise self._flush_error(failure.cause) from failure.cause
            return False
        return True

    def _plan_step(self, buffer: DrawBuffer, start: int, n: int) -> Encode:
        """The pipeline's plan (under the lock, in order). Planning reads and advances the
        writers' state, so after a failed write (``_stale``) the write runs whole on the
        writer thread (``_write_step``: rebuild the writers from storage, then plan, encode
        and store), undoing what the failed writes' plans advanced. Until a write succeeds
        again (``_failure`` cleared) no write is handed over while one is under way
        (``_flush_if_due``, ``_retry``), so no plan here runs beside that one."""
        if self._stale:
            return in_order(self._write_step)(buffer, start, n)
        return self._by_lease_holder(self._plan_write(buffer, start, n))

    def _by_lease_holder(self, encode: Encode) -> Encode:
        """``encode`` whose store step first confirms the lease (on the writer thread, as
        ``_write_step`` does): only the chain's writer stores."""

        def encoded() -> Store:
            store = encode()

            def confirmed() -> None:
                self._lease.confirm()
                store()

            return confirmed

        return encoded

    def _write_step(self, buffer: DrawBuffer, start: int, n: int) -> None:
        """A write run whole on the writer thread, by the lease holder only. After a failed
        write the writers are first rebuilt from storage; draws of this write that storage
        holds already (a write whose reply was lost landed) are not written again."""
        self._lease.confirm()
        skip = self._reopen(start, n) if self._stale else 0
        if skip < n:
            self._write(buffer.tail(skip) if skip else buffer, start + skip, n - skip)

    def _reopen(self, start: int, n: int) -> int:
        """Rebuild the writers from storage, which must hold the ``start`` draws stored
        before, and at most the ``n`` of this write; how many of those it holds."""
        stored = self._checked_stored(self._stored_length, start, n)
        stored = self._checked_stored(self._resume, start, n)
        self._stale = False
        return stored - start

    def _checked_stored(self, read: Callable[[], int], start: int, n: int) -> int:
        location = where(self._run.location)
        try:
            stored = read()
        except FileNotFoundError as ex:
            raise CorruptRunError(
                f"Chain {self.cid}: its commit point at {location} is gone ({ex}), yet {start} "
                "draws were stored: storage lost them. Nothing more is written."
            ) from ex
        if stored < start:
            raise CorruptRunError(
                f"Chain {self.cid}: storage at {location} holds {stored} committed draws, yet "
                f"{start} were stored: draws {stored}-{start - 1} were lost there (files "
                "deleted or rolled back). Nothing more is written, so no draw is renumbered."
            )
        if stored > start + n:
            raise CorruptRunError(
                f"Chain {self.cid}: storage at {location} holds {stored} committed draws, more "
                f"than the {start + n} appended here: another writer appended to the chain. "
                "Nothing more is written."
            )
        return stored

    def _written(self, start: int, buffer: DrawBuffer) -> None:
        if self._failure is not None:
            _log.warning(
                "Chain %s: storage answers again; the draws that waited are stored.", self.cid
            )
            self._failure = None
        self._keep(start, buffer)

    def _keep(self, start: int, buffer: DrawBuffer) -> None:
        """Hold written draws for reads; the oldest go once more than ``memory_bytes`` are held."""
        buffer.trim()
        self._kept.append((start, buffer))
        held = sum(kept.nbytes for _, kept in self._kept)
        while self._kept and held > self.memory_bytes:
            held -= self._kept.pop(0)[1].nbytes

    def _flush_error(self, ex: BaseException) -> FlushError | CorruptRunError:
        waiting = len(self) - self._committed
        if isinstance(ex, CorruptRunError):
            return CorruptRunError(f"{ex} {waiting} draws appended here are not stored.")
        return FlushError(
            f"Writing draws of chain {self.cid} to {where(self._run.location)} failed: {ex}. "
            f"Every appended draw is kept ({len(self)} in all); {waiting} of them are not yet "
            "stored and wait in memory; the next flush (or append) retries them."
        )

    def _finishing_error(self, step: str, ex: BaseException) -> FlushError:
        """A step after the last flush (compaction, final chunks) failed: no draw is at risk."""
        return FlushError(
            f"{step} of chain {self.cid} failed: {ex}. Every draw is safe ({self._committed} "
            f"stored, readable as they are); close() again to finish the chain."
        )

    def close(self) -> None:
        """Write everything, then give up the writer lease (appending again takes it anew).
        A close that fails keeps the lease, so that closing again finishes the chain."""
        with self._writes.lock:
            self._finish()
            self.release_lease()

    def _finish(self) -> None:
        """Write every appended draw and stop the writer thread (formats add closing writes)."""
        self.flush()
        self._writes.close()

    def release_lease(self) -> None:
        """Let another handle write this chain (after ``close``, and at interpreter exit)."""
        with self._writes.lock:
            self._lease.release()

    # ---- reading ------------------------------------------------------------------------

    def __len__(self) -> int:
        with self._writes.lock:
            if not self._writing:
                self._committed = self._stored_length()
                return self._committed + len(self._buffer)
            return self._writes.queued + len(self._buffer)

    def _get_values(self, spec, slc, *, section):
        return self._get_many_values([spec], slc, section=section)[spec.name]

    def _get_many_values(self, specs, slc, *, section):
        with self._writes.lock:
            self.flush()  # reads see every appended draw, and make it durable
            idx = positions(slc, len(self))
            held = self._read_held(specs, idx, section=section)
        if held is not None:
            return held
        return self._read_many_stored(specs, idx, section=section)

    def _read_held(
        self, specs: Sequence[VariableSpec], idx: np.ndarray, *, section: Section
    ) -> dict[str, np.ndarray] | None:
        """Draws ``idx`` from the written buffers still in memory (after a flush they hold the
        chain's newest draws), or ``None`` if some are not held there."""
        if not self._kept or not len(idx):
            return None
        lo, hi = int(idx.min()), int(idx.max()) + 1
        if lo < self._kept[0][0]:
            return None
        parts = [(s, buf) for s, buf in self._kept if s < hi and s + len(buf) > lo]
        in_order = len(idx) == hi - lo and bool(np.all(np.diff(idx) == 1))
        out = {}
        for spec in specs:
            pieces = [buf.columns(section).rows(spec.name, lo - s, hi - s) for s, buf in parts]
            rows: Any
            if spec.is_rigid and in_order:  # copied once (big draws: fresh memory is slow)
                out[spec.name] = np.concatenate(pieces) if len(pieces) > 1 else np.array(pieces[0])
                continue
            if spec.is_rigid:
                rows = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
            else:
                rows = as_object_array([value for piece in pieces for value in piece])
            out[spec.name] = rows[idx - lo]
        return out

    def _read_many_stored(
        self, specs: Sequence[VariableSpec], idx: np.ndarray, *, section: Section
    ) -> dict[str, np.ndarray]:
        """Draws ``idx`` from storage."""
        return {s.name: read_positions(idx, self._reader(s, section)) for s in specs}
