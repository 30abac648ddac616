"""Writing Zarr v3 arrays that grow along their first axis, without a Zarr library round trip.

Zarr-python spends about a millisecond of overhead per array operation; a chain with
hundreds of variables would spend most of its time there. Even its metadata model alone
(``ArrayV3Metadata.update_shape`` + ``to_buffer_dict``) costs 4-8x this module's JSON per
array and flush (``benchmarks/zarr_metadata.py``); ``tests/test_zarrio.py`` checks that
zarr-python parses every document written here to the same fields. Appending is simple enough to do
directly: every flush encodes whole chunks (the last, partial chunk padded with the fill
value and kept in memory so the next flush rewrites it without reading it back) and returns
the files to write, metadata included. Reading goes through zarr-python.

Only what ``formats/zarr.md`` specifies is written: regular chunk grid, default chunk keys
(``c/i/0/...``), ``bytes`` (little endian) or ``vlen-utf8`` serialisation, ``blosc`` or
``zstd`` compression, and a ``crc32c`` checksum on every chunk.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import google_crc32c
import numcodecs
import numpy as np

__all__ = ["Compression", "ArrayAppender", "group_document"]

_VLEN_UTF8 = numcodecs.VLenUTF8()


@dataclass(frozen=True)
class Compression:
    """The bytes-to-bytes compressor: ``"blosc"`` (LZ4 + byte shuffle), ``"zstd"`` or ``None``."""

    name: str | None = "blosc"
    level: int = 5

    def __post_init__(self) -> None:
        if self.name not in ("blosc", "zstd", None):
            raise ValueError(f"Unknown compression {self.name!r}; use 'blosc', 'zstd' or None.")

    def codecs(self, dtype: np.dtype) -> list[dict[str, Any]]:
        """The array's ``codecs`` metadata."""
        if dtype.kind == "U":
            codecs: list[dict[str, Any]] = [{"name": "vlen-utf8", "configuration": {}}]
        elif dtype.itemsize == 1:
            codecs = [{"name": "bytes"}]
        else:
            codecs = [{"name": "bytes", "configuration": {"endian": "little"}}]
        typesize = 1 if dtype.kind == "U" else dtype.itemsize
        if self.name == "blosc":
            shuffle = "shuffle" if typesize > 1 else "noshuffle"
            config = {
                "cname": "lz4",
                "clevel": self.level,
                "shuffle": shuffle,
                "typesize": typesize,
            }
            codecs.append({"name": "blosc", "configuration": {**config, "blocksize": 0}})
        elif self.name == "zstd":
            codecs.append(
                {"name": "zstd", "configuration": {"level": self.level, "checksum": False}}
            )
        codecs.append({"name": "crc32c"})
        return codecs

    @classmethod
    def from_codecs(cls, codecs: list[Mapping[str, Any]]) -> Compression:
        """Recognise codecs this module wrote; anything else cannot be appended to."""
        names = [c["name"] for c in codecs]
        if names[-1:] != ["crc32c"] or names[0] not in ("bytes", "vlen-utf8") or len(names) > 3:
            raise ValueError(f"Cannot append to an array with codecs {names}.")
        if len(names) == 2:
            return cls(None)
        config = codecs[1].get("configuration", {})
        if names[1] == "blosc" and config.get("cname") == "lz4":
            return cls("blosc", int(config["clevel"]))
        if names[1] == "zstd":
            return cls("zstd", int(config["level"]))
        raise ValueError(f"Cannot append to an array with codecs {names}.")

    def encode(self, chunk: np.ndarray) -> bytes:
        raw: bytes | np.ndarray
        if chunk.dtype.kind == "U":
            # a bytearray, which crc32c refuses (with compression None it is hashed as it is)
            raw = bytes(_VLEN_UTF8.encode(chunk.astype(object).ravel()))
            itemsize = 1
        else:
            chunk = np.ascontiguousarray(chunk, dtype=chunk.dtype.newbyteorder("<"))
            raw = chunk.view(np.uint8).ravel()
            itemsize = chunk.dtype.itemsize
        if self.name == "blosc":
            shuffle = numcodecs.Blosc.SHUFFLE if itemsize > 1 else numcodecs.Blosc.NOSHUFFLE
            codec = numcodecs.Blosc("lz4", self.level, shuffle, blocksize=0)
            raw = codec.encode(np.frombuffer(raw, dtype=f"V{itemsize}") if itemsize > 1 else raw)
        elif self.name == "zstd":
            raw = numcodecs.Zstd(level=self.level).encode(raw)
        checksum = np.uint32(google_crc32c.value(raw)).tobytes()
        return b"".join([raw, checksum])


