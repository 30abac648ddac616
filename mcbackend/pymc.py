"""PyMC integration: ``pm.sample(trace=TraceBackend(backend))``.

``TraceBackend`` is a PyMC trace (a ``BaseTrace``) that records each chain straight into a
chain of any mcbackend backend. Compared with passing the bare backend (``pm.sample(trace=
backend)``, which PyMC >= 6 adapts itself) it knows the run id before sampling, records run
attributes (sampler, library versions, creation time, tune/draw counts) and observed data given
as plain arrays, and costs about as much as PyMC's default in-memory trace: draws are staged in
columns and validated and stored a batch at a time, and slicing a trace (PyMC drops the warm-up
that way) selects draws instead of copying them.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import datetime
import inspect
import io
import pickle
import platform
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import hagelkorn
import numpy as np
import pytensor
from pymc.backends.base import BaseTrace
from pymc.model import Model, modelcontext
from pymc.step_methods.compound import flat_statname, flatten_steps
from pymc.util import is_transformed_name

from ._inferencedata import python_to_extended_value
from ._objectstats import from_json, to_json
from ._validation import VariableSpec
from .core import Backend, Chain, Run
from .deprecation import RenamedAttribute
from .meta import Coordinate, DataVariable, RunMeta, Variable
from .npproto.utils import ndarray_from_numpy

__all__ = ["PyMCVersionWarning", "TraceBackend", "prepare_bare_run"]

_LIBRARIES = ("mcbackend", "pymc", "pytensor", "numpy", "arviz")


@dataclass
class _Sampling:
    """What the calling ``pm.sample`` knows (``_pm_sample_settings``)."""

    model: Model
    step: Any = None
    trace_vars: Sequence | None = None
    initial_point: Mapping[str, np.ndarray] | None = None
    chains: int = 1
    arguments: dict[str, Any] = field(default_factory=dict)
    #: ``pm.sample(idata_kwargs={"include_transformed": True})`` asks for transformed values.
    include_transformed: bool = False


@dataclass
class _Session:
    """One ``pm.sample`` call: the run, and what every chain's trace shares."""

    run: Run
    model: Model
    step: Any
    fn: Any
    vars: list
    var_shapes: dict[str, tuple[int, ...]]
    var_dtypes: dict[str, np.dtype]
    #: Per sampler: stat name -> stored (flat) name.
    stat_names: list[dict[str, str]]
    #: Stored names of stats holding Python objects (stored as JSON text).
    object_stats: frozenset[str]
    #: Per stored stat name: the value of a draw in which the sampler did not report it.
    stat_fill: dict[str, Any]
    #: Chains ``pm.sample`` runs (1 when unknown: every close waits for its write).
    expected_chains: int = 1
    chains: dict[int, Chain] = field(default_factory=dict)
    open_chains: set[int] = field(default_factory=set)


class _Shared:
    """State shared by a ``TraceBackend`` and the per-chain copies ``pm.sample`` makes."""

    def __init__(self, run_id: str | None) -> None:
        self.requested_run_id = run_id
        self.next_run_id = run_id or hagelkorn.random()
        self.session: _Session | None = None


