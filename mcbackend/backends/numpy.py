"""In-memory storage in NumPy arrays."""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Protocol

from ..codec import Section
from ..columns import ColumnStore
from ..core import Backend, Chain, Run, runs_dataframe
from ..errors import RunExistsError, RunNotFoundError
from ..meta import ChainMeta, RunMeta

if TYPE_CHECKING:
    import pandas

__all__ = ["NumPyBackend", "NumPyChain", "NumPyRun"]


class NumPyChain(Chain):
    """A chain whose draws and stats live in memory."""

    def __init__(self, cmeta: ChainMeta, rmeta: RunMeta, *, preallocate: int = 1000) -> None:
        super().__init__(cmeta, rmeta)
        self._draws = ColumnStore(self._variable_specs.values(), preallocate)
        self._stats = ColumnStore(self._stat_specs.values(), preallocate)

    def _validate_and_append(self, draw, stats) -> None:
        self._draws.stage(draw, "draw")
        self._stats.stage(stats, "stats", fill_missing=True)
        self._draws.commit()
        self._stats.commit()

    def _append_many(self, draws, stats, n) -> None:
        self._draws.extend_rows(draws, 0, n)
        self._stats.extend_rows(stats, 0, n)

    def _store(self, section: Section) -> ColumnStore:
        return self._stats if section is Section.STATS else self._draws

    def _get_values(self, spec, slc, *, section):
        return self._store(section).get(spec.name, slc)

    def _get_values_at(self, idx, specs, *, section):
        store = self._store(section)
        return {s.name: store.get_at(s.name, idx) for s in specs}

    def __len__(self) -> int:
        return self._stats.length


class InMemoryChainFactory(Protocol):
    """How ``NumPyRun`` makes its chains (``NumPyChain``, ``NullChain``)."""

    def __call__(self, cmeta: ChainMeta, rmeta: RunMeta, *, preallocate: int) -> Chain: ...


class NumPyRun(Run):
    """A run whose chains live in memory."""

    chain_class: InMemoryChainFactory = NumPyChain

    def __init__(self, meta: RunMeta, *, preallocate: int = 1000) -> None:
        super().__init__(meta)
        self.created_at = datetime.datetime.now(datetime.UTC)
        self._preallocate = preallocate
        self._chains: dict[int, Chain] = {}

    def _init_chain(self, chain_number: int) -> Chain:
        cmeta = ChainMeta(rid=self.meta.rid, chain_number=chain_number)
        chain = self.chain_class(cmeta, self.meta, preallocate=self._preallocate)
        self._chains[chain_number] = chain
        return chain

    def get_chains(self) -> list[Chain]:
        return [self._chains[n] for n in sorted(self._chains)]


class NumPyBackend(Backend):
    """Keeps every run in memory. ``preallocate`` draws are reserved per chain up front."""

    run_class: type[NumPyRun] = NumPyRun

    def __init__(self, preallocate: int = 1000) -> None:
        self.preallocate = preallocate
        self._runs: dict[str, NumPyRun] = {}

    def _init_run(self, meta: RunMeta) -> NumPyRun:
        if meta.rid in self._runs:
            raise RunExistsError(f"A run with id '{meta.rid}' already exists in this backend.")
        run = self.run_class(meta, preallocate=self.preallocate)
        self._runs[meta.rid] = run
        return run

    def get_run(self, rid: str) -> NumPyRun:
        try:
            return self._runs[rid]
        except KeyError:
            raise RunNotFoundError(f"No run with id '{rid}' in this backend.") from None

    def get_runs(self) -> pandas.DataFrame:
        """The runs in memory, as on every backend (see ``Backend.get_runs``)."""
        return runs_dataframe(
            {"rid": rid, "created_at": run.created_at, "meta": run.meta}
            for rid, run in self._runs.items()
        )
