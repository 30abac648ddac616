"""The ArviZ summary (mean, sd, HDI, MCSE, ESS bulk/tail, R-hat) of a run's posterior.

It reads the run through ``Run.to_inferencedata`` (lazy: only the posterior variables summarised
are read). ArviZ's ESS and R-hat take seconds per million values, so runs with more than
``MAX_VALUES`` posterior values are summarised on every k-th draw (the answer says so: ESS
then counts thinned draws). A summary is reused until a chain grows, and while a run samples
it is recomputed at most every ``MIN_INTERVAL`` seconds or twice the time it took.
"""

from __future__ import annotations

import math
import threading
import time
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from .._inferencedata import _warmup_split, find_warmup_stat, tree_name
from .._validation import VariableSpec, specs_by_name
from ..core import Chain, Run
from .plots import BLOCK_BYTES

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["Diagnostics"]

#: Posterior values (chains x draws x elements) summarised without thinning.
MAX_VALUES = 200_000
MIN_INTERVAL = 2.0


class Diagnostics:
    """The summary of one run, recomputed only when its chain lengths change."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self._lock = threading.Lock()
        self._key: tuple | None = None
        self._result: dict[str, Any] | None = None
        self._computed_at = -math.inf
        self._took = 0.0

    def as_json(self) -> dict[str, Any]:
        with self._lock:
            key = tuple(len(c) for c in self.run.get_chains())
            recent = time.monotonic() - self._computed_at < max(MIN_INTERVAL, 2 * self._took)
            if self._result is None or (key != self._key and not recent):
                start = time.monotonic()
                self._result = {**summarise(self.run), "lengths": list(key)}
                self._key = key
                self._computed_at = time.monotonic()
                self._took = self._computed_at - start
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
    if posterior is not None:  # PyMC runs show transformed values only on request
        names = [n for n in names if n in posterior.data_vars]
    empty = {"chains": chains, "draws": draws, "thin": 1, "columns": [], "rows": []}
    if posterior is None or not names or draws < 4 or chains < 1:
        return {**empty, "note": "Not enough posterior draws yet (warm-up or just started)."}
    elements = sum(math.prod(specs[n].shape) for n in specs if tree_name(n) in names)
    thin = max(1, math.ceil(chains * draws * elements / max_values))
    if thin > 1:
        chosen = {tree_name(n): s for n, s in specs.items() if tree_name(n) in names}
        posterior = _thinned_posterior(run, posterior, chosen, thin)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # R-hat of one chain, constant draws...
        table = az.summary(posterior, var_names=names, ci_kind="hdi")
    columns = [str(c) for c in table.columns]
    rows = [
        {"label": str(label), "values": [_number(v) for v in row]}
        for label, row in zip(table.index, table.to_numpy())
    ]
    note = (
        f"{chains} chains × {draws} posterior draws, summarised on every {thin}th draw "
        f"({math.ceil(draws / thin)} per chain; ESS counts those)."
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


def _thinned_posterior(
    run: Run, template: xr.Dataset, specs: dict[str, VariableSpec], thin: int
) -> xr.Dataset:
    """Every ``thin``-th posterior draw of ``specs``, laid out like ``template`` (the lazy
    posterior of ``to_inferencedata``), read a block at a time: no variable is read whole."""
    import xarray as xr

    chains = sorted(run.get_chains(), key=lambda c: c.cmeta.chain_number)
    stat = find_warmup_stat([s.name for s in run.meta.sample_stats])
    # Chains only grow, and a chain with posterior draws has a fixed warm-up: same starts.
    starts = [_warmup_split(c, stat, len(c)).stop for c in chains]
    n = int(template.sizes["draw"])
    data = {}
    for name, spec in specs.items():
        values = np.stack(
            [_read_thinned(c, spec, start, start + n, thin) for c, start in zip(chains, starts)]
        )
        data[name] = xr.Variable(template[name].dims, values)
    coords = {k: v for k, v in template.coords.items() if "draw" not in v.dims}
    return xr.Dataset(data, coords=coords).assign_coords(draw=np.arange(values.shape[1]))


def _read_thinned(chain: Chain, spec: VariableSpec, lo: int, hi: int, step: int) -> np.ndarray:
    draw_bytes = max(math.prod(spec.shape) * spec.dtype.itemsize, 1)
    rows = max(step, BLOCK_BYTES // draw_bytes // step * step)  # blocks start on picked draws
    blocks = [
        chain.get_draws(spec.name, slice(start, min(hi, start + rows)))[::step]
        for start in range(lo, hi, rows)
    ]
    return np.concatenate(blocks)


def _number(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None