class TraceBackend(BaseTrace):
    """Stores ``pm.sample(trace=TraceBackend(backend))`` as a run of ``backend``.

    ``run_id`` names the run (default: a random id, known before sampling as ``trace.run_id``).
    Each ``pm.sample`` with the same ``TraceBackend`` stores a new run; a given ``run_id`` can
    be stored once. ``verbose`` prints where the run goes. Values of transformed variables
    (``sigma_log__``) are stored only with ``include_transformed`` or when ``pm.sample`` is asked
    for them (``idata_kwargs={"include_transformed": True}``).

    Recorded draws are staged in columns and handed to the chain ``flush_every`` at a time
    (``Chain.append_many``), which validates and stores them per column; reading the trace,
    slicing it and closing it hand over what is staged first.
    """

    #: Draws recorded before they are handed to the chain at once ...
    flush_every: int = 64
    #: ... or once the oldest of them waited this long (slow models reach storage in time).
    flush_seconds: float = 1.0

    #: Deprecated names of ``flush_every`` and ``flush_seconds``.
    stage_draws = RenamedAttribute("flush_every")
    stage_seconds = RenamedAttribute("flush_seconds")

    def __init__(
        self,
        backend: Backend | TraceBackend,
        *,
        run_id: str | None = None,
        verbose: bool = True,
        model: Model | None = None,
        include_transformed: bool = False,
    ) -> None:
        if isinstance(backend, TraceBackend):
            backend = backend.backend
        if not isinstance(backend, Backend):
            raise TypeError(f"Expected an mcbackend Backend, got {type(backend).__name__}.")
        self.backend: Backend = backend
        self.verbose = verbose
        self.include_transformed = include_transformed
        self.name = None
        self.model = model
        self.chain: int | None = None
        self.sampler_vars: list[dict[str, Any]] | None = None
        self.varnames: list[str] = []
        self._is_base_setup = False
        self._shared = _Shared(run_id)
        self._chain: Chain | None = None
        self._window: range | None = None  # the draws a sliced trace shows
        self._record_stats: list[dict[str, str]] = []
        self._object_stats: frozenset[str] = frozenset()
        self._staged = 0  # draws recorded into the stage, not yet in the chain
        self._staged_since = 0.0  # when the oldest staged draw was recorded
        self._stat_fill: dict[str, Any] = {}
        self._stored = 0  # draws handed to the chain
        #: Per object stat: draw index -> the object PyMC recorded (None is not kept). Storage
        #: holds JSON text; PyMC reads the objects back through this trace during ``pm.sample``.
        self._objects: dict[str, dict[int, Any]] = {}
        self._draw_stage: list[np.ndarray] = []
        self._stat_rows: list[tuple[list[dict], bool]] = []  # (sampler stats, in warm-up)

    @property
    def run_id(self) -> str:
        """Id of the run being stored, or of the next one."""
        session = self._shared.session
        return session.run.meta.rid if session is not None else self._shared.next_run_id

    @property
    def run(self) -> Run | None:
        """The run stored by the latest ``pm.sample`` (``None`` before sampling)."""
        session = self._shared.session
        return session.run if session is not None else None

    # ---- recording ------------------------------------------------------------------------

    def setup(self, draws: int, chain: int, sampler_vars=None) -> None:
        session = self._session_for(draws, chain, sampler_vars)
        BaseTrace.__init__(
            self,
            model=session.model,
            vars=session.vars,
            fn=session.fn,
            var_shapes=session.var_shapes,
            var_dtypes=session.var_dtypes,
        )
        super().setup(draws, chain, sampler_vars)
        self.chain = chain
        self._record_stats = session.stat_names
        self._object_stats = session.object_stats
        self._chain = session.run.init_chain(chain)
        self._window = None
        self._draw_stage = [
            np.empty((self.flush_every, *self.var_shapes[name]), self.var_dtypes[name])
            for name in self.varnames
        ]
        self._stat_fill = session.stat_fill
        self._stat_rows = []
        self._staged = 0
        self._stored = 0
        self._objects = {name: {} for name in self._object_stats}
        session.chains[chain] = self._chain
        session.open_chains.add(chain)

    def record(self, point, sampler_stats=None, *, in_warmup: bool = False) -> None:
        i = self._staged
        waited = time.monotonic() - self._staged_since
        if i == self.flush_every or (i and waited > self.flush_seconds):
            self._store_staged()
            i = 0
        if not i:
            self._staged_since = time.monotonic()
        for column, value in zip(self._draw_stage, self.fn(*point.values())):
            column[i] = value
        # Copied: a step method may reuse its dicts.
        self._stat_rows.append(([dict(s) for s in sampler_stats or ()], in_warmup))
        self._staged = i + 1

    def _store_staged(self) -> None:
        """Hand the staged draws to the chain (validated there, as one batch)."""
        n, self._staged = self._staged, 0
        if not n:
            return
        draws = {name: column[:n] for name, column in zip(self.varnames, self._draw_stage)}
        rows, self._stat_rows = self._stat_rows, []
        self._recording().append_many(draws, self._stat_columns(rows))
        self._stored += n

    def _stat_columns(self, rows: list[tuple[list[dict], bool]]) -> dict[str, list]:
        """Staged stats by stored name. A stat a sampler declared but did not report in a draw
        (NUTS inside a CompoundStep skips ``model_logp``) is stored as missing, as
        ``Chain.append`` stores a stat left out (NaN, 0, False; object stats None)."""
        columns: dict[str, list] = {"in_warmup": [warmup for _, warmup in rows]}
        for s, names in enumerate(self._record_stats):
            for name, stored in names.items():
                fill = self._stat_fill[stored]
                columns[stored] = [r[s].get(name, fill) if s < len(r) else fill for r, _ in rows]
            unknown = {
                k
                for r, _ in rows
                if s < len(r) and not r[s].keys() <= names.keys()
                for k in r[s]
                if k not in names
            }
            if unknown:
                raise KeyError(f"Sampler {s} reported stats {sorted(unknown)} it did not declare.")
        for name in self._object_stats:
            kept = self._objects[name]
            for i, value in enumerate(columns[name]):
                if value is not None:
                    kept[self._stored + i] = value
            columns[name] = [_NULL if value is None else to_json(value) for value in columns[name]]
        return columns

    def close(self) -> None:
        """Store what is staged. Chains closed while others still sample are written in the
        background; closing the last one waits until every chain of the run is written and
        closes them all (a Zarr v2 run's arrays then get their exact shapes)."""
        if self._chain is None or self._window is not None:
            return
        self._store_staged()
        session = self._shared.session
        number = self._chain.cmeta.chain_number
        if session is None or session.chains.get(number) is not self._chain:
            self._chain.flush()  # a trace of an earlier session
            return
        session.open_chains.discard(number)
        if session.open_chains or len(session.chains) < session.expected_chains:
            self._chain.flush(wait=False)
        else:
            for chain in session.chains.values():
                chain.close()

    # ---- reading --------------------------------------------------------------------------

    def __len__(self) -> int:
        if self._window is not None:
            return len(self._window)
        return 0 if self._chain is None else len(self._chain) + self._staged

    def _draws(self, burn: int = 0, thin: int = 1) -> slice:
        window = self._shown()[burn::thin]
        if window.step < 0:
            raise ValueError("Reading draws in reverse order is not supported.")
        return slice(window.start, window.stop, window.step)

    def get_values(self, varname: str, burn: int = 0, thin: int = 1) -> np.ndarray:
        return self._recording().get_draws(varname, self._draws(burn, thin))

    def _get_sampler_stats(self, stat_name: str, sampler_idx: int, burn: int, thin: int):
        name = flat_statname(sampler_idx, stat_name)
        draws = self._draws(burn, thin)
        values = self._recording().get_stats(name, draws)
        if name in self._object_stats:
            kept = self._objects.get(name, {})
            indices = range(len(self._recording()))[draws]
            objects = np.empty(len(values), dtype=object)
            for i, (index, text) in enumerate(zip(indices, values)):
                objects[i] = kept[index] if index in kept else from_json(str(text))
            return objects
        return values

    def _slice(self, idx: slice) -> TraceBackend:
        sliced = copy.copy(self)
        sliced._window = self._shown()[idx]
        return sliced

    def point(self, idx: int) -> dict[str, np.ndarray]:
        return self._recording().get_draws_at(self._shown()[int(idx)], self.varnames)

    def _shown(self) -> range:
        """The chain's draws this trace shows (every draw in the chain, staged ones stored)."""
        if self._window is not None:
            return self._window
        self._store_staged()
        return range(len(self._recording()))

    def _recording(self) -> Chain:
        """The chain this trace records into and reads from."""
        if self._chain is None:
            raise RuntimeError("This TraceBackend holds no chain: PyMC calls setup() first.")
        return self._chain

    # ---- the run --------------------------------------------------------------------------

    def _session_for(self, draws: int, chain: int, sampler_vars) -> _Session:
        """The session of the calling ``pm.sample``: a new run unless one is under way."""
        shared = self._shared
        sampling = _pm_sample_settings(self.model, draws, sampler_vars or [])
        session = shared.session
        if session is not None and chain not in session.chains and session.step is sampling.step:
            return session
        rid = shared.next_run_id
        if session is not None and rid == session.run.meta.rid and not shared.requested_run_id:
            rid = hagelkorn.random()
        sampling.include_transformed |= self.include_transformed
        session = _start_session(self.backend, rid, sampling, sampler_vars)
        shared.session = session
        shared.next_run_id = shared.requested_run_id or hagelkorn.random()
        if self.verbose:
            where = getattr(session.run, "url", None) or type(self.backend).__name__
            print(f"mcbackend: storing run {rid} in {where}")
        return session


