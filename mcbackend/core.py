"""The public API every backend implements: ``Backend`` -> ``Run`` -> ``Chain``.

Backends subclass these and implement the underscored hooks. The public methods here validate
input before any backend sees it, so bad input never reaches (or corrupts) stored data.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping, Sequence, Sized
from typing import TYPE_CHECKING, Any

import numpy as np

from ._validation import VariableSpec, specs_by_name, validate_values
from .codec import Section
from .errors import CorruptRunError, RunExistsError
from .meta import ChainMeta, RunMeta, Variable
from .npproto.utils import ndarray_to_numpy

if TYPE_CHECKING:
    import pandas
    import xarray

__all__ = [
    "MAX_UNSTORED_BYTES",
    "Backend",
    "Chain",
    "Run",
    "RunExistsError",
    "Section",
    "VariableSpec",
    "chain_id",
    "checked_unstored_bytes",
    "is_rigid",
    "positions",
    "read_positions",
    "runs_dataframe",
]


#: Default bound of the draws a chain keeps in memory while writing them fails (storage away):
#: beyond it ``append`` raises ``DrawNotKeptError``.
MAX_UNSTORED_BYTES = 256 << 20


def checked_unstored_bytes(value: Any) -> int:
    """``max_unstored_bytes`` of a backend, refused unless a number of bytes >= 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"max_unstored_bytes must be a number of bytes >= 0, got {value!r}.")
    return value


def is_rigid(shape: Sequence[int] | None) -> bool:
    """True when every draw has this shape. ``None``, -1 (and the legacy 0) mark dynamic sizes."""
    if shape is None:
        return False
    return all(s > 0 for s in shape)


def chain_id(meta: ChainMeta) -> str:
    """An identifier unique for the combination of run id and chain number."""
    return f"{meta.rid}_chain_{meta.chain_number}"


def positions(slc: slice, length: int) -> np.ndarray:
    """The draw indices a slice selects from a chain of ``length``."""
    return np.arange(*slc.indices(length))


def read_positions(idx: np.ndarray, read_range: Callable[[int, int], np.ndarray]) -> np.ndarray:
    """Draws ``idx`` (any order, as a slice selects them) from one contiguous range read."""
    lo, hi = (int(idx.min()), int(idx.max()) + 1) if len(idx) else (0, 0)
    return read_range(lo, hi)[idx - lo]


