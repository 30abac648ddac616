"""How far each chain of a run got: draws, warm-up vs posterior, draws/s, divergences.

Counts are kept per chain and updated from the draws added since the last look, so polling
a long run reads only its new stats, never the whole chain again.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._inferencedata import attributes_to_python, find_warmup_stat
from ..core import Chain, Run

__all__ = ["ChainProgress", "RunProgress", "divergence_stat"]

#: Seconds without new draws after which a run no longer counts as being written.
IDLE_AFTER = 10.0
#: Seconds of history the draws/s rate is measured over.
RATE_WINDOW = 10.0


def divergence_stat(stat_names: list[str]) -> str | None:
    """``diverging`` (PyMC, NUTS), possibly prefixed like ``sampler_0__``."""
    for name in stat_names:
        if name == "diverging":
            return name
    return next((n for n in sorted(stat_names) if n.endswith("__diverging")), None)


@dataclass
class ChainProgress:
    """Counts of one chain up to ``length`` draws, and when its length was seen."""

    number: int
    length: int = 0
    warmup: int = 0
    warmup_done: bool = False
    divergent: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    seen: deque = field(default_factory=lambda: deque(maxlen=64))

    def update(self, chain: Chain, warmup_stat: str | None, diverging_stat: str | None) -> None:
        length = len(chain)
        if length > self.length:
            new = slice(self.length, length)
            if warmup_stat and not self.warmup_done:
                mask = np.asarray(chain.get_stats(warmup_stat, new), dtype=bool)
                leading = int(np.argmin(mask)) if not mask.all() else len(mask)
                self.warmup += leading
                self.warmup_done = leading < len(mask)
            elif not warmup_stat:
                self.warmup_done = True
            if diverging_stat:
                flags = np.asarray(chain.get_stats(diverging_stat, new), dtype=bool)
                found = np.flatnonzero(flags) + self.length
                self.divergent = np.concatenate([self.divergent, found])
            self.length = length
        if not self.seen or self.seen[-1][1] != length:
            self.seen.append((time.monotonic(), length))  # only changes: see last_growth

    @property
    def divergences(self) -> int:
        """Divergent draws after warm-up (what PyMC warns about; warm-up ones are expected)."""
        return int(np.count_nonzero(self.divergent >= self.warmup)) if self.warmup_done else 0

    @property
    def posterior(self) -> int:
        return self.length - self.warmup

    def draws_per_second(self) -> float:
        """Draws added per second over the last RATE_WINDOW seconds (0 when none came)."""
        now = time.monotonic()
        recent = [(t, n) for t, n in self.seen if now - t <= RATE_WINDOW]
        if not recent or now - recent[-1][0] > IDLE_AFTER:
            return 0.0
        older = [(t, n) for t, n in self.seen if now - t > RATE_WINDOW]
        t0, n0 = older[-1] if older else self.seen[0]
        t1, n1 = recent[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0

    def last_growth(self) -> float | None:
        """Monotonic time the length last grew (None: never seen growing)."""
        if len(self.seen) < 2:
            return None
        return self.seen[-1][0]

    def as_json(self) -> dict[str, Any]:
        return {
            "chain": self.number,
            "draws": self.length,
            "warmup": self.warmup,
            "posterior": self.posterior,
            "in_warmup": not self.warmup_done,
            "draws_per_second": round(self.draws_per_second(), 2),
            "divergences": self.divergences,
            "warmup_divergences": len(self.divergent) - self.divergences,
        }


class RunProgress:
    """Progress of every chain of one run; ``update`` is cheap to call on every poll."""

    def __init__(self, run: Run) -> None:
        self.run = run
        stat_names = [s.name for s in run.meta.sample_stats]
        self.warmup_stat = find_warmup_stat(stat_names)
        self.diverging_stat = divergence_stat(stat_names)
        self.chains: dict[int, ChainProgress] = {}
        self._lock = threading.Lock()
        self.expected = _expected_draws(attributes_to_python(run.meta.attributes))

    def update(self) -> list[ChainProgress]:
        with self._lock:
            for chain in self.run.get_chains():
                number = chain.cmeta.chain_number
                progress = self.chains.setdefault(number, ChainProgress(number))
                progress.update(chain, self.warmup_stat, self.diverging_stat)
            return [self.chains[n] for n in sorted(self.chains)]

    def state(self) -> str:
        """``sampling`` (draws came in the last IDLE_AFTER s), ``complete`` (every expected draw
        is there), ``incomplete`` (fewer than expected and none coming) or ``idle`` (no target
        known and none coming)."""
        chains = list(self.chains.values())
        growth = [g for g in (c.last_growth() for c in chains) if g is not None]
        if growth and time.monotonic() - max(growth) <= IDLE_AFTER:
            return "sampling"
        if self.expected is None:
            return "idle"
        n_chains, n_draws = self.expected
        done = len(chains) >= n_chains and all(c.length >= n_draws for c in chains)
        return "complete" if done else "incomplete"

    def as_json(self) -> dict[str, Any]:
        chains = self.update()
        state = self.state()
        return {
            "state": state,
            "writing": state == "sampling",
            "expected_draws_per_chain": self.expected[1] if self.expected else None,
            "chains": [c.as_json() for c in chains],
        }


def _expected_draws(attrs: dict[str, Any]) -> tuple[int, int] | None:
    """(chains, draws per chain incl. warm-up) when the sampler recorded them (PyMC does)."""
    try:
        return int(attrs["chains"]), int(attrs.get("tune", 0)) + int(attrs["draws"])
    except (KeyError, TypeError, ValueError):
        return None
