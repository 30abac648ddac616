"""Runs as Zarr v3 groups on any fsspec filesystem (layout: ``formats/zarr.md``).

::

    <root>/<rid>/                 Zarr group (attrs["mcbackend"]: format, version, rid)
        mcbackend.json, meta.pb   marker and RunMeta sidecar (see ``mcbackend.filestore``)
        chain_<n>/                group, attrs["mcbackend"]: {"chain_number", "draws" (committed)}
            draws/<name>          array (draw, *shape), dimension_names ("draw", *dims)
            stats/<name>          the same for sampler stats
            draws/<name>/{data,ndims,shapes}   for dynamic shapes: flat values + per-draw shapes
"""

from __future__ import annotations

import asyncio
import itertools
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import zarr
import zarr.storage
from zarr.codecs import Crc32cCodec, ZstdCodec
from zarr.core.sync import sync

from ..core import Backend, Chain, Run
from ..filestore import (
    DrawBuffer,
    Location,
    RunNotFoundError,
    create_run_dir,
    encode_name,
    list_runs,
    positions,
    read_run_info,
    read_selected,
    register_for_exit_flush,
    runs_dataframe,
)
from ..meta import ChainMeta, RunMeta, Variable
from ..validation import VariableSpec

__all__ = ["ZarrBackend", "ZarrChain", "ZarrRun", "FORMAT", "FORMAT_VERSION"]

FORMAT = "zarr"
FORMAT_VERSION = 1
TARGET_CHUNK_BYTES = 1 << 20


def default_compressors() -> list:
    """Zstandard, then a CRC-32C checksum of every chunk (verified on every read)."""
    return [ZstdCodec(level=1), Crc32cCodec()]


def open_store(location: Location, *, read_only: bool) -> zarr.abc.store.Store:
    if location.is_local:
        return zarr.storage.LocalStore(location.path, read_only=read_only)
    return zarr.storage.FsspecStore.from_url(
        location.url(), storage_options=dict(location.storage_options), read_only=read_only
    )


