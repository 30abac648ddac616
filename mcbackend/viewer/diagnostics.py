"""The ArviZ summary (mean, sd, HDI, MCSE, ESS bulk/tail, R-hat) of a run's posterior.

It reads the run through ``Run.to_inferencedata`` (lazy: only the posterior variables summarised
are read). Runs with more values than ``MAX_VALUES`` are summarised on every k-th draw, and
the answer says so; a summary is reused until a chain grows.
"""

from __future__ import annotations

import math
import threading
import warnings
from typing import Any

import numpy as np

from ..core import Run
from ..inferencedata import tree_name
from ..validation import specs_by_name

__all__ = ["Diagnostics"]

#: Posterior values (chains x draws x elements) summarised without thinning.
MAX_VALUES = 4_000_000


class Diagnostics:
    """The summary of one run, recomputed only when its chain lengths change."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self._lock = threading.Lock()
        self._key: tuple | None = None
        self._result: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        with self._lock:
            key = tuple(len(c) for c in self.run.get_chains())
            if key != self._key or self._result is None:
                self._result = summarise(self.run)
                self._key = key
            return self._result


def summarise(run: Run, max_values: int = MAX_VALUES) -> dict[str, Any]:
    import arviz as az

    specs = specs_by_name(run.meta.variables, "variable")
    names = [tree_name(n) for n, s in specs.items() if s.is_rigid and s.dtype.kind in "fiub"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tree = run.to_inferencedata()
    posterior = tree["posterior"].to_dataset() if "posterior" in tree.children else None
    draws = int(posterior.sizes.get("draw", 0)) if posterior is not None else 0
    chains = int(posterior.sizes.get("chain", 0)) if posterior is not None else 0
    empty = {"chains": chains, "draws": draws, "thin": 1, "columns": [], "rows": []}
    if not names or draws < 4 or chains < 1:
        return {**empty, "note": "Not enough posterior draws yet (warm-up or just started)."}
    elements = sum(math.prod(specs[n].shape) for n in specs if tree_name(n) in names)
    thin = max(1, math.ceil(chains * draws * elements / max_values))
    if thin > 1:
        posterior = posterior.isel(draw=slice(None, None, thin))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # R-hat of one chain, constant draws...
        table = az.summary(posterior, var_names=names, ci_kind="hdi")
    columns = [str(c) for c in table.columns]
    rows = [
        {"label": str(label), "values": [_number(v) for v in row]}
        for label, row in zip(table.index, table.to_numpy())
    ]
    note = (
        f"Summarised every {thin}th draw ({chains} x {math.ceil(draws / thin)} of {draws})."
        if thin > 1
        else ""
    )
    return {
        "chains": chains,
        "draws": draws,
        "thin": thin,
        "columns": columns,
        "rows": rows,
        "note": note,
    }


def _number(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None
