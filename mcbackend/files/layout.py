"""The layout every file run shares: ``<root>/<rid>`` with a run marker and a metadata sidecar.

::

    mcbackend.json   {"format": "zarr" or "parquet", "format_version", "rid", "created_at"}
    meta.pb          the RunMeta protobuf (binary)
    ...              the format's own files

A layout may hide both names behind a leading ``_`` (``_mcbackend.json``, ``_meta.pb``) so that
dataset readers (pyarrow, pandas, DuckDB, polars) skip them; readers look for either.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import CorruptRunError, RunExistsError, RunNotFoundError
from ..meta import RunMeta
from .location import Location

__all__ = [
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
    location: Location, meta: RunMeta, fmt: str, version: int, *, hidden: bool = False
) -> Location:
    """Create ``<root>/<rid>`` with marker and sidecar (names prefixed ``_`` if ``hidden``);
    refuse a rid that exists."""
    rid = check_rid(meta.rid)
    run_dir = location.child(rid)
    if run_dir.listdir():
        raise RunExistsError(f"A run with id '{rid}' already exists at {run_dir}.")
    try:
        run_dir.fs.makedirs(run_dir.path, exist_ok=True)
        prefix = HIDDEN if hidden else ""
        run_dir.write_bytes(prefix + SIDECAR, bytes(meta))
        marker = {
            "format": fmt,
            "format_version": version,
            "rid": rid,
            "created_at": datetime.datetime.now(datetime.UTC).isoformat(),
        }
        run_dir.write_bytes(prefix + MARKER, json.dumps(marker, indent=1).encode())
    except PermissionError as ex:
        raise PermissionError(f"Cannot write the run to {run_dir}: {ex}") from ex
    except OSError as ex:
        raise OSError(f"Cannot write the run to {run_dir}: {ex}") from ex
    return run_dir


def read_run_info(run_dir: Location) -> RunInfo:
    """Read and check a run's marker and sidecar; clear errors for anything else."""
    marker_name = find_marker(run_dir)
    if marker_name is None:
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