class ColumnWriter:
    """Reads and writes one variable's column inside a chain group."""

    def __init__(self, parent: zarr.Group, var: Variable) -> None:
        self.spec = VariableSpec.from_variable(var)
        self.key = encode_name(var.name)
        self.parent = parent
        self.dims = _dims(var)
        self._array: zarr.Array | None = None
        self._ragged_ends: tuple[int, int, int] | None = None  # draws, shapes, data stored
        self._ragged_arrays: tuple[zarr.Array, zarr.Array, zarr.Array] | None = None

    def create(self, chunk_draws: int | None, compressors: list) -> None:
        attrs = {"mcbackend": {"name": self.spec.name}}
        dtype = str if self.spec.is_str else self.spec.dtype
        if self.is_ragged:
            group = self.parent.create_group(self.key, attributes=attrs)
            n = chunk_draws or 1024
            group.create_array(
                "data", shape=(0,), chunks=(n * 8,), dtype=dtype, compressors=compressors
            )
            group.create_array(
                "ndims", shape=(0,), chunks=(n,), dtype="int64", compressors=compressors
            )
            group.create_array(
                "shapes", shape=(0,), chunks=(n,), dtype="int64", compressors=compressors
            )
            return
        draw_bytes = max(int(np.prod(self.spec.shape)) * (self.spec.dtype.itemsize or 16), 1)
        n = chunk_draws or int(np.clip(TARGET_CHUNK_BYTES // draw_bytes, 16, 16384))
        self.parent.create_array(
            self.key,
            shape=(0, *self.spec.shape),
            chunks=(n, *self.spec.shape),
            dtype=dtype,
            compressors=compressors,
            dimension_names=("draw", *self.dims),
            attributes=attrs,
        )

    @property
    def is_ragged(self) -> bool:
        return self.spec.undefined_ndim or any(s <= 0 for s in self.spec.shape)

    # ---- rigid ------------------------------------------------------------------------

    def array(self, min_length: int = 0) -> zarr.Array:
        """The array, re-read from storage when a writer elsewhere may have grown it."""
        if self._array is None or self._array.shape[0] < min_length:
            self._array = self.parent[self.key]
        return self._array

    async def write(self, start: int, values: np.ndarray | list[np.ndarray]) -> None:
        """Store ``values`` as draws ``start, start + 1, ...``, dropping anything stored after."""
        if self.is_ragged:
            await self._write_ragged(start, values)
            return
        arr = self.array()._async_array
        await arr.resize((start + len(values), *arr.shape[1:]))
        await arr.setitem(slice(start, None), values)

    def read(self, lo: int, hi: int) -> np.ndarray:
        if self.is_ragged:
            return self._read_ragged(lo, hi)
        values = self.array(hi)[lo:hi]
        if self.spec.is_str:
            values = _to_str(values)
            return _object_rows([values[i, ...] for i in range(len(values))])
        return values

    # ---- ragged: flat data plus per-draw ndims and shapes -----------------------------

    def _ragged(self) -> tuple[zarr.Array, zarr.Array, zarr.Array]:
        if self._ragged_arrays is None:
            group = self.parent[self.key]
            self._ragged_arrays = (group["data"], group["ndims"], group["shapes"])
        return self._ragged_arrays

    def prepare(self, start: int) -> None:
        """Open array handles and find where draw ``start`` goes (before an async write)."""
        if not self.is_ragged:
            self.array()
            return
        _, ndims, shapes = self._ragged()
        if self._ragged_ends is None or self._ragged_ends[0] != start:
            old_ndims = ndims[:start]
            shape_offsets, data_offsets = self._offsets(old_ndims, shapes[: int(old_ndims.sum())])
            self._ragged_ends = (start, int(shape_offsets[-1]), int(data_offsets[-1]))

    def _offsets(self, ndims: np.ndarray, shapes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Start offsets into ``shapes`` and ``data`` for each draw (length n + 1)."""
        shape_offsets = np.concatenate([[0], np.cumsum(ndims)]).astype(np.int64)
        sizes = [int(np.prod(shapes[a:b])) for a, b in itertools.pairwise(shape_offsets)]
        return shape_offsets, np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])

    async def _write_ragged(self, start: int, values: list[np.ndarray]) -> None:
        data, ndims, shapes = self._ragged()
        _, shapes_end, data_end = self._ragged_ends
        new_ndims = np.array([v.ndim for v in values], dtype=np.int64)
        new_shapes = np.array([s for v in values for s in v.shape], dtype=np.int64)
        flat = [v.ravel() for v in values]
        new_data = np.concatenate(flat) if flat else np.empty(0, self.spec.dtype)
        for arr, offset, rows in [
            (data, data_end, new_data),
            (shapes, shapes_end, new_shapes),
            (ndims, start, new_ndims),
        ]:
            arr = arr._async_array
            await arr.resize((offset + len(rows),))
            if len(rows):
                await arr.setitem(slice(offset, None), rows)
        self._ragged_ends = (
            start + len(values),
            shapes_end + len(new_shapes),
            data_end + len(new_data),
        )

    def _read_ragged(self, lo: int, hi: int) -> np.ndarray:
        if self._ragged_arrays is not None and self._ragged_arrays[1].shape[0] < hi:
            self._ragged_arrays = None  # grown by a writer elsewhere
        data, ndims_arr, shapes_arr = self._ragged()
        ndims = ndims_arr[:hi]
        shape_offsets, data_offsets = self._offsets(ndims, shapes_arr[: int(ndims.sum())])
        shapes = shapes_arr[int(shape_offsets[lo]) : int(shape_offsets[hi])]
        flat = data[int(data_offsets[lo]) : int(data_offsets[hi])]
        if self.spec.is_str:
            flat = _to_str(flat)
        out = []
        for i in range(lo, hi):
            shape = shapes[
                shape_offsets[i] - shape_offsets[lo] : shape_offsets[i + 1] - shape_offsets[lo]
            ]
            chunk = flat[
                data_offsets[i] - data_offsets[lo] : data_offsets[i + 1] - data_offsets[lo]
            ]
            out.append(chunk.reshape(tuple(shape)).astype(self.spec.dtype, copy=False))
        return _object_rows(out)


def _to_str(values: np.ndarray) -> np.ndarray:
    """Zarr returns variable-length ``StringDType``; mcbackend hands out fixed-width ``str``."""
    return np.asarray(values).astype(object).astype(str)


def _object_rows(values: list[np.ndarray]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = v
    return out


class ZarrChain(Chain):
    """A chain stored as a Zarr group; appends are buffered and flushed in batches."""

    def __init__(
        self,
        cmeta: ChainMeta,
        rmeta: RunMeta,
        group: zarr.Group,
        *,
        flush_every: int,
        flush_seconds: float | None,
        read_only: bool,
    ) -> None:
        super().__init__(cmeta, rmeta)
        self._group = group
        self._read_only = read_only
        self._writers = {
            False: {v.name: ColumnWriter(group["draws"], v) for v in rmeta.variables},
            True: {v.name: ColumnWriter(group["stats"], v) for v in rmeta.sample_stats},
        }
        self._buffer = DrawBuffer(
            self._variable_specs.values(),
            self._stat_specs.values(),
            flush_every=flush_every,
            flush_seconds=flush_seconds,
        )
        self._committed = self._stored_length()
        self._writing = False
        register_for_exit_flush(self)

    def _stored_length(self) -> int:
        """The committed draw count, read fresh from storage."""
        group = zarr.open_group(self._group.store, path=self._group.path, mode="r")
        return int(group.attrs["mcbackend"]["draws"])

    # ---- writing ------------------------------------------------------------------------

    def _append(self, draw, stats) -> None:
        if self._read_only:
            raise PermissionError(f"Chain {self.cid} was opened read-only.")
        if not self._writing:
            self._committed = self._stored_length()
            self._writing = True
        self._buffer.append(draw, stats)
        if self._buffer.due(self._committed):
            self.flush()

    def flush(self) -> None:
        """Write buffered draws, then record the new committed length (the commit point)."""
        n = len(self._buffer)
        if n:
            for writers in self._writers.values():
                for writer in writers.values():
                    writer.prepare(self._committed)
            sync(self._write_columns(n))
            self._committed += n
            self._buffer.reset()

    async def _write_columns(self, n: int) -> None:
        """All columns concurrently (one round of requests), then the chain's draw count."""
        writes = []
        for is_stat, writers in self._writers.items():
            columns = self._buffer.columns(is_stat).columns
            writes.extend(
                w.write(self._committed, columns[name][:n]) for name, w in writers.items()
            )
        await asyncio.gather(*writes)
        attrs = {"chain_number": self.cmeta.chain_number, "draws": self._committed + n}
        await self._group._async_group.update_attributes({"mcbackend": attrs})

    # ---- reading ------------------------------------------------------------------------

    def __len__(self) -> int:
        if not self._writing:
            self._committed = self._stored_length()
        return self._committed + len(self._buffer)

    def _get_values(self, spec, slc, *, is_stat):
        writer = self._writers[is_stat][spec.name]
        idx = positions(slc, len(self))
        buffered = self._buffer.columns(is_stat)
        result = read_selected(
            idx,
            self._committed,
            writer.read,
            lambda s: buffered.get(spec.name, s),
        )
        if spec.is_rigid and result.dtype == object:  # pragma: no cover - defensive
            result = np.stack(result)
        return result

    def _lazy_values(self, spec, length, *, is_stat):
        if spec.is_rigid and length <= self._committed:
            import dask.array as da

            arr = self._writers[is_stat][spec.name].array(length)
            return da.from_zarr(arr)[:length]
        return self._get_values(spec, slice(0, length), is_stat=is_stat)

    def close(self) -> None:
        self.flush()


def _dims(var: Variable) -> list[str]:
    if var.dims and len(var.dims) == len(var.shape):
        return list(var.dims)
    return [f"{encode_name(var.name)}_dim_{i}" for i in range(len(var.shape))]


class ZarrRun(Run):
    """A run stored as a Zarr group at ``<root>/<rid>``."""

    def __init__(
        self,
        meta: RunMeta,
        location: Location,
        *,
        flush_every: int = 1024,
        flush_seconds: float | None = 10.0,
        chunk_draws: int | None = None,
        compressors: list | None = None,
        read_only: bool = False,
    ) -> None:
        super().__init__(meta)
        self.location = location
        self._store = open_store(location, read_only=read_only)
        self._root = zarr.open_group(self._store, mode="r" if read_only else "r+")
        self._options = {
            "flush_every": flush_every,
            "flush_seconds": flush_seconds,
            "read_only": read_only,
        }
        self._chunk_draws = chunk_draws
        self._compressors = compressors if compressors is not None else default_compressors()
        self._chains: dict[int, ZarrChain] = {}

    @property
    def url(self) -> str:
        return self.location.url()

    def _init_chain(self, chain_number: int) -> ZarrChain:
        if self._options["read_only"]:
            raise PermissionError(f"Run {self.meta.rid} was opened read-only.")
        group = self._root.create_group(
            f"chain_{chain_number}",
            attributes={"mcbackend": {"chain_number": chain_number, "draws": 0}},
        )
        draws, stats = group.create_group("draws"), group.create_group("stats")
        for parent, variables in [(draws, self.meta.variables), (stats, self.meta.sample_stats)]:
            for var in variables:
                ColumnWriter(parent, var).create(self._chunk_draws, self._compressors)
        return self._chain(chain_number, group)

    def _chain(self, chain_number: int, group: zarr.Group) -> ZarrChain:
        if chain_number not in self._chains:
            cmeta = ChainMeta(rid=self.meta.rid, chain_number=chain_number)
            self._chains[chain_number] = ZarrChain(cmeta, self.meta, group, **self._options)
        return self._chains[chain_number]

    def get_chains(self) -> list[ZarrChain]:
        numbers = set(self._chains)
        with warnings.catch_warnings():
            # The marker and sidecar beside the chain groups are not Zarr nodes.
            warnings.filterwarnings("ignore", "Object at .* is not recognized", UserWarning)
            groups = list(self._root.groups())
        for name, group in groups:
            if name.startswith("chain_") and "mcbackend" in group.attrs:
                numbers.add(int(group.attrs["mcbackend"]["chain_number"]))
        return [self._chain(n, self._root[f"chain_{n}"]) for n in sorted(numbers)]


class ZarrBackend(Backend):
    """Stores each run as a Zarr v3 group at ``<url_or_path>/<rid>`` on any fsspec filesystem.

    Parameters
    ----------
    url_or_path
        Root directory: a local path or any fsspec URL (``file://``, ``memory://``, ``s3://``...).
    storage_options
        Passed to fsspec (e.g. S3 credentials and ``endpoint_url``).
    flush_every
        Flush whenever the chain length reaches a multiple of this many draws.
    flush_seconds
        Also flush at the first append this many seconds after the oldest unflushed draw.
    chunk_draws
        Draws per chunk; by default chosen per variable for chunks of about 1 MiB.
    compressors
        Zarr bytes-to-bytes codecs; default Zstandard plus a CRC-32C checksum.
    read_only
        Open runs for reading only.
    """

    def __init__(
        self,
        url_or_path: str,
        storage_options: Mapping[str, Any] | None = None,
        *,
        flush_every: int = 1024,
        flush_seconds: float | None = 10.0,
        chunk_draws: int | None = None,
        compressors: list | None = None,
        read_only: bool = False,
    ) -> None:
        self.location = Location.from_url(url_or_path, storage_options)
        self._run_options = dict(
            flush_every=flush_every,
            flush_seconds=flush_seconds,
            chunk_draws=chunk_draws,
            compressors=compressors,
            read_only=read_only,
        )

    def _init_run(self, meta: RunMeta) -> ZarrRun:
        if self._run_options["read_only"]:
            raise PermissionError(f"{self.location} was opened read-only.")
        run_dir = create_run_dir(self.location, meta, FORMAT, FORMAT_VERSION)
        zarr.open_group(
            open_store(run_dir, read_only=False),
            mode="a",
            attributes={
                "mcbackend": {"format": FORMAT, "format_version": FORMAT_VERSION, "rid": meta.rid}
            },
        )
        return ZarrRun(meta, run_dir, **self._run_options)

    def get_run(self, rid: str) -> ZarrRun:
        return open_zarr_run(self.location.child(rid), **self._run_options)

    def get_runs(self):
        """A DataFrame of the runs under the root: rid, created_at, format, meta."""
        return runs_dataframe(i for i in list_runs(self.location) if i.format == FORMAT)

    def __repr__(self) -> str:
        return f"ZarrBackend({self.location.url()!r})"


def open_zarr_run(run_dir: Location, **options) -> ZarrRun:
    info = read_run_info(run_dir)
    if info.format != FORMAT:
        raise RunNotFoundError(f"{run_dir} holds a {info.format} run, not a Zarr run.")
    if info.format_version > FORMAT_VERSION:
        raise ValueError(
            f"{run_dir} uses Zarr layout v{info.format_version}; this mcbackend reads up to "
            f"v{FORMAT_VERSION}. Upgrade mcbackend."
        )
    return ZarrRun(info.meta, run_dir, **options)