def fill_value(dtype: np.dtype) -> Any:
    if dtype.kind == "U":
        return ""
    if dtype.kind == "b":
        return False
    if dtype.kind == "c":
        return [0.0, 0.0]
    if dtype.kind == "f":
        return 0.0
    return 0


def data_type(dtype: np.dtype) -> str:
    return "string" if dtype.kind == "U" else dtype.name


def group_document(attributes: Mapping[str, Any]) -> bytes:
    doc = {"zarr_format": 3, "node_type": "group", "attributes": dict(attributes)}
    return json.dumps(doc, ensure_ascii=False).encode()


@dataclass
class ArrayAppender:
    """One Zarr array that grows along axis 0; ``append`` returns the files to write.

    ``path`` is relative to the store root. ``tail`` holds the rows already stored in the
    last, partial chunk.
    """

    path: str
    dtype: np.dtype
    inner_shape: tuple[int, ...]
    chunk_length: int
    compression: Compression
    attributes: dict[str, Any] = field(default_factory=dict)
    dimension_names: list[str] | None = None
    length: int = 0
    tail: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.tail is None:
            self.tail = np.empty((0, *self.inner_shape), dtype=self.dtype)

    def document(self) -> bytes:
        doc: dict[str, Any] = {
            "zarr_format": 3,
            "node_type": "array",
            "shape": [self.length, *self.inner_shape],
            "data_type": data_type(self.dtype),
            "chunk_grid": {
                "name": "regular",
                "configuration": {"chunk_shape": [self.chunk_length, *self.inner_shape]},
            },
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
            "fill_value": fill_value(self.dtype),
            "codecs": self.compression.codecs(self.dtype),
            "attributes": self.attributes,
        }
        if self.dimension_names is not None:
            doc["dimension_names"] = list(self.dimension_names)
        return json.dumps(doc, ensure_ascii=False).encode()

    def resume(self, length: int, read_rows: Callable[[int, int], np.ndarray]) -> None:
        """Continue after ``length`` rows; rows stored beyond it are overwritten later."""
        start = length - length % self.chunk_length
        self.length = length
        self.tail = np.asarray(read_rows(start, length)).astype(self.dtype)

    def append(self, rows: np.ndarray) -> dict[str, bytes]:
        """Encode ``rows`` as the next rows; returns {path: bytes} of chunks and metadata."""
        if not len(rows):
            return {}
        assert self.tail is not None
        rows = np.asarray(rows, dtype=self.dtype if self.dtype.kind != "U" else None)
        if len(self.tail):
            rows = np.concatenate([self.tail, rows])
        first_chunk = (self.length - len(self.tail)) // self.chunk_length
        files = {}
        zeros = "/0" * len(self.inner_shape)
        for i, lo in enumerate(range(0, len(rows), self.chunk_length)):
            piece = rows[lo : lo + self.chunk_length]
            if len(piece) < self.chunk_length:
                self.tail = piece
                piece = self._padded(piece)
            else:
                self.tail = rows[:0]
            files[f"{self.path}/c/{first_chunk + i}{zeros}"] = self.compression.encode(piece)
        self.length = (first_chunk * self.chunk_length) + len(rows)
        files[f"{self.path}/zarr.json"] = self.document()
        return files

    def _padded(self, piece: np.ndarray) -> np.ndarray:
        shape = (self.chunk_length, *self.inner_shape)
        if self.dtype.kind == "U":
            full = np.full(shape, "", piece.dtype)  # as wide as the longest string
        else:
            full = np.zeros(shape, self.dtype)
        full[: len(piece)] = piece
        return full
