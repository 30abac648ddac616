"""Conversion of a ``Run`` into ArviZ 1.x data: an ``xarray.DataTree`` with one group per role.

Draws of fixed-shape variables stay in storage until xarray needs them (``LazyDraws``): then
only the chains and draws asked for are read, through ``Chain.get_draws``, whatever the backend.
"""

from __future__ import annotations

import datetime
import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import betterproto2
import numpy as np
import xarray as xr
from xarray.backends import BackendArray
from xarray.core import indexing
from xarray.core.indexing import LazilyIndexedArray

from ._arviz_layout import GroupMember, _dims_of, sampled_layout, tree_name
from ._pymc_layout import PERF_DIFF, PERF_START, group_attrs, is_pymc_run, sampling_span
from ._validation import VariableSpec, specs_by_name
from .codec import Section
from .npproto.utils import ndarray_to_numpy

if TYPE_CHECKING:
    from .core import Chain, Run
    from .meta import ExtendedValue

_log = logging.getLogger(__name__)

WARMUP_STATS = ("in_warmup", "tune")


def run_to_datatree(run: Run, *, equalize_chain_lengths: bool = True) -> xr.DataTree:
    chains = sorted(run.get_chains(), key=lambda c: c.cmeta.chain_number)
    lengths = [len(c) for c in chains]
    if len(set(lengths)) > 1:
        detail = {c.cmeta.chain_number: n for c, n in zip(chains, lengths)}
        if not equalize_chain_lengths:
            raise ValueError(
                f"Chains vary in length {detail}; pass equalize_chain_lengths=True "
                "to truncate them to the shortest."
            )
        _log.warning("Chains vary in length %s; truncating to the shortest.", detail)
    length = min(lengths, default=0)
    stat = find_warmup_stat([s.name for s in run.meta.sample_stats])
    if stat is None:
        warnings.warn(
            "No 'in_warmup' or 'tune' stat found; treating all draws as posterior.",
            UserWarning,
            stacklevel=3,
        )
    splits = [_warmup_split(chain, stat, length) for chain in chains]
    n_warmup = min((s.stop for s in splits), default=0)
    n_posterior = min((length - s.stop for s in splits), default=0)
    warmup = [slice(0, n_warmup) for _ in splits]
    posterior = [slice(s.stop, s.stop + n_posterior) for s in splits]

    stats = specs_by_name(run.meta.sample_stats, "sample stat")
    run_attrs = attributes_to_python(run.meta.attributes)
    from_pymc = is_pymc_run(stats, run_attrs)
    layout = {section: sampled_layout(run.meta, section, run_attrs) for section in Section}
    chain_numbers = [c.cmeta.chain_number for c in chains]
    coords = run.coords
    dims = run.dims

    def sampled(section, slices):
        ds = _sampled_group(chains, layout[section], slices, section, coords)
        return ds.assign_coords(chain=chain_numbers, draw=np.arange(ds.sizes.get("draw", 0)))

    groups: dict[str, xr.Dataset] = {
        "posterior": sampled(Section.DRAWS, posterior),
        "sample_stats": sampled(Section.STATS, posterior),
    }
    if n_warmup:
        groups["warmup_posterior"] = sampled(Section.DRAWS, warmup)
        groups["warmup_sample_stats"] = sampled(Section.STATS, warmup)
    groups["constant_data"] = _data_group(run.constant_data, dims, coords)
    groups["observed_data"] = _data_group(run.observed_data, dims, coords)
    # PyMC's DataTree has an observed_data group even when it is empty; no other empty group.
    keep_empty = {"posterior", "observed_data"} if from_pymc else {"posterior"}
    groups = {k: ds for k, ds in groups.items() if ds.data_vars or k in keep_empty}
    run_attrs.setdefault("run_id", run.meta.rid)
    if from_pymc:
        sampling_time = _sampling_time(chains, stats, length)
        for name, ds in groups.items():
            ds.attrs.update(
                group_attrs(
                    run_attrs,
                    sampled=name not in ("constant_data", "observed_data"),
                    sampling_time=sampling_time,
                    tuning_steps=n_warmup,
                )
            )
    else:
        for ds in groups.values():
            ds.attrs.update(run_attrs)
    tree = xr.DataTree.from_dict(groups)
    tree.attrs.update(run_attrs)
    return tree