def _start_session(backend: Backend, rid: str, sampling: _Sampling, sampler_vars) -> _Session:
    model = sampling.model
    trace_vars = list(sampling.trace_vars or model.unobserved_value_vars)
    if not sampling.include_transformed:  # sigma_log__ and the like: what PyMC's data omits
        trace_vars = [v for v in trace_vars if not is_transformed_name(v.name)]
    fn = model.compile_fn(
        outs=[pytensor.Out(v, borrow=True) for v in trace_vars],
        inputs=[pytensor.In(v, borrow=True) for v in model.value_vars],
        point_fn=False,
        on_unused_input="ignore",
        trust_input=True,
    )
    point = sampling.initial_point or model.initial_point()
    values = dict(zip((v.name for v in trace_vars), fn(**point)))
    stat_names, stats, object_stats = _sample_stats(sampler_vars or [], sampling.step)
    stat_fill = {  # a draw that lacks the stat stores 0 (as PyMC's default trace); objects None
        s.name: None if s.name in object_stats else _zero(VariableSpec.from_variable(s))
        for s in stats
    }
    meta = RunMeta(
        rid=rid,
        variables=_variables(model, values),
        sample_stats=stats,
        coordinates=[
            Coordinate(name, ndarray_from_numpy(np.asarray(labels)))
            for name, labels in model.coords.items()
            if labels is not None
        ],
        data=model_data(model),
    )
    arguments = {**sampling.arguments, "include_transformed": sampling.include_transformed}
    for key, value in run_attributes(arguments).items():
        meta.attributes[key] = python_to_extended_value(value)
    return _Session(
        run=backend.init_run(meta),
        model=model,
        step=sampling.step,
        fn=fn,
        vars=trace_vars,
        var_shapes={name: value.shape for name, value in values.items()},
        var_dtypes={name: value.dtype for name, value in values.items()},
        stat_names=stat_names,
        object_stats=object_stats,
        stat_fill=stat_fill,
        expected_chains=sampling.chains,
    )


