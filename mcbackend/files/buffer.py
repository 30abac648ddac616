"""Draws not yet written, and the count/time policy that decides when to write them."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from .._validation import VariableSpec
from ..codec import Section
from ..columns import ColumnStore
from ..meta import RunMeta

__all__ = ["DrawBuffer", "auto_flush_every"]

_NEVER = float("inf")


class DrawBuffer:
    """Draws and stats not yet flushed, with the count/time policy that decides when to flush.

    A count flush happens when the chain length reaches a multiple of ``flush_every``, so
    flushes stay aligned with storage chunks even after a time-triggered flush.

    ``deadline`` (``started + flush_seconds``) and ``check_at`` (a length; 0: unknown) let an
    append skip ``due`` until either may hold: the chain's fast path compares two numbers.
    """

    check_at = 0

    def __init__(
        self,
        draw_specs: Iterable[VariableSpec],
        stat_specs: Iterable[VariableSpec],
        *,
        flush_every: int,
        flush_seconds: float | None,
    ) -> None:
        if flush_every < 1:
            raise ValueError(f"flush_every must be at least 1, got {flush_every}.")
        self.flush_every = int(flush_every)
        self.flush_seconds = flush_seconds
        self._draw_specs = list(draw_specs)
        self._stat_specs = list(stat_specs)
        self.reset()

    def reset(self) -> None:
        self.draws = ColumnStore(self._draw_specs, self.flush_every)
        self.stats = ColumnStore(self._stat_specs, self.flush_every)
        self.started = time.monotonic()

    @property
    def started(self) -> float:
        """``time.monotonic()`` of the oldest draw held (of the buffer's creation if none)."""
        return self._started

    @started.setter
    def started(self, value: float) -> None:
        self._started = value
        self.deadline = value + self.flush_seconds if self.flush_seconds is not None else _NEVER

    def __len__(self) -> int:
        return self.stats.length

    def stage(self, draw: Mapping[str, Any], stats: Mapping[str, Any]) -> None:
        """Validate one draw into the buffer's next row; ``commit`` counts it (see
        ``ColumnStore.stage``: a refused value leaves the buffer as it was)."""
        self.draws.stage(draw, "draw")
        self.stats.stage(stats, "stats", fill_missing=True)

    def commit(self) -> None:
        if not self.stats.length:
            self.started = time.monotonic()
        self.draws.commit()
        self.stats.commit()

    def append(self, draw: Mapping[str, Any], stats: Mapping[str, Any]) -> None:
        self.stage(draw, stats)
        self.commit()

    def extend_rows(self, draws: dict[str, Any], stats: dict[str, Any], lo: int, hi: int) -> None:
        if not len(self):
            self.started = time.monotonic()
        self.draws.extend_rows(draws, lo, hi)
        self.stats.extend_rows(stats, lo, hi)

    def plan_check(self, committed: int) -> None:
        """Set ``check_at`` to the length at which the next count flush is due."""
        self.check_at = len(self) + self.room(committed)

    def room(self, committed: int) -> int:
        """Draws that fit before the next count flush."""
        return self.flush_every - (committed + len(self)) % self.flush_every

    def due(self, committed: int) -> bool:
        n = self.stats.length
        if not n:
            return False
        if (committed + n) % self.flush_every == 0:
            return True
        return (
            self.flush_seconds is not None and time.monotonic() - self.started >= self.flush_seconds
        )

    def columns(self, section: Section) -> ColumnStore:
        return self.stats if section is Section.STATS else self.draws

    def trim(self) -> None:
        """Release unused preallocated rows (the buffer takes no more draws)."""
        self.draws.trim()
        self.stats.trim()

    @property
    def nbytes(self) -> int:
        return self.draws.nbytes + self.stats.nbytes

    @property
    def data_nbytes(self) -> int:
        """Bytes of the draws held (preallocated rows not counted)."""
        return self.draws.data_nbytes + self.stats.data_nbytes

    def nbytes_of(self, draws: dict[str, Any], stats: dict[str, Any], lo: int, hi: int) -> int:
        """Bytes draws ``lo:hi`` of validated columns would add to ``data_nbytes``."""
        return self.draws.nbytes_of(draws, lo, hi) + self.stats.nbytes_of(stats, lo, hi)

    def empty_like(self) -> DrawBuffer:
        return DrawBuffer(
            self._draw_specs,
            self._stat_specs,
            flush_every=self.flush_every,
            flush_seconds=self.flush_seconds,
        )

    def merged_with(self, later: DrawBuffer) -> DrawBuffer:
        """A buffer holding this buffer's draws, then ``later``'s."""
        merged = self.empty_like()
        for part in (self, later):
            merged.draws.extend(part.draws)
            merged.stats.extend(part.stats)
        merged.started = self.started
        return merged

    def tail(self, skip: int) -> DrawBuffer:
        """A buffer of this buffer's draws after the first ``skip``."""
        rest = self.empty_like()
        rest.draws.extend_rows(self.draws.columns, skip, len(self))
        rest.stats.extend_rows(self.stats.columns, skip, len(self))
        rest.started = self.started
        return rest


def auto_flush_every(meta: RunMeta, target_bytes: int = 4 << 20) -> int:
    """A power of two of draws that buffers about ``target_bytes`` (64 to 16384 draws)."""
    draw_bytes = 0
    for var in [*meta.variables, *meta.sample_stats]:
        spec = VariableSpec.from_variable(var)
        size = int(np.prod(spec.shape)) if spec.is_rigid else 8
        draw_bytes += size * (spec.dtype.itemsize or 16)
    draws = max(target_bytes // max(draw_bytes, 1), 1)
    return int(np.clip(2 ** int(np.log2(draws)), 64, 16384))