def _sampling_time(
    chains: Sequence[Chain], stats: Mapping[str, VariableSpec], length: int
) -> float | None:
    """Wall time of sampling, from PyMC's per-draw ``perf_counter_start``/``_diff`` stats (what
    PyMC measures around its sampling loop; None without them)."""
    if PERF_START not in stats or PERF_DIFF not in stats or not length:
        return None
    starts = np.concatenate([c.get_stats(PERF_START, slice(0, length)) for c in chains])
    diffs = np.concatenate([c.get_stats(PERF_DIFF, slice(0, length)) for c in chains])
    span = sampling_span(starts, diffs)
    return None if span is None else span[1] - span[0]


def _warmup_split(chain: Chain, stat: str | None, length: int) -> slice:
    """The leading warm-up draws of a chain, from its warm-up ``stat`` (none: no warm-up)."""
    if stat is None:
        return slice(0, 0)
    mask = np.asarray(chain.get_stats(stat, slice(0, length)), dtype=bool)
    n_warmup = int(np.argmin(mask)) if not mask.all() else len(mask)
    if mask[n_warmup:].any():
        raise ValueError(
            f"Chain {chain.cmeta.chain_number}: the warm-up stat {stat!r} marks draws after "
            "posterior draws as warm-up; warm-up must be a leading block."
        )
    return slice(0, n_warmup)


def find_warmup_stat(stat_names: Sequence[str]) -> str | None:
    """``in_warmup`` (PyMC >= 6), else ``tune``, each possibly prefixed like ``sampler_0__``."""
    for wanted in WARMUP_STATS:
        for name in stat_names:
            if name == wanted:
                return name
        for name in sorted(stat_names):
            if name.endswith(f"__{wanted}"):
                return name
    return None


def _sampled_group(
    chains: Sequence[Chain],
    members: Sequence[GroupMember],
    slices: Sequence[slice],
    section: Section,
    coords: Mapping[str, np.ndarray],
) -> xr.Dataset:
    """A (chain, draw, ...) group of ``members`` (``_arviz_layout``): each read from its one
    stored variable, or from several stacked along a last axis (PyMC's layout of a stat
    several samplers report)."""
    data_vars = {}
    n = min((s.stop - s.start for s in slices), default=0)
    for member in members:
        if not member.stacked:
            values = _read_group_values(chains, member.parts[0], slices, n, section)
        else:
            values = np.stack(
                [
                    np.asarray(_read_group_values(chains, p, slices, n, section))
                    for p in member.parts
                ],
                axis=-1,
            )
        name = tree_name(member.name)
        ndim = len(values.shape) - 2
        dims = list(member.dims) if len(member.dims) == ndim else _dims_of(name, ndim, {})
        data_vars[name] = xr.Variable(["chain", "draw", *dims], values)
    return _with_coords(xr.Dataset(data_vars), coords)


def _read_group_values(
    chains: Sequence[Chain], spec: VariableSpec, slices: Sequence[slice], n: int, section: Section
) -> Any:
    """(chain, draw, ...) values: lazily for numbers, eagerly for str and dynamic shapes."""
    if spec.is_rigid:
        return LazilyIndexedArray(LazyDraws(chains, spec, [s.start for s in slices], n, section))
    is_stat = section is Section.STATS
    reads = [
        (chain.get_stats if is_stat else chain.get_draws)(spec.name, slice(s.start, s.start + n))
        for chain, s in zip(chains, slices)
    ]
    if spec.is_str and not spec.is_ragged:
        if not chains:
            return np.empty((0, n, *spec.shape), dtype="<U1")
        return np.stack(reads)
    values = np.empty((len(chains), n), dtype=object)
    for c, read in enumerate(reads):
        values[c, :] = list(read)
    return values