#: ``to_json(None)``: most draws' warning stat.
_NULL = to_json(None)


def _variables(model: Model, values: Mapping[str, np.ndarray]) -> list[Variable]:
    deterministics = {d.name for d in model.deterministics}
    return [
        Variable(
            name,
            value.dtype.name,
            list(value.shape),
            dims=list(model.named_vars_to_dims.get(name) or []),
            is_deterministic=name in deterministics,
        )
        for name, value in values.items()
    ]


def _sample_stats(sampler_vars, step) -> tuple[list[dict[str, str]], list[Variable], frozenset]:
    """Stats named ``sampler_<i>__<name>`` (as PyMC's own adapter names them), plus
    ``in_warmup``; shapes from the step methods where known, else any shape."""
    shapes = [m.stats_dtypes_shapes for m in flatten_steps(step)] if step is not None else []
    names: list[dict[str, str]] = []
    stats: list[Variable] = []
    objects: set[str] = set()
    for s, dtypes in enumerate(sampler_vars):
        known = shapes[s] if s < len(shapes) else {}
        names.append({})
        for name, dtype in dtypes.items():
            flat = names[s][name] = flat_statname(s, name)
            dtype = np.dtype(dtype)
            _, shape = known.get(name, (None, None))
            if dtype.kind == "O":
                objects.add(flat)
                stats.append(Variable(flat, "str", []))
            elif shape is None:
                stats.append(Variable(flat, dtype.name, [], undefined_ndim=True))
            else:
                stats.append(Variable(flat, dtype.name, [-1 if d is None else d for d in shape]))
    stats.append(Variable("in_warmup", "bool", []))
    return names, stats, frozenset(objects)


