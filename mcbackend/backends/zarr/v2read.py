"""Reading a Zarr v2 chain strictly: committed lengths from its record, complete chunks from
the arrays, the staged tail from the newest segment. A missing or damaged piece below the
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
    staged: dict[str, tuple[bytes, int, int]] = {}
    segment = ""
    if needs_segment:
        if not record.segments:
            raise CorruptRunError(f"Chain {chain}: the commit record names no staged segment.")
        segment = f"{CHAINS}/{chain}/{record.segments[-1]}"
        try:
            staged = parse_segment(run_dir.read_bytes(segment), run_dir.url(segment))
        except FileNotFoundError as ex:
            raise SegmentGone(segment) from ex
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
                pieces.append(
                    _staged_rows(
                        run_dir.url(segment), staged, array, k * c + a, k * c + b, compression
                    )
                )
        if pieces:
            out.append(np.concatenate(pieces) if len(pieces) > 1 else pieces[0])
        else:
            out.append(np.empty((0, *array.shape), array.dtype))
    return out


def _staged_rows(
    segment_url: str,
    staged: dict[str, tuple[bytes, int, int]],
    array: ArraySpec,
    lo: int,
    hi: int,
    compression: Compression,
) -> np.ndarray:
    where = f"The segment {segment_url}"
    if array.key not in staged:
        raise CorruptRunError(f"{where} lacks the staged rows of {array.key}.")
    blob, first_row, rows = staged[array.key]
    if not first_row <= lo <= hi <= first_row + rows:
        raise CorruptRunError(f"{where} holds rows {first_row}..{first_row + rows} of {array.key}.")
    values = decode_blob(
        blob, array.dtype, (rows, *array.shape), compression, f"{where} ({array.key})"
    )
    return values[lo - first_row : hi - first_row]
