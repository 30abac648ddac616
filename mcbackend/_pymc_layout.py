"""How PyMC lays out a run in its DataTree, so a stored PyMC run reads back as ``pm.sample``
returns it: stat names and per-sampler layout, group attributes. Needs no PyMC installed.

PyMC stores stats per sampler (``sampler_<i>__<name>``, by ``pymc.backends.mcbackend``); its
DataTree names them by ``<name>`` with a few renamed, and stacks a name reported by several
samplers of a compound step along a last ``<name>_dim_0`` axis.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

#: ``pymc.backends.arviz.DataTreeConverter.sample_stats_to_xarray``'s ``rename_key`` (a local
#: variable there, so not importable; ``tests/test_fidelity.py`` checks names against PyMC's).
STAT_RENAMES = {
    "model_logp": "lp",
    "mean_tree_accept": "acceptance_rate",
    "depth": "tree_depth",
    "tree_size": "n_steps",
}
#: Stats PyMC's returned DataTree leaves out: the warm-up markers, and ``warning`` (dropped
#: unless ``pm.sample(keep_warning_stat=True)``; stored runs keep it as JSON text).
DROPPED_STATS = {"tune", "in_warmup", "warning"}

#: The stats PyMC times each draw with; the run's ``sampling_time`` spans them.
PERF_START, PERF_DIFF = "sampler_0__perf_counter_start", "sampler_0__perf_counter_diff"

_SAMPLER_STAT = re.compile(r"^sampler_(\d+)__(.+)$")


def is_pymc_run(stat_names: Iterable[str], attributes: Mapping[str, Any]) -> bool:
    """Stored by PyMC (``TraceBackend`` or PyMC's own adapter): per-sampler stat names."""
    names = list(stat_names)
    if attributes.get("inference_library") not in (None, "pymc"):
        return False
    return bool(names) and any(_SAMPLER_STAT.match(n) for n in names)


def stat_layout(stat_names: Iterable[str]) -> dict[str, list[str]]:
    """DataTree name -> the stored stats it is made of, one per sampler reporting it (in
    sampler order); stats PyMC's DataTree leaves out are left out."""
    layout: dict[str, list[tuple[int, str]]] = {}
    for stored in stat_names:
        match = _SAMPLER_STAT.match(stored)
        sampler, name = (int(match.group(1)), match.group(2)) if match else (0, stored)
        if name in DROPPED_STATS:
            continue
        layout.setdefault(STAT_RENAMES.get(name, name), []).append((sampler, stored))
    return {name: [s for _, s in sorted(parts)] for name, parts in layout.items()}


def sampling_span(starts: Any, diffs: Any) -> tuple[float, float] | None:
    """(first start, last end) of draws timed by ``PERF_START``/``PERF_DIFF`` (None: no draw)."""
    starts = np.asarray(starts, dtype=float)
    if not len(starts):
        return None
    return float(np.nanmin(starts)), float(np.nanmax(starts + np.asarray(diffs, dtype=float)))


def posterior_names(names: Iterable[str], attributes: Mapping[str, Any]) -> list[str]:
    """The variables PyMC's posterior shows: transformed values (``sigma_log__``) only when
    ``pm.sample`` was asked for them (run attribute ``include_transformed``)."""
    if attributes.get("include_transformed"):
        return list(names)
    return [n for n in names if not is_transformed_name(n)]


def is_transformed_name(name: str) -> bool:
    """``pymc.util.is_transformed_name`` (the same rule, without importing PyMC to read)."""
    return name.endswith("__") and name.count("_") >= 3


def group_attrs(
    run_attrs: Mapping[str, Any], *, sampled: bool, sampling_time: float | None, tuning_steps: int
) -> dict[str, Any]:
    """The attributes PyMC's DataTree groups carry (``arviz_base.make_attrs`` with PyMC as the
    inference library, plus ``sampling_time``/``tuning_steps`` on the sampled groups). The
    inference library version is the one that sampled, not the one reading."""
    attrs: dict[str, Any] = {"inference_library": "pymc"}
    if run_attrs.get("pymc_version"):
        attrs["inference_library_version"] = run_attrs["pymc_version"]
    if sampled:
        if sampling_time is not None:
            attrs["sampling_time"] = sampling_time
        attrs["tuning_steps"] = int(tuning_steps)
    return _make_attrs(attrs, sample_dims=["chain", "draw"] if sampled else [])


def _make_attrs(attrs: dict[str, Any], sample_dims: list[str]) -> dict[str, Any]:
    """``arviz_base.make_attrs`` (what PyMC calls), or the same without ArviZ installed."""
    try:
        from arviz_base import make_attrs
    except ImportError:
        made = {
            "created_at": datetime.datetime.now(datetime.UTC).isoformat(),
            "creation_library": "ArviZ",
            "creation_library_language": "Python",
            "sample_dims": sample_dims,
        }
        return {**made, **attrs}
    return make_attrs(attrs, sample_dims=sample_dims)