def _zero(spec: VariableSpec) -> np.ndarray:
    """What PyMC's default trace holds for a stat a sampler did not report: zeros."""
    return np.zeros_like(spec.missing_value())


#: The PyMC functions whose arguments ``_pm_sample_settings`` reads: (module, function name).
_INIT_TRACES = ("pymc.backends", "init_traces")
_SAMPLE = ("pymc.sampling.mcmc", "sample")
#: PyMC's own adapter (``pm.sample(trace=backend)``), which calls ``Backend.init_run``.
_CHAIN_ADAPTERS = ("pymc.backends.mcbackend", "init_chain_adapters")


class PyMCVersionWarning(UserWarning):
    """This PyMC no longer passes ``pm.sample``'s settings where ``TraceBackend`` reads them."""


def _pm_sample_settings(
    model: Model | None, draws: int, sampler_vars: Sequence[Mapping[str, Any]]
) -> _Sampling:
    """What the calling ``pm.sample`` knows beyond what PyMC hands a trace.

    PyMC gives a trace only ``setup(draws, chain, sampler_vars)`` (``draws`` counting the
    warm-up) and ``record(point, stats, in_warmup=...)``. The model, the step methods (sampler
    names, stat shapes), ``var_names``, the initial point, the number of chains, the tune/draw
    split and ``idata_kwargs`` are arguments of PyMC's ``init_traces`` and ``pm.sample``, read
    here from their frames on the call stack: the one place mcbackend relies on PyMC internals.
    Outside ``pm.sample`` (a trace set up by hand) only the model is known. When a PyMC release
    moves them, this warns (``PyMCVersionWarning``, naming the version) and the run is stored
    with what the trace alone knows; ``setup``'s own arguments check what was found.
    """
    frames = _pymc_frames()
    if not frames:
        return _Sampling(model=modelcontext(model))
    try:
        return _settings_from(frames, draws, sampler_vars)
    except (LookupError, TypeError, ValueError, AttributeError) as error:
        _warn_moved(error)
        return _Sampling(model=modelcontext(model))


def _pm_sample_bare_settings() -> _Sampling | None:
    """``_pm_sample_settings`` for PyMC's own adapter (``pm.sample(trace=backend)``), which
    calls ``Backend.init_run`` from ``init_chain_adapters`` and has no ``setup(draws,
    sampler_vars)`` to check against: the adapter's model and step method, and what
    ``pm.sample`` knows besides. None when the adapter is not the caller."""
    frames = _pymc_frames()
    adapter = frames.pop(_CHAIN_ADAPTERS, None)
    if adapter is None:
        return None
    fallback = _Sampling(model=adapter["model"], step=adapter["step"])
    if not frames:  # the adapter used outside pm.sample
        return fallback
    try:
        return _settings_from(frames, None, None)
    except (LookupError, TypeError, ValueError, AttributeError) as error:
        _warn_moved(error)
        return fallback


def _pymc_frames() -> dict[tuple[str, str], Mapping[str, Any]]:
    """The locals of the PyMC functions read here, by (module, function), up to ``pm.sample``."""
    frames: dict[tuple[str, str], Mapping[str, Any]] = {}
    frame = inspect.currentframe()
    while frame is not None and _SAMPLE not in frames:
        key = (frame.f_globals.get("__name__", ""), frame.f_code.co_name)
        if key in (_INIT_TRACES, _SAMPLE, _CHAIN_ADAPTERS):
            frames.setdefault(key, frame.f_locals)
        frame = frame.f_back
    return frames


