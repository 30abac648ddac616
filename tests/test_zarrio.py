"""Every metadata document ``mcbackend.zarrio`` writes by hand, parsed by zarr-python 3's own
metadata model: each field it sets must come back unchanged (``benchmarks/zarr_metadata.py``
measures why the documents are not produced by zarr-python itself)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from zarr.core.buffer import default_buffer_prototype
from zarr.core.group import GroupMetadata
from zarr.core.metadata.v3 import ArrayV3Metadata

from mcbackend.zarrio import ArrayAppender, Compression, group_document

DTYPES = [
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64", "complex64", "complex128", "<U0",
]  # fmt: skip


def zarr_roundtrip(doc: dict) -> tuple[ArrayV3Metadata, dict]:
    """zarr-python's parse of ``doc``, and its own serialisation of what it parsed."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # zarr warns about documents it only half understands
        meta = ArrayV3Metadata.from_dict(dict(doc))
        out = meta.to_buffer_dict(default_buffer_prototype())["zarr.json"].to_bytes()
    return meta, json.loads(out)


@pytest.mark.parametrize("dimension_names", [None, ["draw", "x_dim_0", "x_dim_1"]])
@pytest.mark.parametrize("compression", ["blosc", "zstd", None])
@pytest.mark.parametrize("dtype", DTYPES)
def test_array_documents_parse_in_zarr_python(dtype, compression, dimension_names):
    attributes = {"mcbackend": {"name": "x/ü"}}
    appender = ArrayAppender(
        "chain_0/draws/x", np.dtype(dtype), (2, 3), 64, Compression(compression),
        attributes, dimension_names,
    )  # fmt: skip
    appender.length = 130
    doc = json.loads(appender.document())
    meta, again = zarr_roundtrip(doc)

    assert again.pop("storage_transformers") == []  # zarr-python's default, left out by us
    assert again == doc  # every field we write means to zarr-python what we meant
    assert meta.shape == (130, 2, 3)
    assert meta.chunk_grid.chunk_shape == (64, 2, 3)
    assert meta.chunk_key_encoding.encode_chunk_key((2, 0, 0)) == "c/2/0/0"
    assert meta.attributes == attributes
    assert meta.dimension_names == (None if dimension_names is None else tuple(dimension_names))
    native = meta.data_type.to_native_dtype()
    if dtype == "<U0":
        assert native.kind in ("T", "U", "O")  # zarr-python reads str as variable width
    else:
        assert native == np.dtype(dtype)
        assert meta.fill_value == np.zeros((), dtype)[()]
    names = [type(c).__name__ for c in meta.codecs]
    assert names[-1] == "Crc32cCodec"
    assert len(names) == (2 if compression is None else 3)
    assert Compression.from_codecs(again["codecs"]) == Compression(compression)


@pytest.mark.parametrize("attributes", [{}, {"mcbackend": {"chain_number": 3, "draws": 1024}}])
def test_group_documents_parse_in_zarr_python(attributes):
    attributes = {**attributes, "text": "ü/%"}
    doc = json.loads(group_document(attributes))
    meta = GroupMetadata.from_dict(dict(doc))
    assert meta.zarr_format == 3
    assert meta.attributes == attributes
    assert meta.to_dict() == doc
