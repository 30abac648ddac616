"""JSON descriptions of runs: the row of the runs page and the metadata of the run page."""

from __future__ import annotations

import datetime
import math
import time
from typing import Any

import numpy as np

from .._inferencedata import attributes_to_python
from ..core import Run
from ..meta import Variable
from .plots import element_labels

__all__ = ["RunSizes", "run_metadata", "plottable", "to_json_value", "SAMPLER_KEYS"]

#: Attributes shown as the sampler's settings (PyMC records these; others may too).
SAMPLER_KEYS = ("sampler", "inference_library", "tune", "draws", "chains", "cores")
#: Seconds a run's measured size is reused.
SIZE_TTL = 10.0
MAX_COORD_VALUES = 200


def plottable(var: Variable) -> bool:
    """Rigid numeric variables and stats can be plotted (one element at a time)."""
    shape = [int(s) for s in var.shape]
    return (
        not var.undefined_ndim and all(s > 0 for s in shape) and np.dtype(var.dtype).kind in "fiub"
    )


def run_metadata(run: Run, created_at: datetime.datetime | None, fmt: str) -> dict[str, Any]:
    attrs = {k: to_json_value(v) for k, v in attributes_to_python(run.meta.attributes).items()}
    coords = run.coords
    return {
        "rid": run.meta.rid,
        "created_at": created_at.isoformat() if created_at else None,
        "format": fmt,
        "sampler": {k: attrs[k] for k in SAMPLER_KEYS if k in attrs},
        "attributes": {k: v for k, v in attrs.items() if k not in SAMPLER_KEYS},
        "coords": {
            name: {"size": len(values), "values": to_json_value(values[:MAX_COORD_VALUES])}
            for name, values in coords.items()
        },
        "variables": [_variable(v, coords, "posterior") for v in run.meta.variables],
        "sample_stats": [_variable(v, coords, "sample_stats") for v in run.meta.sample_stats],
        "data": [
            {"name": d.name, "dims": list(d.dims), "observed": bool(d.is_observed)}
            for d in run.meta.data
        ],
    }


def _variable(var: Variable, coords: dict[str, np.ndarray], group: str) -> dict[str, Any]:
    can_plot = plottable(var)
    return {
        "name": var.name,
        "group": group,
        "dtype": var.dtype,
        "shape": None if var.undefined_ndim else [int(s) for s in var.shape],
        "dims": list(var.dims),
        "deterministic": bool(var.is_deterministic),
        "plottable": can_plot,
        "elements": element_labels(var, coords) if can_plot else [],
    }


class RunSizes:
    """Bytes each run takes on storage (None where the backend cannot tell), measured at most
    every SIZE_TTL seconds per run: listing a large S3 run is not free."""

    def __init__(self) -> None:
        self._sizes: dict[str, tuple[float, int | None]] = {}

    def __call__(self, run: Run) -> int | None:
        at, size = self._sizes.get(run.meta.rid, (-math.inf, None))
        if time.monotonic() - at >= SIZE_TTL:
            size = _measure(run)
            self._sizes[run.meta.rid] = (time.monotonic(), size)
        return size


def _measure(run: Run) -> int | None:
    location = getattr(run, "location", None)
    if location is not None:
        try:
            return int(location.fs.du(location.path))
        except OSError:
            return None
    backend = getattr(run, "_backend", None)
    client = getattr(backend, "client", None)
    if client is None:
        return None
    tables = [f"{run.meta.rid}_chain_{c.cmeta.chain_number}" for c in run.get_chains()]
    try:
        rows = client.execute(
            "SELECT sum(bytes) FROM system.parts WHERE active AND database = currentDatabase() "
            "AND table IN %(tables)s",
            {"tables": tuple(tables) or ("",)},
        )
    except Exception:
        return None
    return int(rows[0][0] or 0)


def to_json_value(value: Any) -> Any:
    """Attribute and coordinate values as JSON: arrays as lists, dates as ISO text, NaN as
    null, anything else as text."""
    if isinstance(value, np.ndarray):
        return [to_json_value(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [to_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    return str(value)