class Chain(Sized):
    """A handle on one Markov chain: append draws, read them back."""

    def __init__(self, cmeta: ChainMeta, rmeta: RunMeta) -> None:
        self.cmeta = cmeta
        self.rmeta = rmeta
        self._cid = chain_id(cmeta)
        self._variable_specs = specs_by_name(rmeta.variables, "variable")
        self._stat_specs = specs_by_name(rmeta.sample_stats, "sample stat")
        self._block_cache: dict[tuple[Section, str], tuple[int, np.ndarray]] = {}
        self._known_length = 0  # draws known to exist: they never go away
        #: Set on chains PyMC's own adapter writes: turns its pickled object stats into JSON
        #: (``mcbackend.pymc.prepare_bare_run``).
        self.object_stats: Any = None

    # ---- writing -------------------------------------------------------------------------

    def append(self, draw: Mapping[str, Any], stats: Mapping[str, Any] | None = None) -> None:
        """Append one iteration: values of every variable and, if the run has them, stats.

        Everything is validated before anything is stored; a bad draw raises and leaves
        the chain as it was. A stat left out (samplers skip some in some draws) is stored as
        its missing value: NaN for floats, 0, False, "" or an empty array.
        """
        bare = self.object_stats
        if bare is not None:
            stats = bare.store(stats or {})
        self._validate_and_append(draw, stats or {})
        if bare is not None and bare.appended():
            self.close()  # PyMC's own adapter never closes its chains: their last draw does

    def append_many(self, draws: Mapping[str, Any], stats: Mapping[str, Any] | None = None) -> None:
        """Append several iterations at once, given per variable (and stat): an array whose first
        axis counts the iterations, or a sequence of per-iteration values.

        The batch is validated as a whole before anything is stored: a bad value raises and
        none of the batch is kept. Much faster per draw than ``append`` for large batches.
        """
        n = _batch_length(draws, stats)
        values = _validate_columns(draws, self._variable_specs, "draws", n)
        stat_values = _validate_columns(
            stats or {}, self._stat_specs, "stats", n, fill_missing=True
        )
        if n:
            self._append_many(values, stat_values, n)

    def _validate_and_append(self, draw: Mapping[str, Any], stats: Mapping[str, Any]) -> None:
        """Validate one draw and store it; a refused value leaves the chain as it was.

        By default the validated values go to ``_append`` as dicts; chains that keep draws in
        ``ColumnStore``s validate them straight into their next row instead (fewer objects
        per draw).
        """
        values = validate_values(draw, self._variable_specs, "draw")
        stat_values = validate_values(stats, self._stat_specs, "stats", fill_missing=True)
        self._append(values, stat_values)

    def _append(self, draw: dict[str, np.ndarray], stats: dict[str, np.ndarray]) -> None:
        raise NotImplementedError()

    def _append_many(self, draws: dict[str, Any], stats: dict[str, Any], n: int) -> None:
        """Store ``n`` validated draws (arrays with a draw axis, or lists); default: one by one."""
        for i in range(n):
            self._append(
                {name: values[i] for name, values in draws.items()},
                {name: values[i] for name, values in stats.items()},
            )

    # ---- reading -------------------------------------------------------------------------

    def get_draws(self, var_name: str, slc: slice = slice(None)) -> np.ndarray:
        """Draws of a variable: one ``(draws, *shape)`` array for fixed shapes (``str`` as a
        ``<U`` array, as published mcbackend returns them), an object array of per-draw arrays
        for dynamic shapes."""
        spec = _lookup(self._variable_specs, var_name, "variable")
        return _fixed_str(self._get_values(spec, _check_slice(slc), section=Section.DRAWS), spec)

    def get_stats(self, stat_name: str, slc: slice = slice(None)) -> np.ndarray:
        """Values of a sampler statistic, like ``get_draws``."""
        spec = _lookup(self._stat_specs, stat_name, "sample stat")
        values = _fixed_str(self._get_values(spec, _check_slice(slc), section=Section.STATS), spec)
        bare = self.object_stats
        if bare is not None and stat_name in bare.names and bare.read_by_adapter():
            return bare.show(stat_name, values, range(len(self))[slc])
        return values

    def get_draws_at(self, idx: int, var_names: Sequence[str]) -> dict[str, np.ndarray]:
        """Values of the named variables in draw ``idx`` (negative counts from the end)."""
        specs = [_lookup(self._variable_specs, n, "variable") for n in var_names]
        values = self._get_values_at(self._check_index(idx), specs, section=Section.DRAWS)
        return _fixed_str_at(values, specs)

    def get_stats_at(self, idx: int, stat_names: Sequence[str]) -> dict[str, np.ndarray]:
        """Values of the named stats in draw ``idx``."""
        specs = [_lookup(self._stat_specs, n, "sample stat") for n in stat_names]
        idx = self._check_index(idx)
        values = _fixed_str_at(self._get_values_at(idx, specs, section=Section.STATS), specs)
        bare = self.object_stats
        if bare is not None and bare.read_by_adapter():
            for name in bare.names & values.keys():
                values[name] = bare.show(name, [values[name]], range(idx, idx + 1))[0]
        return values

    def _get_values(self, spec: VariableSpec, slc: slice, *, section: Section) -> np.ndarray:
        raise NotImplementedError()

    #: Bytes read at once by ``get_draws_at``/``get_stats_at`` and kept for the next calls
    #: (PyMC reads chains draw by draw). Stored draws never change, so the block stays valid.
    read_block_bytes: int = 4 << 20

    def _get_values_at(
        self, idx: int, specs: Iterable[VariableSpec], *, section: Section
    ) -> dict[str, np.ndarray]:
        specs = list(specs)
        cache = self._block_cache
        missing: dict[slice, list[VariableSpec]] = {}
        for spec in specs:
            start, block = cache.get((section, spec.name), (0, ()))
            if not start <= idx < start + len(block):
                draw_bytes = int(np.prod(spec.shape)) * spec.dtype.itemsize if spec.is_rigid else 64
                rows = int(np.clip(self.read_block_bytes // max(draw_bytes, 1), 1, 16384))
                start = idx - idx % rows
                missing.setdefault(slice(start, min(start + rows, len(self))), []).append(spec)
        for slc, group in missing.items():
            for name, block in self._get_many_values(group, slc, section=section).items():
                specs_of = self._stat_specs if section is Section.STATS else self._variable_specs
                cache[(section, name)] = (slc.start, _fixed_str(block, specs_of[name]))
        out = {}
        for spec in specs:
            start, block = cache[(section, spec.name)]
            value = block[idx - start]
            out[spec.name] = value.copy() if isinstance(value, np.ndarray) else np.asarray(value)
        return out

    def _get_many_values(
        self, specs: Sequence[VariableSpec], slc: slice, *, section: Section
    ) -> dict[str, np.ndarray]:
        """``_get_values`` of several variables; backends may read them concurrently."""
        return {s.name: self._get_values(s, slc, section=section) for s in specs}

    def _check_index(self, idx: int) -> int:
        if not isinstance(idx, (int, np.integer)) or isinstance(idx, bool):
            raise TypeError(f"Draw index must be an integer, got {idx!r}.")
        if 0 <= idx < self._known_length:
            return int(idx)  # no need to ask storage for the length again
        length = self._known_length = len(self)
        if not -length <= idx < length:
            raise IndexError(f"Draw index {idx} is out of range for chain of length {length}.")
        return int(idx) % length

    def __len__(self) -> int:
        raise NotImplementedError()

    # ---- lifecycle -----------------------------------------------------------------------

    def flush(self, wait: bool = True) -> None:
        """Persist buffered draws. A no-op for backends that write through.

        With ``wait=False`` a backend may write in the background; the next read, flush or
        close waits for that write.
        """

    def close(self) -> None:
        """Flush and release resources."""
        self.flush()

    # ---- convenience ---------------------------------------------------------------------

    @property
    def cid(self) -> str:
        """An identifier unique for the combination of run id and chain number."""
        return self._cid

    @property
    def variables(self) -> dict[str, Variable]:
        return {var.name: var for var in self.rmeta.variables}

    @property
    def sample_stats(self) -> dict[str, Variable]:
        return {var.name: var for var in self.rmeta.sample_stats}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.cid} with {len(self)} draws>"


class Run:
    """A handle on one MCMC run: its metadata and chains."""

    #: Set by ``Backend.init_run`` on runs PyMC's own adapter writes (``prepare_bare_run``).
    _bare_object_stats: Any = None

    def __init__(self, meta: RunMeta) -> None:
        self.meta = meta

    def init_chain(self, chain_number: int) -> Chain:
        """Create chain ``chain_number``; a number already in use is refused."""
        if not isinstance(chain_number, (int, np.integer)) or chain_number < 0:
            raise ValueError(f"Chain number must be a non-negative integer, got {chain_number!r}.")
        existing = {c.cmeta.chain_number for c in self.get_chains()}
        if int(chain_number) in existing:
            raise ValueError(
                f"Chain {chain_number} already exists in run '{self.meta.rid}'. "
                "Use get_chains() to continue it."
            )
        chain = self._init_chain(int(chain_number))
        bare = self._bare_object_stats
        chain.object_stats = bare.for_chain() if bare is not None else None
        return chain

    def _init_chain(self, chain_number: int) -> Chain:
        raise NotImplementedError()

    def get_chains(self) -> Sequence[Chain]:
        """All chains of this run, ordered by chain number."""
        raise NotImplementedError()

    def flush(self) -> None:
        for chain in self.get_chains():
            chain.flush()

    def verify(self) -> list[str]:
        """Check stored data against its checksums; a list of problems (empty: all good)."""
        return []

    def close(self) -> None:
        """Flush every chain and release resources."""
        for chain in self.get_chains():
            chain.close()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def rid(self) -> str:
        return self.meta.rid

    @property
    def coords(self) -> dict[str, np.ndarray]:
        return {c.name: ndarray_to_numpy(c.values) for c in self.meta.coordinates if c.values}

    @property
    def dims(self) -> dict[str, list[str]]:
        dims = {}
        for var in self.meta.variables:
            if len(var.dims) == len(var.shape) and var.dims and not var.undefined_ndim:
                dims[var.name] = list(var.dims)
        for dvar in self.meta.data:
            if dvar.dims:
                dims[dvar.name] = list(dvar.dims)
        return dims

    @property
    def constant_data(self) -> dict[str, np.ndarray]:
        return self._data(observed=False)

    @property
    def observed_data(self) -> dict[str, np.ndarray]:
        return self._data(observed=True)

    def _data(self, *, observed: bool) -> dict[str, np.ndarray]:
        values = {}
        for dvar in self.meta.data:
            if dvar.is_observed != observed:
                continue
            if dvar.value is None:  # init_run refuses such metadata: damaged storage
                raise CorruptRunError(
                    f"Data variable {dvar.name!r} of run {self.rid!r} has no value."
                )
            values[dvar.name] = ndarray_to_numpy(dvar.value)
        return values

    def to_inferencedata(self, *, equalize_chain_lengths: bool = True) -> xarray.DataTree:
        """ArviZ 1.x data (an ``xarray.DataTree``) with posterior, sample_stats, warm-up groups,
        constant_data and observed_data.

        Warm-up draws are split off by the ``in_warmup`` stat (``tune`` for older samplers).
        Chains of uneven length are truncated to the shortest, or refused when
        ``equalize_chain_lengths=False``.
        """
        from ._inferencedata import run_to_datatree

        return run_to_datatree(self, equalize_chain_lengths=equalize_chain_lengths)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.meta.rid} with {len(self.get_chains())} chains>"


