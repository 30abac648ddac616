"""The encode pool: two worker threads shared by every chain of the process, where chunks and
files are encoded (blosc, zstd and pyarrow release the GIL, so both cores encode while the
sampler's thread appends). Two workers bound the CPU that flushes take from sampling on the
two-core machines the benchmarks run on; more would only queue.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

from .threads import CallerRunsExecutor

__all__ = ["ENCODE_WORKERS", "encode_many", "encode_pool"]

ENCODE_WORKERS = 2


@functools.cache
def _encoders(pid: int) -> ThreadPoolExecutor:
    return CallerRunsExecutor(ENCODE_WORKERS, thread_name_prefix="mcbackend-encode")


def encode_pool() -> ThreadPoolExecutor:
    """The process's encode workers (a forked child gets its own). Only work that waits for
    nothing else runs there, so no task waits for a worker."""
    return _encoders(os.getpid())


def encode_many[T](
    encode: Callable[[T], bytes], items: Mapping[str, T], weight: Callable[[T], int]
) -> dict[str, bytes]:
    """``encode`` every item on the encode pool's workers at once: the items go in one share
    per worker of about equal ``weight``, one task each (hundreds of small variables would
    spend more on handing over single items than on encoding them)."""
    shares: list[list[str]] = [[] for _ in range(ENCODE_WORKERS)]
    loads = [0] * ENCODE_WORKERS
    for key in sorted(items, key=lambda k: -weight(items[k])):
        lighter = loads.index(min(loads))
        shares[lighter].append(key)
        loads[lighter] += weight(items[key])

    def run(keys: list[str]) -> dict[str, bytes]:
        return {key: encode(items[key]) for key in keys}

    futures = [encode_pool().submit(run, keys) for keys in shares if keys]
    done = {}
    for future in futures:
        done.update(future.result())
    return {key: done[key] for key in items}
