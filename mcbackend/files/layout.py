"""The layout every file run shares: ``<root>/<rid>`` with a run marker and a metadata sidecar.

::

    _claim.json      {"rid", "host", "pid", "claimed_at"}: created exclusively, first
    meta.pb          the RunMeta protobuf (binary)
    ...              the format's own files
    mcbackend.json   {"format": "zarr" or "parquet", "format_version", "rid", "created_at"}: last

A layout may hide both names behind a leading ``_`` (``_mcbackend.json``, ``_meta.pb``) so that
dataset readers (pyarrow, pandas, DuckDB, polars) skip them; readers look for either.
A directory is a run once its marker exists; a claim without a marker is a creation under way
(or one that crashed). ``creation`` writes them, in the order above.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import CorruptRunError, RunNotFoundError
from ..meta import RunMeta
from .location import Location

__all__ = [
    "CLAIM",
    "MARKER",
    "SIDECAR",
    "RunInfo",
    "check_rid",
    "find_marker",
    "list_runs",
    "read_run_info",
    "runs_dataframe",
    "unfinished_creation",
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


def unfinished_creation(run_dir: Location) -> str:
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


def read_run_info(run_dir: Location) -> RunInfo:
    """Read and check a run's marker and sidecar; clear errors for anything else."""
    marker_name = find_marker(run_dir)
    if marker_name is None:
        if run_dir.exists(CLAIM):
            raise RunNotFoundError(
                f"{run_dir} is not a run yet (no {MARKER}): {unfinished_creation(run_dir)}."
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
