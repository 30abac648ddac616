"""The layout every file run shares: ``<root>/<rid>`` with a run marker and a metadata sidecar.

::

    _claim.json      {"rid", "host", "pid", "claimed_at"}: created exclusively, first
    meta.pb          the RunMeta protobuf (binary)
    ...              the format's own files
    mcbackend.json   {"format": "zarr" or "parquet", "format_version", "rid", "created_at"}: last

A layout may hide both names behind a leading ``_`` (``_mcbackend.json``, ``_meta.pb``) so that
dataset readers (pyarrow, pandas, DuckDB, polars) skip them; readers look for either.
A directory is a run once its marker exists; a claim without a marker is a creation under way
(or one that crashed).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import re
import socket
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from ..errors import CorruptRunError, MCBackendError, RunExistsError, RunNotFoundError
from ..meta import RunMeta
from .location import PARTIAL, Location

__all__ = [
    "CLAIM",
    "MARKER",
    "SIDECAR",
    "RunInfo",
    "check_rid",
    "create_run_dir",
    "find_marker",
    "list_runs",
    "read_run_info",
    "runs_dataframe",
]

_log = logging.getLogger(__name__)

MARKER = "mcbackend.json"
SIDECAR = "meta.pb"
CLAIM = "_claim.json"  # created exclusively by the one creator of a run id; never removed
HIDDEN = "_"  # prefix of the marker and sidecar of layouts read by dataset tools

_SAFE_RID = re.compile(r"^[A-Za-z0-9_.\-]+$")


def check_rid(rid: str) -> str:
    """Run ids name directories, so they must be plain path components."""
    if not _SAFE_RID.match(rid) or rid in (".", ".."):
        raise ValueError(
            f"Run id {rid!r} cannot name a directory: use letters, digits, '_', '-' and '.'."
        )
    return rid


@dataclass(frozen=True)
class RunInfo:
    """What a run's marker says, plus its metadata."""

    rid: str
    format: str
    format_version: int
    created_at: datetime.datetime
    meta: RunMeta


def find_marker(run_dir: Location) -> str | None:
    """The name of the run's marker (plain or hidden), or ``None`` if there is none."""
    for name in (MARKER, HIDDEN + MARKER):
        if run_dir.exists(name):
            return name
    return None


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
        return f"is being created at {run_dir}: {_unfinished_creation(run_dir)}"
    return f"cannot be created: {run_dir} holds files but no run (delete them to use the id)"


def _unfinished_creation(run_dir: Location) -> str:
    """What a claim without a marker says: a creation under way, or one that crashed."""
    try:
        claim = json.loads(run_dir.read_bytes(CLAIM))
        host, pid, since = claim["host"], int(claim["pid"]), claim["claimed_at"]
    except FileNotFoundError:
        return "another creator claimed it and gave up just now; retry"
    except (OSError, ValueError, KeyError, TypeError):
        return f"its claim {CLAIM} is unreadable; if no process is creating it, delete {run_dir}"
    where = f"process {pid} on {host} claimed it at {since}"
    if host == socket.gethostname() and not _is_running(pid):
        return f"{where} and crashed before finishing (no marker); delete {run_dir} to reuse the id"
    return (
        f"{where} and has not finished (no marker yet); if that process crashed, "
        f"delete {run_dir} to reuse the id"
    )


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


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


def read_run_info(run_dir: Location) -> RunInfo:
    """Read and check a run's marker and sidecar; clear errors for anything else."""
    marker_name = find_marker(run_dir)
    if marker_name is None:
        if run_dir.exists(CLAIM):
            raise RunNotFoundError(
                f"{run_dir} is not a run yet (no {MARKER}): {_unfinished_creation(run_dir)}."
            )
        if run_dir.fs.isdir(run_dir.path) or run_dir.fs.exists(run_dir.path):
            raise RunNotFoundError(f"{run_dir} is not an mcbackend run (no {MARKER}).")
        raise RunNotFoundError(f"No run at {run_dir}.")
    try:
        marker = json.loads(run_dir.read_bytes(marker_name))
        rid, fmt, version = marker["rid"], marker["format"], int(marker["format_version"])
        created_at = datetime.datetime.fromisoformat(marker["created_at"])
    except (ValueError, KeyError, TypeError) as ex:
        raise CorruptRunError(
            f"The run marker {run_dir.url(marker_name)} is corrupt: {ex!r}"
        ) from ex
    sidecar = marker_name.removesuffix(MARKER) + SIDECAR
    if not run_dir.exists(sidecar):
        raise CorruptRunError(f"The run at {run_dir} lacks its metadata sidecar {sidecar}.")
    raw = run_dir.read_bytes(sidecar)
    try:
        meta = RunMeta.parse(raw)
    except Exception as ex:
        raise CorruptRunError(
            f"The metadata sidecar {run_dir.url(sidecar)} is corrupt: {ex!r}"
        ) from ex
    if meta.rid != rid or bytes(meta) != raw:
        raise CorruptRunError(
            f"The metadata sidecar {run_dir.url(sidecar)} is corrupt "
            f"(it does not describe run '{rid}')."
        )
    return RunInfo(rid, fmt, version, created_at, meta)


def list_runs(location: Location) -> list[RunInfo]:
    """Every readable run directly under ``location``, oldest first."""
    infos = []
    for name in location.listdir():
        run_dir = location.child(name)
        if find_marker(run_dir) is None:
            continue
        try:
            infos.append(read_run_info(run_dir))
        except CorruptRunError as ex:
            _log.warning("Skipping %s: %s", run_dir, ex)
    return sorted(infos, key=lambda i: (i.created_at, i.rid))


def runs_dataframe(infos: Iterable[RunInfo]):
    """``Backend.get_runs``'s table of file runs, with their ``format``."""
    from ..core import runs_dataframe as backend_runs_dataframe

    rows = [
        {"rid": i.rid, "created_at": i.created_at, "format": i.format, "meta": i.meta}
        for i in infos
    ]
    return backend_runs_dataframe(rows, ["format"])
