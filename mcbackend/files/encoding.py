"""The encode pool: two worker threads shared by every chain of the process, where chunks and
files are encoded (blosc, zstd and pyarrow release the GIL, so both cores encode while the
sampler's thread appends). Two workers bound the CPU that flushes take from sampling on the
two-core machines the benchmarks run on; more would only queue.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor

from .threads import CallerRunsExecutor

__all__ = ["ENCODE_WORKERS", "SHARE_BYTES", "encode_many", "encode_pool", "submit_encodes"]

ENCODE_WORKERS = 2
#: Bytes (before encoding) of one encode task: big enough that handing it over costs little,
#: small enough that storing starts soon.
SHARE_BYTES = 1 << 20


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
    """``encode`` every item on the encode pool's workers at once (see ``submit_encodes``)."""
    done = {}
    for future in submit_encodes(encode, items, weight):
        done.update(future.result())
    return {key: done[key] for key in items}


def submit_encodes[T](
    encode: Callable[[T], bytes],
    items: Mapping[str, T],
    weight: Callable[[T], int],
    share_weight: int = SHARE_BYTES,
) -> list[Future[dict[str, bytes]]]:
    """Start encoding every item on the encode pool, in shares of about ``share_weight`` (at
    least one per worker), heaviest items first; each future gives its share's
    ``{key: encoded}``. Shares let a caller store what is encoded while the rest encodes;
    hundreds of small variables would spend more on handing over single items than on
    encoding them."""
    if not items:
        return []
    total = sum(weight(v) for v in items.values())
    count = max(min(total // max(share_weight, 1), len(items)), min(ENCODE_WORKERS, len(items)))
    shares: list[list[str]] = [[] for _ in range(count)]
    loads = [0] * count
    for key in sorted(items, key=lambda k: -weight(items[k])):
        lighter = loads.index(min(loads))
        shares[lighter].append(key)
        loads[lighter] += weight(items[key])

    def run(keys: list[str]) -> dict[str, bytes]:
        return {key: encode(items[key]) for key in keys}

    return [encode_pool().submit(run, keys) for keys in shares]
