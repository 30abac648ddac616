"""A backend that keeps sampler stats and discards draws (for when only diagnostics matter)."""

from __future__ import annotations

from ..codec import Section
from ..columns import ColumnStore
from ..core import Chain
from ..meta import ChainMeta, RunMeta
from .numpy import NumPyBackend, NumPyRun

__all__ = ["NullBackend", "NullChain", "NullRun"]


class NullChain(Chain):
    """Validates and counts draws, stores only their stats."""

    def __init__(self, cmeta: ChainMeta, rmeta: RunMeta, *, preallocate: int = 1000) -> None:
        super().__init__(cmeta, rmeta)
        self._stats = ColumnStore(self._stat_specs.values(), preallocate)

    def _append(self, draw, stats) -> None:
        self._stats.append(stats)

    def _get_values(self, spec, slc, *, section):
        if section is Section.DRAWS:
            raise RuntimeError(
                f"NullBackend does not store draws, so {spec.name!r} cannot be read. "
                "Use NumPyBackend or a file backend to keep draws."
            )
        return self._stats.get(spec.name, slc)

    def __len__(self) -> int:
        return self._stats.length


class NullRun(NumPyRun):
    """A run of ``NullChain``s."""

    chain_class = NullChain

    def to_inferencedata(self, *, equalize_chain_lengths: bool = True):
        raise RuntimeError("NullBackend runs have no draws to convert; read stats with get_stats.")


class NullBackend(NumPyBackend):
    """Stores sampler stats only; draws are validated and discarded."""

    run_class = NullRun