class LazyDraws(BackendArray):
    """(chain, draw, *shape) values of one variable, read through ``Chain.get_draws`` only
    when xarray needs them, and only the chains and draws it asks for."""

    def __init__(
        self,
        chains: Sequence[Chain],
        spec: VariableSpec,
        starts: list[int],
        n: int,
        section: Section,
    ) -> None:
        self.chains = chains
        self.spec = spec
        self.starts = starts
        self.shape = (len(chains), n, *spec.shape)
        self.dtype = spec.dtype
        self.section = section

    def __getitem__(self, key: indexing.ExplicitIndexer) -> np.ndarray:
        return indexing.explicit_indexing_adapter(
            key, self.shape, indexing.IndexingSupport.BASIC, self._read
        )

    def _read(self, key: tuple) -> np.ndarray:
        chain_key, draw_key, *rest = key
        chain_ids = np.arange(len(self.chains))[chain_key]
        draw_ids = np.arange(self.shape[1])[draw_key]
        blocks = [
            self._read_chain(int(c), np.atleast_1d(draw_ids)) for c in np.atleast_1d(chain_ids)
        ]
        out = (
            np.stack(blocks)
            if blocks
            else np.empty((0, len(np.atleast_1d(draw_ids)), *self.spec.shape), self.dtype)
        )
        if np.ndim(draw_ids) == 0:
            out = out[:, 0]
        if np.ndim(chain_ids) == 0:
            out = out[0]
        return out[(Ellipsis, *rest)] if rest else out

    def _read_chain(self, c: int, draws: np.ndarray) -> np.ndarray:
        if not len(draws):
            return np.empty((0, *self.spec.shape), self.dtype)
        chain = self.chains[c]
        lo, hi = int(draws.min()), int(draws.max()) + 1
        read = chain.get_stats if self.section is Section.STATS else chain.get_draws
        block = read(self.spec.name, slice(self.starts[c] + lo, self.starts[c] + hi))
        return block[draws - lo]


def _with_coords(ds: xr.Dataset, coords: Mapping[str, np.ndarray]) -> xr.Dataset:
    """Every dimension indexed, as ArviZ does: by the run's coordinate when its length fits,
    else by ``0..n-1`` (PyMC's ``x_dim_0 = [0, 1, 2]``)."""
    return ds.assign_coords(
        {
            dim: coords[dim] if dim in coords and len(coords[dim]) == size else np.arange(size)
            for dim, size in ds.sizes.items()
            if isinstance(dim, str)
        }
    )


def _data_group(
    data: Mapping[str, np.ndarray],
    dims: Mapping[str, list[str]],
    coords: Mapping[str, np.ndarray],
) -> xr.Dataset:
    ds = xr.Dataset(
        {tree_name(n): xr.Variable(_dims_of(n, np.ndim(v), dims), v) for n, v in data.items()}
    )
    return _with_coords(ds, coords)


def attributes_to_python(attributes: Mapping[str, ExtendedValue]) -> dict[str, Any]:
    """Plain Python values for ``RunMeta.attributes`` (timestamps as ISO strings, ints as
    ints, 0-d arrays as Python scalars)."""
    return {key: extended_value_to_python(value) for key, value in attributes.items()}


def extended_value_to_python(value: ExtendedValue) -> Any:
    kind, content = betterproto2.which_one_of(value, "kind")
    if content is None or kind == "null_value":
        return None
    if kind == "timestamp_value":
        return content.isoformat()
    if kind == "duration_value":
        return content.total_seconds()
    if kind == "ndarray_value":
        arr = ndarray_to_numpy(content)
        return arr.item() if arr.ndim == 0 and arr.dtype.kind in "biuf" else arr
    if kind in ("struct_value", "list_value"):
        return content.to_dict()
    return content


def python_to_extended_value(value: Any) -> ExtendedValue:
    """The ``ExtendedValue`` for a Python scalar, str, datetime, timedelta or array."""
    from .meta import ExtendedValue
    from .npproto.utils import ndarray_from_numpy

    if value is None:
        from .pb.google.protobuf import NullValue

        return ExtendedValue(null_value=NullValue.NULL_VALUE)
    if isinstance(value, (bool, np.bool_)):
        return ExtendedValue(bool_value=bool(value))
    if isinstance(value, (int, np.integer)) and -(2**63) <= value < 2**63:
        # A 0-d int64 array, as a double would read back as 500.0
        return ExtendedValue(ndarray_value=ndarray_from_numpy(np.asarray(value, dtype=np.int64)))
    if isinstance(value, (int, float, np.integer, np.floating)):
        return ExtendedValue(number_value=float(value))
    if isinstance(value, str):
        return ExtendedValue(string_value=value)
    if isinstance(value, datetime.datetime):
        return ExtendedValue(timestamp_value=value)
    if isinstance(value, datetime.timedelta):
        return ExtendedValue(duration_value=value)
    return ExtendedValue(ndarray_value=ndarray_from_numpy(np.asarray(value)))
