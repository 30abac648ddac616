"""One writer per chain on any file store: a lease held as numbered files (``formats/zarr.md``,
"One writer per chain"; the same for Parquet).

Object stores offer one atomic step, create-if-absent (S3 ``If-None-Match: *``; locally a
hard link), so a chain's lease is a folder of files ``<generation>.json``, the newest being
the lease. A writer takes a free chain by creating generation 0, and a chain whose newest
lease is released, expired, or held by a dead process on this machine by creating the next
generation: of several takers exactly one create succeeds. The holder rewrites its own file
to renew it (every ``seconds / 4``, no request in between) and checks, by listing, that no
newer generation appeared before it writes after such a pause.
"""

from __future__ import annotations

import atexit
import datetime
import functools
import json
import logging
import os
import queue
import socket
import threading
import time
import uuid
import weakref
from dataclasses import asdict, dataclass

from ..errors import ChainLockedError
from .location import Location

__all__ = ["DEFAULT_LEASE_SECONDS", "ChainLease", "LeaseDocument", "release_later"]

#: How long a lease outlives its last renewal (a crashed writer on another machine blocks the
#: chain this long; one on this machine only until its process is seen gone).
DEFAULT_LEASE_SECONDS = 600.0

_log = logging.getLogger(__name__)
#: Tokens of the leases held by live handles of this process (a lease of this process whose
#: token is missing here was left by a handle that is gone).
_held_here: weakref.WeakValueDictionary[str, ChainLease] = weakref.WeakValueDictionary()
#: Leases of collected handles, released by a thread of their own: a finalizer may run in any
#: thread (an event loop's, a server's), where a storage request could deadlock.
_to_release: queue.SimpleQueue[ChainLease] = queue.SimpleQueue()


def release_later(lease: ChainLease) -> None:
    """Release ``lease`` soon, from a releaser thread (safe inside finalizers)."""
    _to_release.put(lease)


def release_pending() -> None:
    """Release the leases handed to ``release_later`` so far, in this thread."""
    while True:
        try:
            lease = _to_release.get_nowait()
        except queue.Empty:
            return
        lease.release()


@functools.cache
def _start_releaser(pid: int) -> None:
    """The releaser thread of this process (a forked child starts its own)."""

    def run() -> None:
        while True:
            _to_release.get().release()

    threading.Thread(target=run, name="mcbackend-lease-release", daemon=True).start()


atexit.register(release_pending)


@dataclass
class LeaseDocument:
    """A lease file: who holds the chain, since when, until when (Unix seconds, UTC)."""

    token: str
    host: str
    machine: str  # boot id and PID namespace: where ``pid`` means a process
    pid: int
    pid_started: str  # the process's start time in clock ticks after boot ("" if unknown)
    since: float
    renewed: float
    expires: float
    released: bool = False

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def parse(cls, raw: bytes) -> LeaseDocument | None:
        """The document, or ``None`` if it does not parse (it then counts as expired)."""
        try:
            doc = json.loads(raw)
            return cls(**{k: doc[k] for k in cls.__dataclass_fields__ if k in doc})
        except (ValueError, TypeError, KeyError):
            return None

    def describe(self) -> str:
        return f"host {self.host} pid {self.pid} (since {_iso(self.since)})"


