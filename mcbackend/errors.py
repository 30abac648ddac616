"""The errors mcbackend raises about runs and storage: one base class, ``MCBackendError``.

Each also derives from the built-in exception that code written before this module caught
(``RunNotFoundError`` is a ``FileNotFoundError`` and a ``KeyError``, ``FlushError`` an
``OSError``, ...), so ``except MCBackendError`` and the older ``except`` clauses both work.
Bad input to ``append``/``init_run`` raises the built-in ``ValueError``/``KeyError``/
``TypeError`` naming the problem.
"""

from __future__ import annotations

__all__ = [
    "BucketNotFoundError",
    "ChainLockedError",
    "CorruptRunError",
    "DrawNotKeptError",
    "FlushError",
    "FormatVersionError",
    "MCBackendError",
    "ReadOnlyError",
    "RunExistsError",
    "RunNotFoundError",
    "StorageUnreachableError",
]


class MCBackendError(Exception):
    """Base class of every error about runs and their storage."""


class RunNotFoundError(MCBackendError, FileNotFoundError, KeyError):
    """No run with this id (or at this location) exists in the backend."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class RunExistsError(MCBackendError, ValueError):
    """A run with this id already exists in the backend."""


class CorruptRunError(MCBackendError, ValueError):
    """Stored data of a run is missing or damaged; the message names the piece."""


class FormatVersionError(MCBackendError, ValueError):
    """A run was written in a newer layout version than this mcbackend reads."""


class FlushError(MCBackendError, OSError):
    """Writing buffered draws failed; the message says which draws are kept."""


class DrawNotKeptError(FlushError):
    """``append`` did not keep the draw (or batch) it was given: writes have been failing and
    the draws waiting for storage fill their memory bound. Earlier draws stay kept."""


class ReadOnlyError(MCBackendError, PermissionError):
    """The run or backend was opened read-only (or lives where nothing can be written)."""


class ChainLockedError(MCBackendError, RuntimeError):
    """Another writer holds this chain: a chain has exactly one writer at a time."""


class BucketNotFoundError(MCBackendError, FileNotFoundError):
    """The bucket a backend's root names does not exist; buckets are created only on request."""


class StorageUnreachableError(MCBackendError, ConnectionError):
    """Storage did not answer in time or refused the connection; the message names the endpoint."""
