"""Zarr v2 layout (``formats/zarr.md``, "Version 2"): which arrays a run holds and their
documents. Pure functions of the ``RunMeta``, no I/O.

Group and node names, dims and what each array is made of come from
``mcbackend._arviz_layout.sampled_layout``, as for ``Run.to_inferencedata``, so a plain xarray
reader and ``to_inferencedata`` agree. Fixed-shape variables no group shows (PyMC's warm-up
markers and ``warning``) are arrays under ``_mcbackend/hidden/<group>/`` (``ArraySpec.hidden``);
dynamic shapes are kept per chain (``ragged``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from ... import __version__
from ..._arviz_layout import (
    GroupMember,
    hidden_variables,
    sampled_layout,
    stored_member,
    tree_name,
)
from ..._inferencedata import attributes_to_python, find_warmup_stat
from ..._pymc_layout import group_attrs, is_pymc_run
from ..._validation import VariableSpec
from ...codec import Section, encode_name
from ...meta import RunMeta, Variable
from ...npproto.utils import ndarray_to_numpy
from ...zarrio import Compression, data_type

__all__ = [
    "COORD_CHUNK",
    "HIDDEN_ARRAYS",
    "SAMPLED",
    "ArraySpec",
    "Names",
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
#: Where fixed-shape variables no ArviZ group shows are arrays, as in their group.
HIDDEN_ARRAYS = "_mcbackend/hidden"
COORD_CHUNK = 1 << 16
MAX_CHUNK_DRAWS = 1 << 16
STR_CHUNK_DRAWS = 1024


class Names:
    """How a run's arrays are named (root ``attributes.mcbackend.names``): ``ARVIZ`` as
    ``to_inferencedata`` names them (a PyMC run as PyMC does), or, in runs written before
    that key existed, ``STORED``: one array per stored variable, under its stored name."""

    ARVIZ = "arviz"
    STORED = "stored"


@dataclass(frozen=True)
class ArraySpec:
    """One sampled array: ``<group>/<node>`` of shape ``[chain, draw, *shape]``, holding one
    stored variable or several stacked along its last axis (``member.parts``)."""

    group: str
    node: str
    member: GroupMember
    section: Section
    chunk: int
    #: Not in the ArviZ group: at ``_mcbackend/hidden/<group>/<node>`` (xarray does not see it).
    hidden: bool = False

    @property
    def key(self) -> str:
        return (
            f"{HIDDEN_ARRAYS}/{self.group}/{self.node}"
            if self.hidden
            else f"{self.group}/{self.node}"
        )

    @property
    def dims(self) -> tuple[str, ...]:
        return self.member.dims

    @property
    def shape(self) -> tuple[int, ...]:
        return self.member.shape

    @property
    def dtype(self) -> np.dtype:
        return self.member.dtype

    @property
    def is_str(self) -> bool:
        return self.member.is_str

    def chunk_key(self, chain: int, k: int) -> str:
        return "/".join([self.key, "c", str(chain), str(k), *["0"] * len(self.shape)])


def chunk_draws(member: GroupMember, chunk_bytes: int, max_draws: int = MAX_CHUNK_DRAWS) -> int:
    """Draws per chunk: ``chunk_bytes`` uncompressed, 1 to ``max_draws`` (1024 for strings)."""
    if member.is_str:
        return min(STR_CHUNK_DRAWS, max_draws)
    draw_bytes = member.dtype.itemsize * int(np.prod(member.shape, dtype=int))
    return int(np.clip(chunk_bytes // max(draw_bytes, 1), 1, max_draws))


def has_warmup(meta: RunMeta) -> bool:
    return find_warmup_stat([s.name for s in meta.sample_stats]) is not None


def array_members(meta: RunMeta, section: Section, names: str = Names.ARVIZ) -> list[GroupMember]:
    """The members of a section's groups that are arrays (not of dynamic shape)."""
    members = sampled_layout(
        meta, section, attributes_to_python(meta.attributes), as_pymc=names == Names.ARVIZ
    )
    return [m for m in members if not m.is_ragged]


def _hidden(meta: RunMeta, section: Section, names: str) -> list[Variable]:
    return hidden_variables(meta, section, array_members(meta, section, names))


def ragged(meta: RunMeta, names: str = Names.ARVIZ) -> list[tuple[Section, Variable]]:
    """The stored variables of dynamic shape, kept per chain in ``_mcbackend/`` (``v2chain``)
    and read through mcbackend only."""
    return [
        (section, var)
        for section in Section
        for var in _hidden(meta, section, names)
        if VariableSpec.from_variable(var).is_ragged
    ]