class Backend:
    """Base class of every storage backend."""

    def init_run(self, meta: RunMeta) -> Run:
        """Register a new run; a run id already in use is refused."""
        from ._validation import validate_run_meta

        if self.closed:
            raise RuntimeError(f"{self!r} is closed; create a new backend to store more runs.")
        validate_run_meta(meta)
        bare = None
        if "pymc.backends.mcbackend" in sys.modules:  # PyMC's own adapter may be the caller
            from .pymc import prepare_bare_run

            bare = prepare_bare_run(meta)
        run = self._init_run(meta)
        if bare is not None:
            run._bare_object_stats = bare
        return run

    @property
    def closed(self) -> bool:
        return getattr(self, "_closed", False)

    def close(self) -> None:
        """Refuse new runs from now on (runs already opened stay usable)."""
        self._closed = True

    def _init_run(self, meta: RunMeta) -> Run:
        raise NotImplementedError()

    def get_run(self, rid: str) -> Run:
        """Open an existing run by its id; an unknown id raises ``RunNotFoundError``."""
        raise NotImplementedError(f"{type(self).__name__} cannot reopen runs.")

    def get_runs(self) -> pandas.DataFrame:
        """The backend's runs as a ``pandas.DataFrame`` on every backend (the type published
        mcbackend 0.5.x returned from ``ClickHouseBackend.get_runs``): one row per run, oldest
        first, indexed by ``rid``, with columns ``rid``, ``created_at`` (UTC), ``meta`` (the
        ``RunMeta``) and ``proto`` (the same ``RunMeta``, 0.5.x's name). Backends may add
        columns (file backends: ``format``)."""
        raise NotImplementedError(f"{type(self).__name__} cannot list runs.")


