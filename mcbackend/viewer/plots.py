"""What the plots of one variable element need, with a bounded number of points.

Values of the chosen element are read a block of draws at a time (a block holds at most
``BLOCK_BYTES`` of the variable), so a large variable is never read whole; the browser gets
at most ``points`` points per chain trace (min and max of each bucket of draws, so spikes
stay visible), rank histograms and densities on fixed grids.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core import Chain
from ..meta import Variable

__all__ = [
    "SeriesCache",
    "element_labels",
    "element_series",
    "minmax_trace",
    "rank_histograms",
    "densities",
]

BLOCK_BYTES = 8 << 20
MAX_MARKERS = 500
MAX_RANKED = 200_000
DENSITY_POINTS = 200


def element_labels(var: Variable, coords: dict[str, np.ndarray]) -> list[str]:
    """One label per element of a rigid variable: ``""`` for scalars, else ``[a, 1]`` with
    coordinate values where the variable's dims have them."""
    shape = [int(s) for s in var.shape]
    if not shape:
        return [""]
    dims = list(var.dims) if len(var.dims) == len(shape) else [None] * len(shape)
    axes = []
    for dim, size in zip(dims, shape):
        values = coords.get(dim) if dim else None
        if values is not None and len(values) == size:
            axes.append([str(v) for v in values])
        else:
            axes.append([str(i) for i in range(size)])
    return ["[" + ", ".join(a[i] for a, i in zip(axes, idx)) + "]" for idx in np.ndindex(*shape)]


class SeriesCache:
    """Values of recently plotted elements, per chain: a poll reads only the draws added since
    (stored draws never change). Least recently used series go beyond ``max_bytes``."""

    def __init__(self, max_bytes: int = 256 << 20) -> None:
        self.max_bytes = max_bytes
        self._series: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(
        self, key: tuple, chain: Chain, var: Variable, element: int, length: int, *, is_stat: bool
    ) -> np.ndarray:
        with self._lock:
            known = self._series.pop(key, np.empty(0))
        if len(known) < length:
            new = element_series(chain, var, element, len(known), length, is_stat=is_stat)
            known = np.concatenate([known, new])
        with self._lock:
            self._series[key] = known
            while sum(v.nbytes for v in self._series.values()) > self.max_bytes:
                if len(self._series) == 1:
                    break
                self._series.popitem(last=False)
        return known[:length]


def element_series(
    chain: Chain, var: Variable, element: int, lo: int, hi: int, *, is_stat: bool
) -> np.ndarray:
    """Values of element ``element`` (flat index) of ``var`` in draws lo:hi, as float64."""
    size = math.prod(int(s) for s in var.shape)
    draw_bytes = max(size * np.dtype(var.dtype).itemsize, 1)
    block = max(1, BLOCK_BYTES // draw_bytes)
    read = chain.get_stats if is_stat else chain.get_draws
    out = np.empty(max(hi - lo, 0), dtype=np.float64)
    for start in range(lo, hi, block):
        stop = min(hi, start + block)
        values = np.asarray(read(var.name, slice(start, stop)))
        out[start - lo : stop - lo] = values.reshape(stop - start, -1)[:, element]
    return out


def minmax_trace(values: np.ndarray, points: int) -> dict[str, list]:
    """At most ``points`` (x, y) pairs drawing ``values``: all of them when few, else the
    min and max of each of points/2 buckets of consecutive draws."""
    n = len(values)
    if n <= points:
        return {"x": list(range(n)), "y": _floats(values)}
    buckets = max(points // 2, 1)
    edges = np.linspace(0, n, buckets + 1).astype(int)
    starts = edges[:-1]
    lows = np.fmin.reduceat(values, starts)
    highs = np.fmax.reduceat(values, starts)
    centers = (edges[:-1] + edges[1:] - 1) // 2
    x = np.repeat(centers, 2)
    y = np.empty(2 * buckets)
    y[0::2], y[1::2] = lows, highs
    return {"x": x.tolist(), "y": _floats(y)}


def markers(values: np.ndarray, draws: np.ndarray) -> dict[str, list]:
    """(x, y) of the given draws (e.g. divergent ones), at most MAX_MARKERS, evenly picked."""
    idx = draws[draws < len(values)]
    count = len(idx)
    if count > MAX_MARKERS:
        idx = idx[np.linspace(0, count - 1, MAX_MARKERS).astype(int)]
    return {"x": idx.tolist(), "y": _floats(values[idx]), "count": count}


def rank_histograms(series: Sequence[np.ndarray], bins: int = 20) -> dict[str, Any]:
    """Per chain, the share of its draws in each rank bin of all chains' pooled draws
    (a flat histogram for every chain means they sample the same distribution). Beyond
    MAX_RANKED draws in all, every k-th draw is ranked: the shares stay, the cost is bounded."""
    step = max(1, math.ceil(sum(len(s) for s in series) / MAX_RANKED))
    finite = [s[::step][~np.isnan(s[::step])] for s in series]
    pooled = np.concatenate(finite) if finite else np.empty(0)
    if not len(pooled):
        return {"bins": bins, "chains": [[] for _ in series]}
    ranks = average_ranks(pooled)
    edges = np.linspace(0.5, len(pooled) + 0.5, bins + 1)
    out, start = [], 0
    for values in finite:
        n = len(values)
        counts, _ = np.histogram(ranks[start : start + n], bins=edges)
        out.append((counts / max(n, 1)).round(5).tolist())
        start += n
    return {"bins": bins, "chains": out}


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing their average rank (``scipy.stats.rankdata``'s default)."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return (ends - (counts - 1) / 2)[inverse]


def densities(series: Sequence[np.ndarray], points: int = DENSITY_POINTS) -> dict[str, Any]:
    """Per chain, a Gaussian kernel density on one shared grid (binned, so it costs
    O(draws + points) whatever the number of draws)."""
    finite = [s[np.isfinite(s)] for s in series]
    pooled = np.concatenate(finite) if finite else np.empty(0)
    if len(pooled) < 2 or np.ptp(pooled) == 0:
        return {"x": [], "chains": [[] for _ in series]}
    bandwidth = 1.06 * np.std(pooled) * len(pooled) ** -0.2
    lo, hi = pooled.min() - 3 * bandwidth, pooled.max() + 3 * bandwidth
    grid = np.linspace(lo, hi, points)
    step = grid[1] - grid[0]
    half = int(np.ceil(4 * bandwidth / step))
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) * step / bandwidth) ** 2)
    kernel /= kernel.sum() * step
    out: list[list[float | None]] = []
    for values in finite:
        if not len(values):
            out.append([])
            continue
        counts, _ = np.histogram(values, bins=points, range=(lo - step / 2, hi + step / 2))
        density = np.convolve(counts / len(values), kernel, mode="same")
        out.append(_floats(density))
    return {"x": _floats(grid), "chains": out}


def _floats(values: np.ndarray) -> list[float | None]:
    """JSON-safe floats (NaN and inf become null), rounded to 6 significant digits."""
    return [None if not math.isfinite(v) else float(f"{v:.6g}") for v in np.asarray(values)]