def sampled_arrays(
    meta: RunMeta, chunk_bytes: int, max_draws: int = MAX_CHUNK_DRAWS, names: str = Names.ARVIZ
) -> list[ArraySpec]:
    """Every array of the sampled groups (``warmup_*`` only when a warm-up stat exists), then
    the hidden ones: fixed-shape stored variables no group shows (PyMC's ``in_warmup``, ...)."""
    arrays = []
    warmup = has_warmup(meta)
    for hide in (False, True):
        for group, (section, is_warmup) in SAMPLED.items():
            if is_warmup and not warmup:
                continue
            if hide:
                hidden = _hidden(meta, section, names)
                members = [
                    stored_member(v) for v in hidden if not VariableSpec.from_variable(v).is_ragged
                ]
            else:
                members = array_members(meta, section, names)
            for member in members:
                chunk = chunk_draws(member, chunk_bytes, max_draws)
                node = encode_name(member.name)
                arrays.append(ArraySpec(group, node, member, section, chunk, hidden=hide))
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
    name = array.member.name
    attributes = {"mcbackend": {"name": name}} if encode_name(name) != tree_name(name) else {}
    return array_document(
        (chains, draws, *array.shape),
        (1, array.chunk, *array.shape),
        array.dtype,
        ("chain", "draw", *array.dims),
        compression,
        attributes,
    )


def coordinate_files(
    group: str, sizes: dict[str, int], coords: dict[str, np.ndarray], compression: Compression
) -> dict[str, bytes]:
    """Coordinate arrays of the dims (name: length) a group uses, one chunk each: the run's
    coordinate when its length fits, else ``0..n-1`` (as ``to_inferencedata`` indexes them)."""
    files = {}
    for dim, size in sorted(sizes.items()):
        fits = dim in coords and len(coords[dim]) == size
        labels = np.asarray(coords[dim]) if fits else np.arange(size, dtype=np.int64)
        if labels.dtype.kind not in "iufb":
            labels = labels.astype(str)
        files.update(_label_files(f"{group}/{dim}", labels, dim, compression))
    return files


def _label_files(path: str, labels: np.ndarray, dim: str, compression: Compression) -> dict:
    """One coordinate array. Text labels are ``fixed_length_utf32`` (as xarray writes them), so
    plain readers get the ``<U`` labels ``to_inferencedata`` has, not a variable-width type."""
    if labels.dtype.kind != "U":
        doc = array_document(labels.shape, labels.shape, labels.dtype, (dim,), compression)
        return {f"{path}/zarr.json": doc, f"{path}/c/0": compression.encode(labels)}
    labels = labels.astype(f"<U{max(labels.dtype.itemsize // 4, 1)}")
    codes = labels.view("<u4")  # UTF-32LE code points, the bytes codec's layout
    doc = json.loads(array_document(labels.shape, labels.shape, codes.dtype, (dim,), compression))
    doc["data_type"] = {
        "name": "fixed_length_utf32",
        "configuration": {"length_bytes": labels.dtype.itemsize},
    }
    doc["fill_value"] = ""
    return {f"{path}/zarr.json": json.dumps(doc).encode(), f"{path}/c/0": compression.encode(codes)}


def run_coords(meta: RunMeta) -> dict[str, np.ndarray]:
    return {c.name: ndarray_to_numpy(c.values) for c in meta.coordinates if c.values}


def is_pymc(meta: RunMeta) -> bool:
    stats = [s.name for s in meta.sample_stats]
    return is_pymc_run(stats, attributes_to_python(meta.attributes))


def group_attributes(
    meta: RunMeta,
    sampled: bool,
    created_at: str,
    *,
    tuning_steps: int = 0,
    sampling_time: float | None = None,
) -> dict[str, Any]:
    """ArviZ's ``make_attrs`` keys, then the run's attributes (as ``to_inferencedata``); for
    a PyMC run the attributes PyMC's groups carry (``tuning_steps``, ``sampling_time``: what
    the chains' commit records say, ``v2commits.record_attributes``)."""
    run_attrs = attributes_to_python(meta.attributes)
    if is_pymc(meta):
        made = group_attrs(
            run_attrs, sampled=sampled, sampling_time=sampling_time, tuning_steps=tuning_steps
        )
        return json_safe({**made, "created_at": created_at})
    attrs = {
        "created_at": created_at,
        "creation_library": "mcbackend",
        "creation_library_version": __version__,
        "creation_library_language": "Python",
        "sample_dims": ["chain", "draw"] if sampled else [],
    }
    attrs.update(json_safe(run_attrs))
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
        if not members and not (observed and is_pymc(meta)):
            continue  # PyMC's DataTree has observed_data even when empty, as to_inferencedata
        files[f"{group}/zarr.json"] = _group_document(group_attributes(meta, False, created_at))
        used: dict[str, int] = {}
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
            shape = value.shape
            used.update(zip(dims, shape))
            node = encode_name(dvar.name)
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
