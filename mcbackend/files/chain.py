"""``BufferedChain``: what the file backends' chains share. Appends collect in a ``DrawBuffer``
and go to storage through the chain's ``WritePipeline``; reads see every appended draw."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .._validation import VariableSpec
from ..codec import Section
from ..columns import as_object_array
from ..core import Chain, positions, read_positions
from ..errors import FlushError, ReadOnlyError
from ..meta import ChainMeta
from . import flusher
from .buffer import DrawBuffer
from .pipeline import WriteFailed, WritePipeline

if TYPE_CHECKING:
    from .base import FileRun

__all__ = ["BufferedChain"]


class BufferedChain(Chain):
    """Buffering and flushing shared by the file backends' chains.

    When a flush is due (by count or time), the buffer is handed to the write pipeline, whose
    writer thread writes it while appends go on into a fresh buffer. ``flush()`` (and every
    read) waits for the pipeline and writes the rest in the calling thread. A failed write
    loses nothing: its draws go back in front of the buffer, the chain resumes from storage,
    and the next flush retries.

    Written buffers stay in memory up to ``memory_bytes`` per chain, so reading recent draws
    (PyMC reading a chain right after sampling it, progress checks) never touches storage.

    Every field is guarded by the pipeline's lock (``self._writes.lock``), which every append,
    flush and read holds; the idle flusher's thread only tries it.

    Subclasses implement ``_stored_length`` (committed draws, read from storage), ``_resume``
    (prepare appending after them; sets ``_committed``), ``_write(buffer, start, n)`` (write
    ``n`` buffered draws as draws ``start...``, commit point last) and ``_reader``.
    """

    #: Bytes of written draws each chain keeps in memory for reads.
    memory_bytes: int = 64 << 20

    def __init__(self, cmeta: ChainMeta, run: FileRun, *, created: bool = False) -> None:
        super().__init__(cmeta, run.meta)
        self._run = run
        self._buffer = DrawBuffer(
            self._variable_specs.values(),
            self._stat_specs.values(),
            flush_every=run.flush_every,
            flush_seconds=run.flush_seconds,
        )
        self._writes = WritePipeline(self._write, name=self.cid, on_written=self._keep)
        self._writing = created  # appending: the pipeline's counters are valid
        self._kept: list[tuple[int, DrawBuffer]] = []  # written draws held: (start, buffer)
        flusher.register(self)

    @property
    def _committed(self) -> int:
        """Draws durable in storage."""
        return self._writes.committed

    @_committed.setter
    def _committed(self, value: int) -> None:
        self._writes.reset(value)

    def _stored_length(self) -> int:
        raise NotImplementedError()

    def _resume(self) -> None:
        raise NotImplementedError()

    def _write(self, buffer: DrawBuffer, start: int, n: int) -> None:
        raise NotImplementedError()

    def _reader(self, spec: VariableSpec, section: Section) -> Callable[[int, int], np.ndarray]:
        """Reads stored draws ``lo:hi`` of one variable or stat."""
        raise NotImplementedError()

    # ---- writing ------------------------------------------------------------------------

    def _start_writing(self) -> None:
        if self._run.read_only:
            raise ReadOnlyError(f"Chain {self.cid} at {self._run.location} is open read-only.")
        self._resume()
        self._kept.clear()  # storage is the reference from here on
        self._writing = True

    def _validate_and_append(self, draw: Any, stats: Any) -> None:
        with self._writes.lock:
            if not self._writing:
                self._start_writing()
            buffer = self._buffer
            buffer.stage(draw, stats)
            self._check_staged(buffer)
            buffer.commit()
            if buffer.due(self._writes.queued):
                self._flush_due()

    def _check_staged(self, buffer: DrawBuffer) -> None:
        """Refuse the draw staged in ``buffer`` for reasons of the format (it is validated)."""

    def _append_many(self, draws: Any, stats: Any, n: int) -> None:
        with self._writes.lock:
            if not self._writing:
                self._start_writing()
            done = 0
            while done < n:  # in pieces that end where count flushes are due
                end = done + min(n - done, self._buffer.room(self._writes.queued))
                self._buffer.extend_rows(draws, stats, done, end)
                done = end
                self._flush_if_due()

    def flush_if_idle(self) -> None:
        """Write a buffer that waited ``flush_seconds`` for the next append (from the idle
        flusher's thread). A chain busy elsewhere, with a write under way, or whose last write
        failed (the next flush reports and retries it) is left alone."""
        if not self._writes.lock.acquire(blocking=False):
            return
        try:
            if self._writes.settled and self._writing and self._buffer.due(self._writes.queued):
                self._flush_in_background()
        finally:
            self._writes.lock.release()

    def _flush_if_due(self) -> None:
        if self._buffer.due(self._writes.queued):
            self._flush_due()

    def _flush_due(self) -> None:
        if self._run.background_flush:
            self._flush_in_background()
        else:
            self.flush()

    def _flush_in_background(self) -> None:
        buffer = self._buffer
        self._checked(self._writes.submit, buffer, len(buffer))
        self._buffer = buffer.empty_like()

    def flush(self, wait: bool = True) -> None:
        """Wait for the writes under way, then write what is buffered (commit point last).

        With ``wait=False`` (and background flushes enabled) the buffer is handed to the
        writer thread instead; a failure surfaces at the next flush or read.
        """
        with self._writes.lock:
            if not wait and self._run.background_flush and len(self._buffer):
                if not self._writing:
                    self._start_writing()
                self._flush_in_background()
                return
            self._checked(self._writes.wait)
            if not len(self._buffer):
                return
            if not self._writing:
                self._start_writing()
            self._checked(self._writes.write_now, self._buffer, len(self._buffer))
            self._buffer = self._buffer.empty_like()

    def _checked(self, step: Callable[..., None], *args: Any) -> None:
        """Run a pipeline step; a failed write's draws go back in front of the buffer."""
        try:
            step(*args)
        except WriteFailed as failure:
            if not failure.buffers or failure.buffers[-1] is not self._buffer:
                failure.buffers.append(self._buffer)
            merged = failure.buffers[0]
            for later in failure.buffers[1:]:
                merged = merged.merged_with(later)
            self._buffer = merged
            self._writing = False  # the writers restart from storage
            raise self._flush_error(failure.cause) from failure.cause

    def _keep(self, start: int, buffer: DrawBuffer) -> None:
        """Hold written draws for reads; the oldest go once more than ``memory_bytes`` are held."""
        buffer.trim()
        self._kept.append((start, buffer))
        held = sum(kept.nbytes for _, kept in self._kept)
        while self._kept and held > self.memory_bytes:
            held -= self._kept.pop(0)[1].nbytes

    def _flush_error(self, ex: BaseException) -> FlushError:
        return FlushError(
            f"Writing draws of chain {self.cid} failed: {ex}. Every appended draw is kept "
            f"({len(self)} in all); the next flush retries the unwritten ones."
        )

    def _finishing_error(self, step: str, ex: BaseException) -> FlushError:
        """A step after the last flush (compaction, final chunks) failed: no draw is at risk."""
        return FlushError(
            f"{step} of chain {self.cid} failed: {ex}. Every draw is safe ({self._committed} "
            f"stored, readable as they are); close() again to finish the chain."
        )

    def close(self) -> None:
        with self._writes.lock:
            self.flush()
            self._writes.close()

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
        out = {}
        for spec in specs:
            pieces = [buf.columns(section).rows(spec.name, lo - s, hi - s) for s, buf in parts]
            rows: Any
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