def _settings_from(
    frames: Mapping[tuple[str, str], Mapping[str, Any]],
    draws: int | None,
    sampler_vars: Sequence[Mapping[str, Any]] | None,
) -> _Sampling:
    """The settings in PyMC's frames, checked against ``setup``'s arguments when there are."""
    if _INIT_TRACES not in frames:
        raise LookupError("pm.sample no longer calls pymc.backends.init_traces")
    init = frames[_INIT_TRACES]
    step, tune, length = init["step"], init["tune"], init["expected_length"]
    if not isinstance(init["model"], Model) or not isinstance(init["chains"], int):
        raise TypeError(f"model={init['model']!r}, chains={init['chains']!r}")
    if not isinstance(length, int) or not isinstance(tune, int) or not 0 <= tune <= length:
        raise ValueError(f"tune={tune!r} and {length=!r}")
    if draws is not None and length != draws:
        raise ValueError(f"tune={tune!r} and {length=!r}, but setup(draws={draws})")
    if sampler_vars is not None and list(step.stats_dtypes) != list(sampler_vars):
        raise ValueError("the step methods' stats differ from setup's sampler_vars")
    idata_kwargs = frames.get(_SAMPLE, {}).get("idata_kwargs") or {}
    return _Sampling(
        model=init["model"],
        step=step,
        trace_vars=init["trace_vars"],
        initial_point=init["initial_point"],
        chains=init["chains"],
        arguments={
            "tune": tune,
            "draws": length - tune,
            "chains": init["chains"],
            "sampler": ", ".join(type(m).__name__ for m in getattr(step, "methods", [step])),
        },
        include_transformed=bool(idata_kwargs.get("include_transformed")),
    )


def _warn_moved(error: Exception) -> None:
    warnings.warn(
        f"PyMC {_version_of('pymc')} no longer passes pm.sample's settings where mcbackend "
        f"{_version_of('mcbackend')} reads them (arguments of pymc.backends.init_traces and "
        f"pymc.sampling.mcmc.sample: {type(error).__name__}: {error}). The run is stored "
        "without the tune/draw counts and sampler attributes, with every variable "
        "(var_names and idata_kwargs ignored) and stats of any shape. Please report this.",
        PyMCVersionWarning,
        stacklevel=4,
    )


def _version_of(library: str) -> str:
    try:
        return version(library)
    except PackageNotFoundError:
        return "(unknown version)"


def model_data(model: Model) -> list[DataVariable]:
    """Constant and observed data as PyMC's DataTree holds them (PyMC's own functions find
    them): observed data under the name of the variable it observes, constant data under the
    container's name; each with its dims."""
    from pymc.backends.arviz import find_constants, find_observations

    found = []
    for observed, values in [(False, find_constants(model)), (True, find_observations(model))]:
        for name, value in values.items():
            dims = list(model.named_vars_to_dims.get(name) or [])
            found.append(DataVariable(name, ndarray_from_numpy(np.asarray(value)), dims, observed))
    return found


