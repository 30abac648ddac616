"""Reading a Zarr v2 chain strictly: committed lengths from its record, complete chunks from
the arrays, the staged tail from the record's segments (each row from the newest segment
holding it). A missing or damaged piece below the
committed length raises ``CorruptRunError`` naming it; nothing reads as fill values."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...errors import CorruptRunError
from ...files import Location
from ...zarrio import Compression
from .v2commits import CHAINS, Record
from .v2layout import SAMPLED, ArraySpec
from .v2segments import decode_blob, parse_segment

__all__ = ["SegmentGone", "read_rows"]


class SegmentGone(Exception):
    """The segment a record named was replaced by a newer flush meanwhile: re-read the record."""


def is_final(array: ArraySpec, record: Record, k: int) -> bool:
    """Chunk ``k`` is stored in the array (not staged in the segment)."""
    n = record.length(array.group)
    if (k + 1) * array.chunk <= n:
        return True
    finished = record.closed or (SAMPLED[array.group][1] and record.posterior_draws > 0)
    return finished and k * array.chunk < n


def read_rows(
    run_dir: Location,
    record: Record,
    requests: Sequence[tuple[ArraySpec, int, int]],
    compression: Compression,
) -> list[np.ndarray]:
    """Rows ``lo:hi`` of each requested array of the record's chain, in one batch of reads."""
    chain = record.chain
    keys = []
    needs_segment = False
    for array, lo, hi in requests:
        for k in range(lo // array.chunk, -(-hi // array.chunk)):
            if is_final(array, record, k):
                keys.append(array.chunk_key(chain, k))
            else:
                needs_segment = True
    keys = list(dict.fromkeys(keys))
    blobs = run_dir.read_many(keys, missing_ok=True)
    for key in keys:
        if key not in blobs:
            raise CorruptRunError(
                f"Chunk {run_dir.url(key)} is missing below the committed length of chain {chain}."
            )
    staged: list[tuple[str, dict[str, tuple[bytes, int, int]]]] = []  # newest first
    if needs_segment:
        if not record.segments:
            raise CorruptRunError(f"Chain {chain}: the commit record names no staged segment.")
        names = [f"{CHAINS}/{chain}/{s}" for s in reversed(record.segments)]
        found = run_dir.read_many(names, missing_ok=True)
        for name in names:
            if name not in found:
                raise SegmentGone(name)
            staged.append((run_dir.url(name), parse_segment(found[name], run_dir.url(name))))
    out = []
    for array, lo, hi in requests:
        pieces = []
        for k in range(lo // array.chunk, -(-hi // array.chunk)):
            c = array.chunk
            a, b = max(lo, k * c) - k * c, min(hi, (k + 1) * c) - k * c
            if is_final(array, record, k):
                key = array.chunk_key(chain, k)
                values = decode_blob(
                    blobs[key], array.dtype, (1, c, *array.shape), compression,
                    f"Chunk {run_dir.url(key)}",
                )[0]  # fmt: skip
                pieces.append(values[a:b])
            else:
                pieces.append(_staged_rows(staged, array, k * c + a, k * c + b, compression))
        if pieces:
            out.append(np.concatenate(pieces) if len(pieces) > 1 else pieces[0])
        else:
            out.append(np.empty((0, *array.shape), array.dtype))
    return out


def _staged_rows(
    staged: list[tuple[str, dict[str, tuple[bytes, int, int]]]],
    array: ArraySpec,
    lo: int,
    hi: int,
    compression: Compression,
) -> np.ndarray:
    """Staged rows ``lo:hi`` of ``array``, each from the newest segment holding it."""
    out = np.empty((hi - lo, *array.shape), array.dtype)
    missing = np.ones(hi - lo, bool)
    for url, entries in staged:
        if array.key not in entries:
            continue
        blob, first_row, rows = entries[array.key]
        a, b = max(lo, first_row), min(hi, first_row + rows)
        if a >= b or not missing[a - lo : b - lo].any():
            continue
        where = f"The segment {url} ({array.key})"
        values = decode_blob(blob, array.dtype, (rows, *array.shape), compression, where)
        if values.dtype != out.dtype:  # strings: as wide as the widest stored
            out = out.astype(np.result_type(out.dtype, values.dtype))
        take = missing[a - lo : b - lo]
        out[a - lo : b - lo][take] = values[a - first_row : b - first_row][take]
        missing[a - lo : b - lo] = False
        if not missing.any():
            return out
    urls = ", ".join(url for url, _ in staged)
    first = lo + int(np.argmax(missing))
    raise CorruptRunError(f"The segments {urls} lack staged row {first} of {array.key}.")