def _fixed_str(values: np.ndarray, spec: VariableSpec) -> np.ndarray:
    """Fixed-shape ``str`` values as one ``(draws, *shape)`` ``<U`` array (backends may hand
    them over as an object array of per-draw arrays)."""
    if not spec.is_str or spec.is_ragged or values.dtype.kind == "U":
        return values
    if not len(values):
        return np.empty((0, *spec.shape), dtype="<U1")
    return np.array([np.asarray(v, dtype=str) for v in values]).reshape(len(values), *spec.shape)


def _fixed_str_at(values: dict[str, Any], specs: Iterable[VariableSpec]) -> dict[str, Any]:
    """One draw's fixed-shape ``str`` values as ``<U`` arrays."""
    for spec in specs:
        if spec.is_str and not spec.is_ragged:
            values[spec.name] = np.asarray(values[spec.name], dtype=str)
    return values


def runs_dataframe(
    rows: Iterable[Mapping[str, Any]], columns: Sequence[str] = ()
) -> pandas.DataFrame:
    """The ``Backend.get_runs`` table: one row per run, indexed by ``rid``, with columns ``rid``,
    ``created_at``, ``meta`` (the ``RunMeta``), ``proto`` (the same, under the name published
    mcbackend 0.5.x used) and any backend-specific ``columns``."""
    import pandas as pd

    frame = pd.DataFrame(list(rows), columns=["rid", "created_at", *columns, "meta"])
    frame["proto"] = frame["meta"]
    return frame.set_index("rid", drop=False)


def _lookup(specs: Mapping[str, VariableSpec], name: str, kind: str) -> VariableSpec:
    try:
        return specs[name]
    except KeyError:
        known = ", ".join(repr(n) for n in specs) or "none"
        raise KeyError(f"Unknown {kind} {name!r}. Known: {known}.") from None


def _check_slice(slc: slice) -> slice:
    if not isinstance(slc, slice):
        raise TypeError(f"Expected a slice, got {slc!r}.")
    return slc


def _batch_length(draws: Mapping[str, Any], stats: Mapping[str, Any] | None) -> int:
    """The number of iterations in an ``append_many`` batch (its first column's length).
    A bare string is one value, not a batch of characters: refused."""
    columns = [*draws.items(), *(stats or {}).items()]
    for name, values in columns:
        if isinstance(values, (str, bytes)):
            raise TypeError(
                f"The values of {name!r} are a single {type(values).__name__}; append_many "
                f"takes a sequence of draws per name (e.g. [{values!r}] for one draw)."
            )
    return len(columns[0][1]) if columns else 0


def _validate_columns(
    columns: Mapping[str, Any],
    specs: Mapping[str, VariableSpec],
    what: str,
    n: int,
    fill_missing: bool = False,
) -> dict[str, Any]:
    if len(columns) != len(specs) or columns.keys() != specs.keys():
        unknown = [name for name in columns if name not in specs]
        if unknown:
            raise KeyError(f"The {what} have unknown names {unknown}; known: {list(specs)}.")
        if not fill_missing:
            missing = [s for s in specs if s not in columns]
            raise ValueError(f"The {what} lack values for {missing}.")
    return {
        name: spec.validate_many(columns[name], n)
        if name in columns
        else spec.validate_many([spec.missing_value()] * n, n)
        for name, spec in specs.items()
    }