class ChainLease:
    """The right to write one chain, held by at most one handle at a time.

    ``acquire`` before the first write, ``confirm`` before each write (no request unless
    ``seconds / 4`` passed since the last renewal), ``keep_alive`` from the idle flusher,
    ``release`` when done. Thread-safe: the writer thread confirms while the idle flusher renews.
    """

    def __init__(self, folder: Location, *, chain: int, rid: str, seconds: float) -> None:
        if not seconds > 0:
            raise ValueError(f"lease_seconds must be positive, got {seconds!r}.")
        self.folder = folder
        self.seconds = float(seconds)
        self._what = f"chain {chain} of run {rid!r}"
        self._lock = threading.RLock()
        self._held_doc: LeaseDocument | None = None
        self.held = False
        self._generation = -1
        self._renewed_at = 0.0  # time.monotonic() before the last renewal was sent
        #: Why this handle lost the lease to another writer: it writes nothing more.
        self.lost: str | None = None

    @property
    def _doc(self) -> LeaseDocument | None:
        """Ours, while held; ``held`` follows it (a plain attribute: every append reads it)."""
        return self._held_doc

    @_doc.setter
    def _doc(self, doc: LeaseDocument | None) -> None:
        self._held_doc = doc
        self.held = doc is not None

    # ---- taking and giving up -----------------------------------------------------------

    def acquire(self, *, new_chain: bool = False) -> None:
        """Take the lease, or raise ``ChainLockedError`` naming the holder. ``new_chain``: try
        generation 0 first (one request when nobody ever wrote the chain)."""
        with self._lock:
            if self.held:
                return
            if self.lost:
                raise ChainLockedError(self.lost)
            release_pending()  # leases of this process's collected handles first
            if new_chain and self._create(0):
                return
            holder = None
            for _ in range(3):  # another taker may win each round
                generations = self._generations()
                if generations:
                    holder = self._read(generations[-1])
                    if holder is not None and not _is_over(holder):
                        raise self._locked(holder, generations[-1])
                if self._create(generations[-1] + 1 if generations else 0):
                    self.folder.remove([_name(g) for g in generations])  # older generations
                    return
            raise self._locked(holder, generations[-1] if generations else 0)

    def release(self) -> None:
        """Give the lease up (best effort: a lease not released expires)."""
        with self._lock:
            doc, self._doc = self._doc, None
            if doc is None:
                return
            _held_here.pop(doc.token, None)
            doc.released, doc.expires = True, time.time()
            try:
                self.folder.write_bytes(_name(self._generation), doc.to_json())
            except Exception as ex:  # one line: at exit, storage may be long gone
                _log.warning(
                    "Could not release the writer lease of %s (%s: %s); it lapses after "
                    "lease_seconds=%s.",
                    self._what,
                    type(ex).__name__,
                    ex,
                    self.seconds,
                )

    # ---- holding ------------------------------------------------------------------------

    def confirm(self) -> None:
        """Raise ``ChainLockedError`` unless this handle holds the lease; renew it when due."""
        with self._lock:
            if self._doc is None:
                raise ChainLockedError(
                    self.lost or f"This handle does not hold the writer lease of {self._what}."
                )
            if time.monotonic() - self._renewed_at >= self.seconds / 4:
                self._renew()

    def keep_alive(self) -> None:
        """Renew a lease that is due (from the idle flusher: a chain waiting for draws keeps
        its writer). A busy lease is left alone; a lost one is reported at the next write."""
        if not self._lock.acquire(blocking=False):
            return
        try:
            if self._doc is not None and time.monotonic() - self._renewed_at >= self.seconds / 4:
                self._renew()
        except Exception:
            _log.debug("Renewing the writer lease of %s failed.", self._what, exc_info=True)
        finally:
            self._lock.release()

    def _renew(self) -> None:
        assert self._doc is not None
        generations = self._generations()
        if not generations or generations[-1] != self._generation:
            newest = generations[-1] if generations else None
            holder = self._read(newest) if newest is not None else None
            idle = time.monotonic() - self._renewed_at
            self._doc = None
            self.lost = (
                f"This handle lost the writer lease of {self._what}: it had not renewed it for "
                f"{idle:.0f} s (lease_seconds={self.seconds:g}) and "
                f"{holder.describe() if holder else 'another writer'} took the chain. Draws "
                "this handle had not written yet were not stored, and it writes no more; open "
                "the run again to continue after the stored draws."
            )
            raise ChainLockedError(self.lost)
        started = time.monotonic()
        now = time.time()
        self._doc.renewed, self._doc.expires = now, now + self.seconds
        self.folder.write_bytes(_name(self._generation), self._doc.to_json())
        self._renewed_at = started

    # ---- files --------------------------------------------------------------------------

    def _create(self, generation: int) -> bool:
        started = time.monotonic()
        now = time.time()
        me = _this_process()
        doc = LeaseDocument(
            token=uuid.uuid4().hex,
            host=me.host,
            machine=me.machine,
            pid=me.pid,
            pid_started=me.started,
            since=now,
            renewed=now,
            expires=now + self.seconds,
        )
        try:
            self.folder.create_file(_name(generation), doc.to_json())
        except FileExistsError:
            return False
        self._doc, self._generation, self._renewed_at = doc, generation, started
        _held_here[doc.token] = self
        _start_releaser(os.getpid())
        return True

    def _generations(self) -> list[int]:
        names = self.folder.listdir()
        return sorted(int(n[:-5]) for n in names if n.endswith(".json") and n[:-5].isdigit())

    def _read(self, generation: int) -> LeaseDocument | None:
        try:
            return LeaseDocument.parse(self.folder.read_bytes(_name(generation)))
        except FileNotFoundError:
            return None  # replaced meanwhile: the next round sees the newer one

    def _locked(self, holder: LeaseDocument | None, generation: int) -> ChainLockedError:
        if holder is None:
            return ChainLockedError(
                f"{self._what[0].upper()}{self._what[1:]} has another writer (its lease "
                f"{self.folder.url(_name(generation))} keeps changing); try again."
            )
        age = time.time() - holder.renewed
        return ChainLockedError(
            f"{self._what[0].upper()}{self._what[1:]} has another writer: "
            f"{holder.describe()} holds its lease {self.folder.url(_name(generation))}, renewed "
            f"{age:.0f} s ago, expiring at {_iso(holder.expires)} unless renewed. A chain takes "
            "one writer at a time: close the other handle, or continue once it stopped and "
            "its lease expired."
        )


def _name(generation: int) -> str:
    return f"{generation:012d}.json"


def _iso(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).isoformat(timespec="seconds")


def _is_over(doc: LeaseDocument) -> bool:
    """The lease no longer holds: released, expired, or its process is gone."""
    if doc.released or time.time() >= doc.expires:
        return True
    me = _this_process()
    if (doc.host, doc.machine) != (me.host, me.machine):
        return False  # another machine: only expiry tells
    if doc.pid == me.pid:
        return doc.token not in _held_here  # its handle here is gone
    return not _process_alive(doc.pid, doc.pid_started)


@dataclass(frozen=True)
class _Process:
    host: str
    machine: str
    pid: int
    started: str


def _this_process() -> _Process:
    return _identity(os.getpid())


@functools.cache
def _identity(pid: int) -> _Process:
    """This process's identity (cached per pid: a forked child computes its own)."""
    machine = ""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        machine = f"{boot}/{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        pass
    return _Process(socket.gethostname(), machine, pid, _start_ticks(pid))


def _start_ticks(pid: int) -> str:
    """A process's start time (clock ticks after boot) from ``/proc``; "" if unknown."""
    stat = _proc_stat(pid)
    return stat[19] if stat else ""


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after the command name (state first), or ``None``."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _process_alive(pid: int, started: str) -> bool:
    """Whether process ``pid`` (started at ``started``) of this machine still runs."""
    if os.name != "posix":
        return True  # cannot tell: only expiry frees the lease
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, as another user
    stat = _proc_stat(pid)
    if stat is None:
        return not os.path.isdir("/proc/self")  # /proc exists and lost it: gone
    return stat[0] not in ("Z", "X") and (not started or stat[19] == started)