def run_attributes(sampling_arguments: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Attributes describing a PyMC run: sampler, versions, time, tune/draw counts."""
    attrs: dict[str, Any] = {
        "created_at": datetime.datetime.now(datetime.UTC),
        "inference_library": "pymc",
        "python_version": platform.python_version(),
    }
    for lib in _LIBRARIES:
        with contextlib.suppress(PackageNotFoundError):
            attrs[f"{lib}_version"] = version(lib)
    attrs.update(sampling_arguments or {})
    return attrs


# ---- PyMC's own adapter: pm.sample(trace=backend) -------------------------------------------


def prepare_bare_run(meta: RunMeta) -> _BareAdapterStats | None:
    """Complete the run ``pm.sample(trace=backend)`` is creating through PyMC's own adapter
    (``pymc.backends.mcbackend``), as ``TraceBackend`` records it: data named as PyMC's DataTree
    names it, run attributes; object stats stored as JSON instead of the pickles the adapter
    hands over, stats a sampler left out as zeros (what PyMC's default trace holds). None when
    PyMC's adapter is not the caller."""
    sampling = _pm_sample_bare_settings()
    if sampling is None:
        return None
    model, step = sampling.model, sampling.step
    del meta.data[:]
    meta.data.extend(model_data(model))
    arguments = {**sampling.arguments, "include_transformed": sampling.include_transformed}
    for key, value in run_attributes(arguments).items():
        meta.attributes.setdefault(key, python_to_extended_value(value))
    names = [
        flat_statname(s, name)
        for s, method in enumerate(flatten_steps(step))
        for name, (dtype, _) in method.stats_dtypes_shapes.items()
        if np.dtype(dtype).kind == "O"
    ]
    zeros = {
        s.name: _zero(VariableSpec.from_variable(s))
        for s in meta.sample_stats
        if s.name not in names
    }
    tune, draws = sampling.arguments.get("tune"), sampling.arguments.get("draws")
    length = tune + draws if isinstance(tune, int) and isinstance(draws, int) else None
    return _BareAdapterStats(frozenset(names), zeros, length)


class _BareAdapterStats:
    """Stats of a chain PyMC's adapter writes. Object stats come pickled (base64 text); they are
    stored as JSON, and reads by the adapter through the writing chain get their pickled text
    back, as it unpickles what it reads (its DataTree conversion does). Stats a sampler did
    not report are stored as zeros, as PyMC's default trace holds them. The adapter never
    closes a chain, so the draw that completes ``pm.sample``'s ``tune + draws`` does."""

    def __init__(
        self, names: frozenset[str], zeros: Mapping[str, np.ndarray], length: int | None = None
    ) -> None:
        self.names = names
        self._zeros = zeros
        self._texts: dict[tuple[str, int], str] = {}  # (stat, draw index) -> pickled text
        self._appended = 0
        self._length = length

    def for_chain(self) -> _BareAdapterStats:
        """A fresh one for each chain (draw indices are per chain)."""
        return _BareAdapterStats(self.names, self._zeros, self._length)

    def store(self, stats: Mapping[str, Any]) -> dict[str, Any]:
        """The stats of the next draw as they are to be stored (``appended`` counts the draw
        once the chain kept it)."""
        index = self._appended
        stats = {**self._zeros, **stats}
        for name in self.names & stats.keys():
            text = str(np.asarray(stats[name]))
            value = _adapter_unpickle(text)
            self._texts.pop((name, index), None)  # left by a draw the chain refused
            if value is not None:
                self._texts[(name, index)] = text
            stats[name] = to_json(value)
        return stats

    def appended(self) -> bool:
        """Count a draw the chain kept; True when it completes the chain pm.sample runs."""
        self._appended += 1
        return self._appended == self._length

    @staticmethod
    def read_by_adapter() -> bool:
        """The caller of ``Chain.get_stats`` (that called this) is PyMC's adapter: it gets
        pickles, every other reader the stored JSON."""
        frame = inspect.currentframe()
        for _ in range(2):
            frame = frame.f_back if frame is not None else None
        return frame is not None and frame.f_globals.get("__name__") == _CHAIN_ADAPTERS[0]

    def show(self, name: str, values: np.ndarray, indices: range) -> np.ndarray:
        shown = np.empty(len(values), dtype=object)
        for i, index in enumerate(indices):
            shown[i] = self._texts.get((name, index), _PICKLED_NONE)
        return shown


_PICKLED_NONE = base64.encodebytes(pickle.dumps(None)).decode("ascii")

#: What PyMC's adapter pickles into object stats besides PyMC's own classes (its warnings,
#: divergence details and sampler states): NumPy arrays and plain containers.
_UNPICKLE_ALLOWED = {
    ("numpy", "dtype"),
    ("numpy", "ndarray"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("builtins", "dict"),
    ("builtins", "list"),
    ("builtins", "tuple"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "slice"),
    ("builtins", "complex"),
}


class _AdapterUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if not module.startswith("pymc.") and (module, name) not in _UNPICKLE_ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not a value PyMC's warnings hold.")
        return super().find_class(module, name)


def _adapter_unpickle(text: str) -> Any:
    """The object PyMC's adapter just pickled in this process (never data read from storage),
    restricted to the types PyMC's warnings hold."""
    return _AdapterUnpickler(io.BytesIO(base64.decodebytes(text.encode("ascii")))).load()
