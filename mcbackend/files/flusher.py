"""Flushing that no append triggers: chains idle longer than ``flush_seconds``, and every open
chain when the interpreter exits.

A chain registers with ``register``; it needs ``flush_if_idle()`` (non-blocking: a busy chain
is left alone), ``flush()`` and ``release_lease()`` (after the last flush at exit, so no other
writer takes the chain before this process's draws are written). Chains are held weakly, so
an abandoned chain still goes away.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from typing import Protocol

from .threads import keep_fsspec_working

__all__ = ["IdleFlusher", "register"]

_log = logging.getLogger(__name__)


class Flushable(Protocol):
    def flush_if_idle(self) -> None: ...

    def flush(self, wait: bool = True) -> None: ...

    def release_lease(self) -> None: ...


class IdleFlusher:
    """A daemon thread that, every ``interval`` seconds, lets each open chain write a buffer
    that waited too long for the next append (a sampler that stalls, or finished without
    closing its chains). It ends when no chain is left and restarts with the next one (also
    in a forked child, which inherits no threads)."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self._chains: weakref.WeakSet[Flushable] = weakref.WeakSet()
        self._lock = threading.Lock()  # guards _chains and _thread
        self._thread: threading.Thread | None = None

    def add(self, chain: Flushable) -> None:
        with self._lock:
            self._chains.add(chain)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="mcbackend-idle-flush", daemon=True
                )
                self._thread.start()

    def chains(self) -> list[Flushable]:
        with self._lock:
            return list(self._chains)

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
            with self._lock:
                chains = list(self._chains)
                if not chains:
                    self._thread = None
                    return
            for chain in chains:
                try:
                    chain.flush_if_idle()
                except Exception:  # pragma: no cover - the chain's own flush reports it
                    _log.debug("Idle flush of %r failed.", chain, exc_info=True)
            del chains


#: The process's idle flusher; its chains are also the ones flushed at exit.
idle_flusher = IdleFlusher()


def flush_at_exit() -> None:
    """Flush every open chain, then give up its writer lease. ``atexit`` runs after thread
    pools stopped taking work, so work for them runs in the submitting thread then
    (``mcbackend.files.threads``)."""
    chains = idle_flusher.chains()
    if chains:
        keep_fsspec_working()
    for chain in chains:
        try:
            chain.flush()
        except Exception as ex:  # tested in a subprocess (test_storage_outage.py)
            _log.error("At interpreter exit: %s The draws not yet stored are lost.", ex)
        finally:
            chain.release_lease()


atexit.register(flush_at_exit)


def register(chain: Flushable) -> None:
    """Flush ``chain`` when it idles and when the interpreter exits."""
    idle_flusher.add(chain)
