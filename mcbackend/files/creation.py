"""Creating a run directory: exactly one of concurrent creators of a run id wins, readers see
the run only once it is complete, and a failed creation leaves nothing behind
(``formats/zarr.md``, "Creating a run").

1. claim: ``_claim.json`` created if absent (locally ``O_EXCL`` + link, S3 ``If-None-Match: *``);
2. the sidecar, then the format's own files;
3. the marker, last: from here on the directory is a run.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import socket
from collections.abc import Callable, Iterator

from ..errors import MCBackendError, RunExistsError
from ..meta import RunMeta
from .layout import CLAIM, HIDDEN, MARKER, SIDECAR, check_rid, unfinished_creation
from .location import PARTIAL, Location

__all__ = ["create_run_dir"]

_log = logging.getLogger(__name__)


def create_run_dir(
    location: Location,
    meta: RunMeta,
    fmt: str,
    version: int,
    *,
    hidden: bool = False,
    prepare: Callable[[Location], None] | None = None,
) -> Location:
    """Create ``<root>/<rid>``: claim the run id, write the sidecar, ``prepare(run_dir)`` (the
    format's files), then the marker (names prefixed ``_`` if ``hidden``).

    Of concurrent creators exactly one claims the id (the others get ``RunExistsError``), and
    readers see the run only once the marker, written last, exists. A failed creation removes
    what it wrote, claim last, so the id can be used again.
    """
    rid = check_rid(meta.rid)
    run_dir = location.child(rid)
    with _saying_where(run_dir):
        _claim(run_dir, rid)
        try:
            prefix = HIDDEN if hidden else ""
            run_dir.write_bytes(prefix + SIDECAR, bytes(meta))
            if prepare is not None:
                prepare(run_dir)
            marker = {
                "format": fmt,
                "format_version": version,
                "rid": rid,
                "created_at": datetime.datetime.now(datetime.UTC).isoformat(),
            }
            run_dir.write_bytes(prefix + MARKER, json.dumps(marker, indent=1).encode())
        except BaseException:
            _undo_creation(run_dir)
            raise
    return run_dir


@contextlib.contextmanager
def _saying_where(run_dir: Location) -> Iterator[None]:
    """The storage's own errors (a full disk, no permission) say which run they concern;
    mcbackend's errors and unreachable storage (``reaching`` names the endpoint) pass as is."""
    try:
        yield
    except OSError as ex:
        if isinstance(ex, MCBackendError | TimeoutError | ConnectionError):
            raise
        located = PermissionError if isinstance(ex, PermissionError) else OSError
        raise located(f"Cannot write the run to {run_dir}: {ex}") from ex


def _claim(run_dir: Location, rid: str) -> None:
    """Create the run's claim exclusively, or raise ``RunExistsError`` saying why not."""
    refusal = _why_taken(run_dir)
    if refusal is None:
        claim = {
            "rid": rid,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "claimed_at": datetime.datetime.now(datetime.UTC).isoformat(),
        }
        try:
            run_dir.create_file(CLAIM, json.dumps(claim, indent=1).encode())
            return
        except FileExistsError:
            refusal = _why_taken(run_dir) or "another process claimed it at the same moment"
    raise RunExistsError(f"A run with id '{rid}' {refusal}.")


def _why_taken(run_dir: Location) -> str | None:
    """Why a run cannot be created in ``run_dir`` (``None``: it can)."""
    names = [n for n in run_dir.listdir() if not n.endswith(PARTIAL)]
    if not names:
        return None
    if MARKER in names or HIDDEN + MARKER in names:
        return f"already exists at {run_dir}"
    if CLAIM in names:
        return f"is being created at {run_dir}: {unfinished_creation(run_dir)}"
    return f"cannot be created: {run_dir} holds files but no run (delete them to use the id)"


def _undo_creation(run_dir: Location) -> None:
    """Remove what a failed creation wrote; the claim goes last, so until every other file is
    gone no other creator can claim the id. Failing that, the claim reports the run unfinished.
    Temporary files are left to their writers (a concurrent creator's claim in the making)."""
    try:
        ours = [n for n in run_dir.files() if n != CLAIM and not n.endswith(PARTIAL)]
        run_dir.remove(ours)
        run_dir.remove([CLAIM])
        run_dir.remove_empty_folders()
    except Exception as ex:
        _log.warning("Could not remove the unfinished run at %s: %r", run_dir, ex)
