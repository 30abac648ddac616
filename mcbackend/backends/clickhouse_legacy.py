"""Reading runs written by published mcbackend 0.5.x (read-only).

Its layout: one row per run in ``runs (created_at, rid, proto)`` (``proto``: the ``RunMeta``
in base64 with line breaks), and one ``TinyLog`` table per chain named ``<rid>_chain_<n>``
with ``_draw_idx`` and a column per variable (``__stat_<name>`` per stat) whose type nests
``Array(...)`` once per dimension. There is no ``chains`` table: chains are the tables
named after the run. Runs written by this mcbackend have a claim table ``__mcb_run_<rid>``;
a run without one is a 0.5.x run.
"""

from __future__ import annotations

import re

import numpy as np

from .. import codec
from .._validation import VariableSpec
from ..columns import as_object_array

__all__ = ["chain_tables", "legacy_values"]


def chain_tables(rid: str) -> tuple[re.Pattern[str], str]:
    """A pattern matching exactly the chain tables of run ``rid``, and their common prefix."""
    prefix = f"{rid}_chain_"
    return re.compile(re.escape(prefix) + r"(0|[1-9][0-9]*)"), prefix


def legacy_values(spec: VariableSpec, raw: list, n: int) -> np.ndarray:
    """Values of one 0.5.x column (nested lists per draw) as ``get_draws`` returns them."""
    dtype = str if spec.is_str else spec.dtype
    values = [np.asarray(v, dtype=dtype) for v in raw]
    if spec.is_rigid:
        if not values:
            return np.empty((0, *spec.shape), dtype=spec.dtype)
        return np.stack(values).reshape(n, *spec.shape)
    if spec.is_str and not spec.is_ragged:  # as this version's reads return strings
        return codec.str_draws(codec.str_rows(values, spec.shape))
    return as_object_array(values)
