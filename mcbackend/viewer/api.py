"""The JSON API behind the pages, for other tools to poll too.

``GET /api/runs``                         every run: id, created, sampler, chains, draws, size
``GET /api/runs/{rid}``                   metadata: sampler settings, attributes, coords, variables
``GET /api/runs/{rid}/progress``          per chain: draws, warm-up/posterior, draws/s, divergences
``GET /api/runs/{rid}/draws?var=&element=&group=&points=``
                                          one element of a variable (or stat): thinned trace per
                                          chain, divergent draws, rank histograms, densities
``GET /api/runs/{rid}/diagnostics``       ArviZ summary of every posterior variable
``GET /runs/{rid}/download``              the run as a zip archive (as ``mcbackend export``)
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from typing import Any

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from .._copying import export_archive
from .._inferencedata import attributes_to_python
from ..core import Run
from ..errors import MCBackendError, RunNotFoundError
from .describe import RunSizes, plottable, run_metadata, to_json_value
from .diagnostics import Diagnostics
from .plots import SeriesCache, densities, markers, minmax_trace, rank_histograms
from .progress import RunProgress
from .source import RunSource

__all__ = ["Viewer", "api_routes", "BadRequest"]

_log = logging.getLogger(__name__)

MAX_POINTS = 4000
DEFAULT_POINTS = 1000


class BadRequest(ValueError):
    """A request parameter names nothing the run has, or is out of range."""


class Viewer:
    """The runs of one URL with what the pages keep per run: progress and diagnostics."""

    def __init__(self, source: RunSource) -> None:
        self.source = source
        self._lock = threading.Lock()
        self._progress: dict[str, RunProgress] = {}
        self._diagnostics: dict[str, Diagnostics] = {}
        self.series = SeriesCache()
        self.size = RunSizes()

    def progress(self, rid: str) -> RunProgress:
        run = self.source.run(rid)
        with self._lock:
            return self._progress.setdefault(rid, RunProgress(run))

    def diagnostics(self, rid: str) -> Diagnostics:
        run = self.source.run(rid)
        with self._lock:
            return self._diagnostics.setdefault(rid, Diagnostics(run))


def _json_errors(endpoint: Callable[..., dict[str, Any]]) -> Callable[[Request], Response]:
    """JSON for answers and errors alike: 404 for unknown runs, 400 for bad parameters,
    500 with the message (never a traceback) for anything else."""

    @functools.wraps(endpoint)
    def wrapper(request: Request) -> Response:
        viewer: Viewer = request.app.state.viewer
        try:
            with viewer.source.access():
                return JSONResponse(endpoint(viewer, request))
        except RunNotFoundError as ex:
            return JSONResponse({"error": str(ex)}, status_code=404)
        except BadRequest as ex:
            return JSONResponse({"error": str(ex)}, status_code=400)
        except MCBackendError as ex:
            return JSONResponse({"error": f"{type(ex).__name__}: {ex}"}, status_code=500)
        except Exception as ex:
            _log.exception("Request %s failed", request.url.path)
            return JSONResponse({"error": f"{type(ex).__name__}: {ex}"}, status_code=500)

    return wrapper


@_json_errors
def list_runs(viewer: Viewer, request: Request) -> dict[str, Any]:
    rows = []
    for entry in viewer.source.entries():
        try:
            rows.append(_run_row(viewer, entry.rid, entry.created_at, entry.format))
        except MCBackendError as ex:
            rows.append({"rid": entry.rid, "error": f"{type(ex).__name__}: {ex}"})
    return {"url": viewer.source.url, "runs": rows}


def _run_row(viewer: Viewer, rid: str, created_at, fmt: str) -> dict[str, Any]:
    run = viewer.source.run(rid)
    progress = viewer.progress(rid).as_json()
    attrs = attributes_to_python(run.meta.attributes)
    return {
        "rid": rid,
        "created_at": created_at.isoformat() if created_at else None,
        "format": fmt,
        "sampler": to_json_value(attrs.get("sampler") or attrs.get("inference_library")),
        "chains": len(progress["chains"]),
        "draws": [
            {"chain": c["chain"], "warmup": c["warmup"], "posterior": c["posterior"]}
            for c in progress["chains"]
        ],
        "variables": [v.name for v in run.meta.variables],
        "size": viewer.size(run),
        "state": progress["state"],
        "writing": progress["writing"],
    }


@_json_errors
def run_info(viewer: Viewer, request: Request) -> dict[str, Any]:
    entry = viewer.source.entry(request.path_params["rid"])
    run = viewer.source.run(entry.rid)
    return {**run_metadata(run, entry.created_at, entry.format), "size": viewer.size(run)}


@_json_errors
def run_progress(viewer: Viewer, request: Request) -> dict[str, Any]:
    return viewer.progress(request.path_params["rid"]).as_json()


@_json_errors
def run_diagnostics(viewer: Viewer, request: Request) -> dict[str, Any]:
    return viewer.diagnostics(request.path_params["rid"]).as_json()


@_json_errors
def run_draws(viewer: Viewer, request: Request) -> dict[str, Any]:
    rid = request.path_params["rid"]
    run = viewer.source.run(rid)
    query = request.query_params
    var, is_stat = _variable(run, query.get("var", ""), query.get("group", "posterior"))
    size = 1
    for s in var.shape:
        size *= int(s)
    element = _int(query.get("element", "0"), "element", 0, size - 1)
    points = _int(query.get("points", str(DEFAULT_POINTS)), "points", 10, MAX_POINTS)

    progress = viewer.progress(rid)
    chains = progress.update()
    handles = {c.cmeta.chain_number: c for c in run.get_chains()}
    traces, posterior = [], []
    for p in chains:
        chain = handles[p.number]
        key = (rid, is_stat, var.name, element, p.number)
        values = viewer.series.get(key, chain, var, element, p.length, is_stat=is_stat)
        trace: dict[str, Any] = {"chain": p.number, "draws": p.length, "warmup": p.warmup}
        trace.update(minmax_trace(values, points))
        if progress.diverging_stat:
            trace["divergent"] = markers(values, p.divergent)
        traces.append(trace)
        posterior.append(values[p.warmup :])
    return {
        "var": var.name,
        "group": "sample_stats" if is_stat else "posterior",
        "element": element,
        "points": points,
        "traces": traces,
        "rank": rank_histograms(posterior),
        "density": densities(posterior),
    }


def _variable(run: Run, name: str, group: str):
    if group not in ("posterior", "sample_stats"):
        raise BadRequest(f"group must be 'posterior' or 'sample_stats', not {group!r}.")
    is_stat = group == "sample_stats"
    found = {v.name: v for v in (run.meta.sample_stats if is_stat else run.meta.variables)}
    if name not in found:
        raise BadRequest(f"Run {run.meta.rid} has no {group} variable {name!r}.")
    if not plottable(found[name]):
        raise BadRequest(f"{name!r} has no fixed numeric shape to plot.")
    return found[name], is_stat


def _int(text: str, what: str, lo: int, hi: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise BadRequest(f"{what} must be an integer, not {text!r}.") from None
    if not lo <= value <= hi:
        raise BadRequest(f"{what} must be between {lo} and {hi}, not {value}.")
    return value


def download(request: Request) -> Response:
    """The run as a zip archive, made like ``mcbackend export`` into a temporary file."""
    viewer: Viewer = request.app.state.viewer
    with viewer.source.access():
        try:
            run = viewer.source.run(request.path_params["rid"])
        except RunNotFoundError as ex:
            return JSONResponse({"error": str(ex)}, status_code=404)
        folder = tempfile.mkdtemp(prefix="mcbackend-viewer-")
        path = os.path.join(folder, f"{run.meta.rid}.zip")
        export_archive(run, path)
    return FileResponse(
        path,
        media_type="application/zip",
        filename=f"{run.meta.rid}.zip",
        background=BackgroundTask(_remove, folder, path),
    )


def _remove(folder: str, path: str) -> None:
    os.remove(path)
    os.rmdir(folder)


def api_routes() -> list[Route]:
    return [
        Route("/api/runs", list_runs),
        Route("/api/runs/{rid}", run_info),
        Route("/api/runs/{rid}/progress", run_progress),
        Route("/api/runs/{rid}/draws", run_draws),
        Route("/api/runs/{rid}/diagnostics", run_diagnostics),
        Route("/runs/{rid}/download", download),
    ]
