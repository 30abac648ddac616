"""Zarr v2 layout (``formats/zarr.md``, "Version 2"): which arrays a run holds and their
documents. Pure functions of the ``RunMeta``, no I/O.

Group and node names, dims and group attributes come from ``mcbackend._inferencedata`` (one
call, ``sampled_layout``), so a plain xarray reader and ``Run.to_inferencedata`` agree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from ... import __version__
from ..._inferencedata import attributes_to_python, find_warmup_stat, sampled_layout, tree_name
from ..._validation import VariableSpec
from ...codec import Section, encode_name
from ...meta import RunMeta
from ...npproto.utils import ndarray_to_numpy
from ...zarrio import Compression, data_type

__all__ = [
    "COORD_CHUNK",
    "SAMPLED",
    "ArraySpec",
    "array_document",
    "chunk_draws",
    "data_group_files",
    "group_attributes",
    "sampled_arrays",
    "v2_fill_value",
]

#: The sampled groups, each with the section it holds and whether it is warm-up.
SAMPLED = {
    "posterior": (Section.DRAWS, False),
    "sample_stats": (Section.STATS, False),
    "warmup_posterior": (Section.DRAWS, True),
    "warmup_sample_stats": (Section.STATS, True),
}
COORD_CHUNK = 1 << 16
MAX_CHUNK_DRAWS = 1 << 16
STR_CHUNK_DRAWS = 1024


@dataclass(frozen=True)
class ArraySpec:
    """One sampled array: ``<group>/<node>`` of shape ``[chain, draw, *spec.shape]``."""

    group: str
    node: str
    spec: VariableSpec
    section: Section
    dims: tuple[str, ...]
    chunk: int

    @property
    def key(self) -> str:
        return f"{self.group}/{self.node}"

    @property
    def dtype(self) -> np.dtype:
        return self.spec.dtype

    def chunk_key(self, chain: int, k: int) -> str:
        return "/".join([self.key, "c", str(chain), str(k), *["0"] * len(self.spec.shape)])


def chunk_draws(spec: VariableSpec, chunk_bytes: int, max_draws: int = MAX_CHUNK_DRAWS) -> int:
    """Draws per chunk: ``chunk_bytes`` uncompressed, 1 to ``max_draws`` (1024 for strings)."""
    if spec.is_str:
        return min(STR_CHUNK_DRAWS, max_draws)
    draw_bytes = spec.dtype.itemsize * int(np.prod(spec.shape, dtype=int))
    return int(np.clip(chunk_bytes // max(draw_bytes, 1), 1, max_draws))


def has_warmup(meta: RunMeta) -> bool:
    return find_warmup_stat([s.name for s in meta.sample_stats]) is not None


def sampled_arrays(
    meta: RunMeta, chunk_bytes: int, max_draws: int = MAX_CHUNK_DRAWS
) -> list[ArraySpec]:
    """Every array of the sampled groups (``warmup_*`` only when a warm-up stat exists)."""
    arrays = []
    warmup = has_warmup(meta)
    for group, (section, is_warmup) in SAMPLED.items():
        if is_warmup and not warmup:
            continue
        for name, spec, dims in sampled_layout(meta, section):
            if spec.is_ragged:
                continue  # stored per chain in _mcbackend/ (``v2chain``), read via mcbackend
            node = encode_name(name)
            arrays.append(
                ArraySpec(
                    group,
                    node,
                    spec,
                    section,
                    tuple(dims),
                    chunk_draws(spec, chunk_bytes, max_draws),
                )
            )
    return arrays


def v2_fill_value(dtype: np.dtype) -> Any:
    """NaN for floats (as xarray and ArviZ expect of missing draws), zero/false/"" otherwise."""
    if dtype.kind == "f":
        return "NaN"
    if dtype.kind == "c":
        return ["NaN", "NaN"]
    if dtype.kind == "U":
        return ""
    if dtype.kind == "b":
        return False
    return 0


def fill_array(dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    if dtype.kind in "fc":
        return np.full(shape, np.nan, dtype)
    return np.zeros(shape, dtype)


def array_document(
    shape: tuple[int, ...],
    chunks: tuple[int, ...],
    dtype: np.dtype,
    dims: tuple[str, ...],
    compression: Compression,
    attributes: dict[str, Any] | None = None,
) -> bytes:
    doc = {
        "zarr_format": 3,
        "node_type": "array",
        "shape": list(shape),
        "data_type": data_type(dtype),
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(chunks)}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": v2_fill_value(dtype),
        "codecs": compression.codecs(dtype),
        "attributes": attributes or {},
        "dimension_names": list(dims),
    }
    return json.dumps(doc, ensure_ascii=False).encode()


def sampled_array_document(
    array: ArraySpec, chains: int, draws: int, compression: Compression
) -> bytes:
    name = array.spec.name
    attributes = {"mcbackend": {"name": name}} if encode_name(name) != tree_name(name) else {}
    return array_document(
        (chains, draws, *array.spec.shape),
        (1, array.chunk, *array.spec.shape),
        array.dtype,
        ("chain", "draw", *array.dims),
        compression,
        attributes,
    )


def coordinate_files(
    group: str, dims: set[str], coords: dict[str, np.ndarray], compression: Compression
) -> dict[str, bytes]:
    """Coordinate arrays of the named dims a group uses (one chunk each)."""
    files = {}
    for dim in sorted(dims):
        if dim not in coords:
            continue
        labels = np.asarray(coords[dim])
        if labels.dtype.kind not in "iufb":
            labels = labels.astype(str)
        files[f"{group}/{dim}/zarr.json"] = array_document(
            labels.shape, labels.shape, labels.dtype, (dim,), compression
        )
        files[f"{group}/{dim}/c/0"] = compression.encode(labels)
    return files


def run_coords(meta: RunMeta) -> dict[str, np.ndarray]:
    return {c.name: ndarray_to_numpy(c.values) for c in meta.coordinates if c.values}


def group_attributes(meta: RunMeta, sampled: bool, created_at: str) -> dict[str, Any]:
    """ArviZ's ``make_attrs`` keys, then the run's attributes (as ``to_inferencedata``)."""
    attrs = {
        "created_at": created_at,
        "creation_library": "mcbackend",
        "creation_library_version": __version__,
        "creation_library_language": "Python",
        "sample_dims": ["chain", "draw"] if sampled else [],
    }
    attrs.update(json_safe(attributes_to_python(meta.attributes)))
    attrs.setdefault("run_id", meta.rid)
    return attrs


def json_safe(values: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in values.items():
        if isinstance(value, np.ndarray):
            value = value.tolist()
        elif isinstance(value, np.generic):
            value = value.item()
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            value = str(value)
        out[key] = value
    return out


def data_group_files(meta: RunMeta, compression: Compression, created_at: str) -> dict[str, bytes]:
    """``observed_data``/``constant_data``: one array per data variable, written once."""
    files: dict[str, bytes] = {}
    coords = run_coords(meta)
    for group, observed in (("observed_data", True), ("constant_data", False)):
        members = [d for d in meta.data if d.is_observed == observed]
        if not members:
            continue
        files[f"{group}/zarr.json"] = _group_document(group_attributes(meta, False, created_at))
        used: set[str] = set()
        for dvar in members:
            if dvar.value is None:
                continue
            value = ndarray_to_numpy(dvar.value)
            if value.dtype.kind not in "iufcbU":
                continue  # object data: only through mcbackend
            dims = (
                tuple(dvar.dims)
                if len(dvar.dims) == value.ndim
                else tuple(f"{tree_name(dvar.name)}_dim_{i}" for i in range(value.ndim))
            )
            used.update(dims)
            node = encode_name(dvar.name)
            shape = value.shape
            files[f"{group}/{node}/zarr.json"] = array_document(
                shape, tuple(max(s, 1) for s in shape), value.dtype, dims, compression
            )
            if value.size:
                key = "/".join(["c", *["0"] * value.ndim]) if value.ndim else "c"
                files[f"{group}/{node}/{key}"] = compression.encode(value)
        files.update(coordinate_files(group, used, coords, compression))
    return files


def _group_document(attributes: dict[str, Any]) -> bytes:
    doc = {"zarr_format": 3, "node_type": "group", "attributes": attributes}
    return json.dumps(doc, ensure_ascii=False).encode()


group_document = _group_document
