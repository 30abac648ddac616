"""The write pipeline of a chain: buffers handed to a writer thread, in order, one commit after
the other, with the counters that say how far storage has got.

A write has up to three steps (``Plan``): planned in order when its buffer is handed over,
encoded in the process's encode pool (``mcbackend.files.encoding``; encodes of one chain's
consecutive buffers may overlap), stored in order on the chain's writer thread, commit point
last.

Every concurrency rule of the file backends' chains lives here (the idle flusher only calls
into a chain through this lock, see ``mcbackend.files.flusher``).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from .buffer import DrawBuffer
from .encoding import encode_pool
from .threads import CallerRunsExecutor

__all__ = [
    "MAX_BYTES_IN_FLIGHT",
    "MAX_IN_FLIGHT",
    "WriteFailed",
    "WritePipeline",
    "in_order",
]

#: Writes ``n`` draws of a buffer as draws ``start...``, commit point last.
WriteFn = Callable[[DrawBuffer, int, int], None]
#: Stores encoded draws, commit point last (on the writer thread, in order).
Store = Callable[[], None]
#: Encodes draws (in the encode pool, possibly beside other encodes); returns the store step.
Encode = Callable[[], Store]
#: Called in order, under the lock, when ``n`` draws of a buffer are handed over as draws
#: ``start...``: cheap bookkeeping that needs the previous buffer; returns the encode step.
Plan = Callable[[DrawBuffer, int, int], Encode]

#: Default bounds of the writes under way per chain: four buffers (one being written, the
#: others waiting, while appends fill the next) of at most 256 MiB together (a single larger
#: buffer is still handed over alone). Four, not two: one slow write (a shape rewrite, ~100 ms
#: on S3) made the third flush's append wait for it; more would widen what a crash loses.
MAX_IN_FLIGHT = 4
MAX_BYTES_IN_FLIGHT = 256 << 20


def in_order(write: WriteFn) -> Plan:
    """A write with nothing to encode ahead: all of it runs in order on the writer thread."""
    return lambda buffer, start, n: lambda: lambda: write(buffer, start, n)


class WriteFailed(Exception):
    """A write failed. ``buffers`` hold its draws and those of every later write handed over
    (oldest first, starting at draw ``start``): nothing is lost, the caller re-queues them."""

    def __init__(self, start: int, buffers: list[DrawBuffer], cause: BaseException) -> None:
        super().__init__(str(cause))
        self.start = start
        self.buffers = buffers
        self.cause = cause


class _Skipped(Exception):
    """An earlier write failed, so this one did not run (its commit would claim lost draws)."""


@dataclass
class _Write:
    future: Future[None]
    buffer: DrawBuffer
    start: int
    n: int
    encoded: Future[Store]


class WritePipeline:
    """Writes a chain's buffers in order, in the background or in the calling thread.

    Locking: ``lock`` (re-entrant) guards every field below; every method must be called with
    it held, and the chain holds it for every append, flush and read.

    - ``committed``: draws durable in storage (the commit point of the newest finished write).
    - ``queued``: draws handed to the pipeline, written or in flight; the chain's buffer
      starts here.
    - ``_in_flight``: writes handed over and not yet collected, oldest first.
    - ``_executor``: the chain's writer thread (one, so writes commit in order).

    The encode pool and the writer thread only work on buffers the chain no longer touches;
    they set no field. Finished writes are collected (``committed`` advanced, ``on_written``
    called) by whichever thread next needs room or waits, under the lock.

    ``max_in_flight`` and ``max_bytes`` bound the writes under way (count, and bytes of their
    buffers): handing over a buffer blocks only while a bound is hit. The defaults
    (``MAX_IN_FLIGHT``, ``MAX_BYTES_IN_FLIGHT``) double-buffer: appends go on while one write
    is stored and the next is encoded or waits. A crash loses the writes in flight.
    """

    def __init__(
        self,
        write: WriteFn | None = None,
        *,
        plan: Plan | None = None,
        name: str,
        on_written: Callable[[int, DrawBuffer], None] = lambda start, buffer: None,
        max_in_flight: int = MAX_IN_FLIGHT,
        max_bytes: int | None = MAX_BYTES_IN_FLIGHT,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}.")
        if (write is None) == (plan is None):
            raise ValueError("Give a write pipeline either write or plan.")
        if plan is None:
            assert write is not None
            plan = in_order(write)
        self.lock = threading.RLock()
        self.committed = 0
        self.queued = 0
        self.max_in_flight = max_in_flight
        self.max_bytes = max_bytes
        self._plan = plan
        self._on_written = on_written
        self._name = name
        self._in_flight: deque[_Write] = deque()
        self._executor: ThreadPoolExecutor | None = None

    def reset(self, committed: int) -> None:
        """Storage holds ``committed`` draws and nothing is under way (resuming a chain)."""
        if self._in_flight:
            raise RuntimeError("Cannot reset a write pipeline with writes under way.")
        self.committed = self.queued = committed

    # ---- handing over -------------------------------------------------------------------

    def submit(self, buffer: DrawBuffer, n: int) -> None:
        """Write ``n`` draws of ``buffer`` as draws ``queued...`` in the background.

        Raises ``WriteFailed`` (and hands over nothing) if an earlier write failed. At
        interpreter exit, when thread pools take no more work, the write happens right here
        (``CallerRunsExecutor``).
        """
        self._make_room(buffer.nbytes)
        start = self.queued
        try:
            encode = self._plan(buffer, start, n)
        except Exception as ex:  # a plan does no I/O, so this is a bug: fail after the others
            self.wait()
            raise WriteFailed(start, [buffer], ex) from ex
        encoded = encode_pool().submit(encode)
        prior = self._in_flight[-1].future if self._in_flight else None
        future = self._writer().submit(self._run, prior, encoded)
        self.queued = start + n
        self._in_flight.append(_Write(future, buffer, start, n, encoded))

    def write_now(self, buffer: DrawBuffer, n: int) -> None:
        """Wait for the writes under way, then write ``n`` draws of ``buffer`` in this thread."""
        self.wait()
        start = self.queued
        try:
            self._plan(buffer, start, n)()()
        except Exception as ex:
            raise WriteFailed(start, [buffer], ex) from ex
        self.committed = self.queued = start + n
        self._on_written(start, buffer)

    @staticmethod
    def _run(prior: Future[None] | None, encoded: Future[Store]) -> None:
        """On the writer thread: store the encoded write, unless the one before it failed."""
        if prior is not None and prior.exception() is not None:
            raise _Skipped()
        encoded.result()()

    def _writer(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = CallerRunsExecutor(1, thread_name_prefix=f"mcbackend-{self._name}")
        return self._executor

    # ---- collecting ---------------------------------------------------------------------

    def _make_room(self, nbytes: int) -> None:
        while self._in_flight and self._full(nbytes):
            self._collect_oldest()
        while self._in_flight and self._in_flight[0].future.done():
            self._collect_oldest()

    def _full(self, nbytes: int) -> bool:
        if len(self._in_flight) >= self.max_in_flight:
            return True
        if self.max_bytes is None:
            return False
        return sum(w.buffer.nbytes for w in self._in_flight) + nbytes > self.max_bytes

    def wait(self) -> None:
        """Wait for every write under way; raises ``WriteFailed`` for the first that failed."""
        while self._in_flight:
            self._collect_oldest()

    def _collect_oldest(self) -> None:
        oldest = self._in_flight[0]
        try:
            oldest.future.result()
        except Exception as ex:
            failed = list(self._in_flight)
            for later in failed[1:]:
                later.future.exception()  # let it finish (it skips itself)
                later.encoded.exception()  # and its encoding (nothing of it is stored)
            self._in_flight.clear()
            self.queued = oldest.start
            raise WriteFailed(oldest.start, [w.buffer for w in failed], ex) from ex
        self._in_flight.popleft()
        self.committed = oldest.start + oldest.n
        self._on_written(oldest.start, oldest.buffer)

    @property
    def done(self) -> bool:
        """No write is under way (finished ones, failed or not, may wait to be collected)."""
        return all(w.future.done() for w in self._in_flight)

    @property
    def buffers(self) -> list[DrawBuffer]:
        """The buffers of the writes handed over and not collected yet, oldest first."""
        return [w.buffer for w in self._in_flight]

    @property
    def settled(self) -> bool:
        """No write is under way, and none failed without being collected yet."""
        return all(w.future.done() and w.future.exception() is None for w in self._in_flight)

    def close(self) -> None:
        """Wait for the writes under way and stop the writer thread."""
        try:
            self.wait()
        finally:
            if self._executor is not None:
                self._executor.shutdown()
                self._executor = None
