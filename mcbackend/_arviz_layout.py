"""Which stored variables make up each variable of a sampled ArviZ group, its name and dims.

One mapping for every reader and writer that lays a run out as ArviZ data:
``Run.to_inferencedata`` and Zarr layout v2 (its arrays), so a plain xarray reader of a Zarr
run and ``to_inferencedata`` agree by construction. A PyMC run is laid out as PyMC's DataTree
(``_pymc_layout``): stats renamed, a stat several samplers report stacked along a last axis,
warm-up markers and ``warning`` left out; any other run shows every stored variable as it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ._pymc_layout import is_pymc_run, posterior_names, stat_layout
from ._validation import VariableSpec, specs_by_name
from .codec import Section
from .meta import RunMeta, Variable

__all__ = ["GroupMember", "hidden_variables", "sampled_layout", "stored_member", "tree_name"]


@dataclass(frozen=True)
class GroupMember:
    """A variable of a sampled group: ``(chain, draw, *shape)`` values from one stored
    variable, or from several of one shape stacked along a last axis (``stacked``)."""

    name: str
    parts: tuple[VariableSpec, ...]
    #: Dims after ``chain, draw``.
    dims: tuple[str, ...]

    @property
    def stacked(self) -> bool:
        return len(self.parts) > 1

    @property
    def is_ragged(self) -> bool:
        """Not an array of fixed shape: a part of dynamic shape, or parts of unequal shapes."""
        return any(p.is_ragged for p in self.parts) or len({p.shape for p in self.parts}) > 1

    @property
    def is_str(self) -> bool:
        return any(p.is_str for p in self.parts)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one draw: the parts' own, plus the stacking axis."""
        first = self.parts[0].shape
        return (*first, len(self.parts)) if self.stacked else first

    @property
    def dtype(self) -> np.dtype:
        """The parts' common type (``np.stack``'s, as ``to_inferencedata`` gives it)."""
        return np.result_type(*(p.dtype for p in self.parts))


def sampled_layout(
    meta: RunMeta, section: Section, run_attrs: Mapping[str, object], *, as_pymc: bool = True
) -> list[GroupMember]:
    """The variables of the posterior (``Section.DRAWS``) or sample_stats (``Section.STATS``)
    group, in stored order; ``run_attrs`` are the run's attributes as Python values.
    ``as_pymc=False``: every stored variable as it is, even of a PyMC run (how Zarr v2 runs
    written before mcbackend laid PyMC runs out as PyMC are stored)."""
    stored = meta.sample_stats if section is Section.STATS else meta.variables
    specs = specs_by_name(stored, "sample stat" if section is Section.STATS else "variable")
    named = {v.name: list(v.dims) for v in stored if _has_dims(v)}
    stats = specs_by_name(meta.sample_stats, "sample stat")
    if not as_pymc or not is_pymc_run(stats, run_attrs):
        groups = {name: [name] for name in specs}
    elif section is Section.STATS:
        groups = stat_layout(specs)
    else:
        groups = {name: [name] for name in posterior_names(specs, run_attrs)}
    members = []
    for name, parts in groups.items():
        part_specs = tuple(specs[p] for p in parts)
        if len(parts) == 1:
            spec = part_specs[0]
            ndim = len(spec.shape) if spec.is_rigid or spec.is_str else 0
            dims = _dims_of(name, ndim, {name: named[parts[0]]} if parts[0] in named else {})
        else:
            dims = _dims_of(name, len(part_specs[0].shape) + 1, {})
        members.append(GroupMember(name, part_specs, tuple(dims)))
    return members


def hidden_variables(
    meta: RunMeta, section: Section, members: Sequence[GroupMember]
) -> list[Variable]:
    """The stored variables of ``section`` none of ``members`` shows, in stored order."""
    shown = {p.name for m in members for p in m.parts}
    stored = meta.sample_stats if section is Section.STATS else meta.variables
    return [v for v in stored if v.name not in shown]


def stored_member(var: Variable) -> GroupMember:
    """A stored variable as a member of its own, under its stored name and dims."""
    spec = VariableSpec.from_variable(var)
    ndim = len(spec.shape) if spec.is_rigid or spec.is_str else 0
    dims = _dims_of(var.name, ndim, {var.name: list(var.dims)} if _has_dims(var) else {})
    return GroupMember(var.name, (spec,), tuple(dims))


def _has_dims(var: Variable) -> bool:
    return bool(var.dims) and len(var.dims) == len(var.shape) and not var.undefined_ndim


def tree_name(name: str) -> str:
    """DataTree variables cannot contain '/', so it is written '%2F' (and '%' as '%25')."""
    return name.replace("%", "%25").replace("/", "%2F") if "/" in name else name


def _dims_of(name: str, ndim: int, dims: Mapping[str, list[str]]) -> list[str]:
    named = dims.get(name, [])
    if len(named) == ndim:
        return list(named)
    return [f"{tree_name(name)}_dim_{i}" for i in range(ndim)]
