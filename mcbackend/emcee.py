"""emcee integration: store an ``emcee.EnsembleSampler`` run in any backend.

Each walker becomes a chain (chain number = walker index), as ArviZ's own emcee converter
does, so R-hat and ESS treat walkers like chains. Every step records the parameters (split into
named variables), and the stats ``log_prob``, ``accepted`` (did the walker move) and
``in_warmup`` (step < ``tune``). Without the initial positions (``store_emcee``), the first
step counts as accepted.

    run = sample_emcee(sampler, p0, 2000, backend, tune=500, variables={"mu": (), "tau": (2,)})
    run.to_inferencedata()
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import hagelkorn
import numpy as np

from ._inferencedata import python_to_extended_value
from .core import Backend, Chain, Run
from .meta import Coordinate, RunMeta, Variable
from .npproto.utils import ndarray_from_numpy

__all__ = ["EmceeRecorder", "sample_emcee", "store_emcee"]


class EmceeRecorder:
    """Appends emcee steps (walker positions and log-probabilities) to a run, walker by chain."""

    def __init__(
        self,
        backend: Backend,
        nwalkers: int,
        ndim: int,
        *,
        variables: Mapping[str, Sequence[int]] | None = None,
        dims: Mapping[str, Sequence[str]] | None = None,
        coords: Mapping[str, Sequence[Any]] | None = None,
        tune: int = 0,
        rid: str | None = None,
    ) -> None:
        self.variables = {k: tuple(v) for k, v in (variables or {"theta": (ndim,)}).items()}
        sizes = [int(np.prod(s)) for s in self.variables.values()]
        if sum(sizes) != ndim:
            raise ValueError(
                f"The variables {self.variables} hold {sum(sizes)} values, "
                f"but the sampler has ndim={ndim}."
            )
        self._splits = np.cumsum(sizes)[:-1]
        self.tune = tune
        dims = dims or {}
        meta = RunMeta(
            rid=rid or hagelkorn.random(),
            variables=[
                Variable(name, "float64", list(shape), dims=list(dims.get(name, [])))
                for name, shape in self.variables.items()
            ],
            sample_stats=[
                Variable("log_prob", "float64", []),
                Variable("accepted", "bool", []),
                Variable("in_warmup", "bool", []),
            ],
            coordinates=[
                Coordinate(name, ndarray_from_numpy(np.asarray(values)))
                for name, values in (coords or {}).items()
            ],
            attributes={
                "inference_library": python_to_extended_value("emcee"),
                "nwalkers": python_to_extended_value(nwalkers),
                "tune": python_to_extended_value(tune),
            },
        )
        self.run: Run = backend.init_run(meta)
        self.chains: list[Chain] = [self.run.init_chain(w) for w in range(nwalkers)]
        self._previous: np.ndarray | None = None
        self.steps = 0

    def start_from(self, coords: np.ndarray) -> None:
        """The walkers' initial positions, so that the first step's ``accepted`` is known."""
        self._previous = np.array(coords, dtype=float)

    def record(self, coords: np.ndarray, log_prob: np.ndarray) -> None:
        """Append one step: ``coords`` (nwalkers, ndim), ``log_prob`` (nwalkers,)."""
        self.record_many(np.asarray(coords)[None], np.asarray(log_prob)[None])

    def record_many(self, coords: np.ndarray, log_prob: np.ndarray) -> None:
        """Append steps: ``coords`` (steps, nwalkers, ndim), ``log_prob`` (steps, nwalkers);
        each walker's chain takes them as one batch."""
        coords = np.asarray(coords, dtype=float)
        log_prob = np.asarray(log_prob)
        n = len(coords)
        if not n:
            return
        before = coords[:1] if self._previous is None else self._previous[None]
        moved = np.any(coords != np.concatenate([before, coords[:-1]]), axis=2)
        if self._previous is None:
            moved[0] = True
        in_warmup = self.steps + np.arange(n) < self.tune
        for w, chain in enumerate(self.chains):
            parts = np.split(coords[:, w], self._splits, axis=1)
            draws = {
                name: part.reshape(n, *shape)
                for (name, shape), part in zip(self.variables.items(), parts)
            }
            stats = {"log_prob": log_prob[:, w], "accepted": moved[:, w], "in_warmup": in_warmup}
            chain.append_many(draws, stats)
        self._previous = coords[-1].copy()  # emcee updates its state in place
        self.steps += n

    def close(self) -> Run:
        self.run.close()
        return self.run


def sample_emcee(sampler, initial_state, iterations: int, backend: Backend, **kwargs) -> Run:
    """Run ``sampler.sample(initial_state, iterations=...)`` and store every step.

    ``kwargs`` go to ``EmceeRecorder`` (``variables``, ``dims``, ``coords``, ``tune``, ``rid``).
    """
    recorder = EmceeRecorder(backend, sampler.nwalkers, sampler.ndim, **kwargs)
    recorder.start_from(getattr(initial_state, "coords", initial_state))
    for state in sampler.sample(initial_state, iterations=iterations):
        recorder.record(state.coords, state.log_prob)
    return recorder.close()


def store_emcee(sampler, backend: Backend, **kwargs) -> Run:
    """Store the steps a finished ``sampler`` holds in memory."""
    recorder = EmceeRecorder(backend, sampler.nwalkers, sampler.ndim, **kwargs)
    recorder.record_many(sampler.get_chain(), sampler.get_log_prob())
    return recorder.close()
