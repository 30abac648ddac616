"""Zarr v2 blobs: chunks and staged segments, encoded and decoded strictly.

A chunk is encoded with the array's codecs (``mcbackend.zarrio.Compression``, CRC-32C last).
A segment holds staged rows of one chain's partial chunks (all of them, or those new since
the previous segment): the blobs (each encoded like a chunk of shape ``[rows, *shape]``), a
UTF-8 JSON index
``{"<group>/<node>": [offset, length, first_row, rows]}``, then the index length as 8 bytes
little endian. Decoding checks the CRC and raises ``CorruptRunError`` naming the key.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import google_crc32c
import numcodecs
import numpy as np

from ...errors import CorruptRunError
from ...zarrio import Compression

__all__ = ["decode_blob", "encode_segment", "parse_segment", "segment_name"]

_VLEN_UTF8 = numcodecs.VLenUTF8()


def segment_name(start: int, stop: int) -> str:
    return f"seg-{start:012d}-{stop:012d}"


def decode_blob(
    blob: bytes, dtype: np.dtype, shape: tuple[int, ...], compression: Compression, where: str
) -> np.ndarray:
    """Values of one encoded chunk (or segment part) of ``shape``; damage raises."""
    data, crc = blob[:-4], blob[-4:]
    if len(blob) < 4 or np.uint32(google_crc32c.value(data)).tobytes() != crc:
        raise CorruptRunError(f"{where} is damaged (CRC-32C mismatch).")
    try:
        if compression.name == "blosc":
            raw = numcodecs.Blosc().decode(data)
        elif compression.name == "zstd":
            raw = numcodecs.Zstd().decode(data)
        else:
            raw = data
        if dtype.kind == "U":
            values = _VLEN_UTF8.decode(raw).astype(str)
            return values.reshape(shape)
        little = np.frombuffer(raw, dtype=dtype.newbyteorder("<"))
        return little.reshape(shape).astype(dtype)
    except CorruptRunError:
        raise
    except Exception as ex:
        raise CorruptRunError(f"{where} cannot be decoded: {ex}") from ex


def encode_segment(tails: dict[str, tuple[int, np.ndarray]], encoded: Mapping[str, bytes]) -> bytes:
    """One segment from ``{array key: (first_row, rows)}`` and each key's encoded rows."""
    index, blobs, offset = {}, [], 0
    for key, (first_row, rows) in tails.items():
        blob = encoded[key]
        index[key] = [offset, len(blob), first_row, len(rows)]
        blobs.append(blob)
        offset += len(blob)
    header = json.dumps(index, ensure_ascii=False).encode()
    return b"".join([*blobs, header, len(header).to_bytes(8, "little")])


def parse_segment(blob: bytes, where: str) -> dict[str, tuple[bytes, int, int]]:
    """``{array key: (encoded rows, first_row, rows)}`` of a segment."""
    try:
        size = int.from_bytes(blob[-8:], "little")
        if not 0 < size <= len(blob) - 8:
            raise ValueError("index length out of range")
        index = json.loads(blob[-8 - size : -8])
        out = {}
        for key, (offset, length, first_row, rows) in index.items():
            if offset + length > len(blob) - 8 - size:
                raise ValueError(f"entry {key} past the index")
            out[key] = (blob[offset : offset + length], int(first_row), int(rows))
        return out
    except (ValueError, TypeError) as ex:
        raise CorruptRunError(f"The segment {where} is damaged: {ex}") from ex
