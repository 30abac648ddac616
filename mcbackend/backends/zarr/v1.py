"""Zarr layout version 1 (``formats/zarr.md``): read forever, written on request.

::

    <root>/<rid>/                 Zarr group; attrs["mcbackend"]: format, format_version, rid
        mcbackend.json, meta.pb   marker and RunMeta sidecar (see ``mcbackend.files.layout``)
        chain_<n>/                group; attrs["mcbackend"]: chain_number, draws (committed)
            draws/<name>          array (draw, *shape), dimension_names ("draw", *dims)
            stats/<name>          the same for sampler stats
            draws/<name>/{data,ndims,shapes}   dynamic shapes: flat values + per-draw shapes

Appends are buffered; a flush encodes whole chunks (``mcbackend.zarrio``), writes them and
the grown array metadata in one batch, and then, as the commit point, the chain's draw count.
Reads go through zarr-python, which verifies every chunk's CRC-32C.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import zarr
import zarr.storage
from zarr.abc.store import Store
from zarr.core.sync import sync

from ..._validation import VariableSpec
from ...codec import Ragged, Section, encode_name, ragged_draws, shape_offsets, str_array, str_draws
from ...errors import CorruptRunError
from ...files import BufferedChain, DrawBuffer, FileRun, Location
from ...meta import ChainMeta, RunMeta, Variable
from ...zarrio import ArrayAppender, Compression, data_type, fill_value, group_document

__all__ = ["FORMAT", "FORMAT_VERSION", "ZarrChain", "ZarrRun", "prepare_v1_run"]

FORMAT = "zarr"
FORMAT_VERSION = 1
TARGET_CHUNK_BYTES = 1 << 20
VARIABLE_CHUNK_DRAWS = 1024
RAGGED_PARTS = ("data", "ndims", "shapes")


#: A chunk key below an array: ``.../c/<i>/0/...`` (array documents are ``zarr.json``).
_CHUNK_KEY = re.compile(r"(^|/)c(/\d+)+$")


class StrictStore(zarr.storage.WrapperStore):
    """Reads through zarr-python that raise on a missing chunk instead of filling it with the
    fill value: writers store every chunk below a chain's committed length, and readers ask
    for no other, so a missing one is damage."""

    def __init__(self, store: Store, location: Location) -> None:
        super().__init__(store)
        self.location = location

    def _with_store(self, store: Store) -> StrictStore:
        return type(self)(store, self.location)

    async def get(self, key, prototype, byte_range=None):
        found = await self._store.get(key, prototype, byte_range)
        if found is None and _CHUNK_KEY.search(key):
            raise CorruptRunError(
                f"Chunk {self.location.url(key)} is missing below the committed length."
            )
        return found


def open_store(location: Location, *, read_only: bool) -> StrictStore:
    """A zarr-python store for reading (``StrictStore``): on local disk ``LocalStore``,
    elsewhere the location's own filesystem (chained ones like ``zip://...::archive.zip``
    included), made async."""
    if location.is_local:
        return StrictStore(zarr.storage.LocalStore(location.path, read_only=read_only), location)
    fs = location.fs
    if fs.async_impl and not fs.asynchronous:
        fs = type(fs)(*fs.storage_args, **{**fs.storage_options, "asynchronous": True})
    elif not fs.async_impl:
        from fsspec.implementations.asyn_wrapper import AsyncFileSystemWrapper

        fs = AsyncFileSystemWrapper(fs, asynchronous=True)
    store = zarr.storage.FsspecStore(fs, path=location.path, read_only=read_only)
    return StrictStore(store, location)


def chunk_length_for(spec: VariableSpec, flush_every: int) -> int:
    """The largest divisor of ``flush_every`` giving chunks of at most ~1 MiB (at most
    ``VARIABLE_CHUNK_DRAWS`` draws for strings and dynamic shapes, whose chunks are padded
    and encoded element by element), so count-triggered flushes end on a chunk boundary."""
    if spec.is_rigid:
        draw_bytes = max(int(np.prod(spec.shape)) * spec.dtype.itemsize, 1)
        limit = max(TARGET_CHUNK_BYTES // draw_bytes, 1)
    else:
        limit = VARIABLE_CHUNK_DRAWS
    return next(d for d in range(min(limit, flush_every), 0, -1) if flush_every % d == 0)


class ZarrColumn:
    """One variable's stored values: a Zarr array, or for dynamic shapes a group of three."""

    def __init__(
        self, chain_path: str, section: Section, var: Variable, store: StrictStore
    ) -> None:
        self.spec = VariableSpec.from_variable(var)
        self.path = f"{chain_path}/{section.value}/{encode_name(var.name)}"
        self.dims = _dims(var)
        self.store = store
        self.attributes = {"mcbackend": {"name": var.name}}
        self.appenders: dict[str, ArrayAppender] = {}
        self._arrays: dict[str, zarr.Array] = {}
        self._unwritten: dict[str, bytes] = {}  # metadata still to write with the next flush

    @property
    def is_ragged(self) -> bool:
        return self.spec.is_ragged

    # ---- writing ------------------------------------------------------------------------

    def create(self, chunk_length: int, compression: Compression) -> None:
        """Start empty arrays. Their metadata is written with the first flush, so creating a
        chain with hundreds of variables costs no writes per variable."""
        if not self.is_ragged:
            self.appenders[""] = ArrayAppender(
                self.path, self.spec.dtype, self.spec.shape, chunk_length, compression,
                self.attributes, ["draw", *self.dims],
            )  # fmt: skip
            self._unwritten = {f"{self.path}/zarr.json": self.appenders[""].document()}
            return
        for part, dtype, n in [
            ("data", self.spec.dtype, chunk_length * 8),
            ("ndims", np.dtype("int64"), chunk_length),
            ("shapes", np.dtype("int64"), chunk_length),
        ]:
            self.appenders[part] = ArrayAppender(f"{self.path}/{part}", dtype, (), n, compression)
        self._unwritten = {f"{a.path}/zarr.json": a.document() for a in self.appenders.values()}
        self._unwritten[f"{self.path}/zarr.json"] = group_document(self.attributes)

    @property
    def parts(self) -> list[str]:
        """Array paths below the column: ``""`` (the column is the array) or the ragged three."""
        return list(RAGGED_PARTS) if self.is_ragged else [""]

    def metadata_paths(self) -> list[str]:
        return [f"{self.path}/{p}".rstrip("/") + "/zarr.json" for p in self.parts]

    def resume(self, length: int, documents: Mapping[str, bytes], create: Callable) -> None:
        """Prepare to append after draw ``length`` of an existing column (``create`` starts
        it afresh when it was never flushed)."""
        if any(path not in documents for path in self.metadata_paths()):
            if length:
                raise CorruptRunError(f"{self.path}: metadata missing for committed draws.")
            create(self)
            return
        for part in self.parts:
            path = f"{self.path}/{part}".rstrip("/")
            doc = json.loads(documents[f"{path}/zarr.json"])
            dtype = self.spec.dtype if part in ("", "data") else np.dtype("int64")
            self.appenders[part] = ArrayAppender(
                path, dtype, tuple(doc["shape"][1:]),
                doc["chunk_grid"]["configuration"]["chunk_shape"][0],
                Compression.from_codecs(doc["codecs"]),
                doc.get("attributes", {}), doc.get("dimension_names"),
            )  # fmt: skip
        if not self.is_ragged:
            self.appenders[""].resume(length, lambda lo, hi: self._read_raw("", lo, hi))
            return
        ndims = self._read_raw("ndims", 0, length)
        shape_starts, data_offsets = shape_offsets(
            ndims, self._read_raw("shapes", 0, int(ndims.sum()))
        )
        ends = {"ndims": length, "shapes": int(shape_starts[-1]), "data": int(data_offsets[-1])}
        for part, end in ends.items():
            self.appenders[part].resume(end, functools.partial(self._read_raw, part))

    def append(self, values: np.ndarray | list[np.ndarray]) -> dict[str, bytes]:
        """Encode the next draws; returns the files to write."""
        files, self._unwritten = self._unwritten, {}
        if not self.is_ragged:
            return files | self.appenders[""].append(np.asarray(values))
        ragged = Ragged.encode(values)
        data = ragged.data(self.spec.dtype)
        for part, rows in [("data", data), ("shapes", ragged.flat_shapes), ("ndims", ragged.ndims)]:
            files.update(self.appenders[part].append(np.asarray(rows, self.appenders[part].dtype)))
        return files

    # ---- reading ------------------------------------------------------------------------

    def part_path(self, part: str) -> str:
        return f"{self.path}/{part}".rstrip("/")

    def part_dtype(self, part: str) -> np.dtype:
        return self.spec.dtype if part in ("", "data") else np.dtype("int64")

    def url(self, path: str) -> str:
        return self.store.location.url(path)

    def array(self, part: str = "", min_length: int = 0) -> zarr.Array:
        """A zarr-python handle, re-opened when a writer elsewhere may have grown the array;
        metadata that disagrees with the variable, or fewer than ``min_length`` rows, raise
        ``CorruptRunError`` (nothing is read as fill values or in a wrong type)."""
        arr = self._arrays.get(part)
        if arr is None or arr.shape[0] < min_length:
            path = self.part_path(part)
            where = self.url(f"{path}/zarr.json")
            try:
                arr = zarr.open_array(self.store, path=path, mode="r", zarr_format=3)
            except Exception as ex:
                raise CorruptRunError(
                    f"{where}: array metadata missing or unreadable: {ex}"
                ) from ex
            problem = self._metadata_problem(part, arr)
            if problem:
                raise CorruptRunError(f"{where}: {problem}")
            self._arrays[part] = arr
        if arr.shape[0] < min_length:
            raise CorruptRunError(
                f"{self.url(self.part_path(part))}/zarr.json: shape {list(arr.shape)} holds "
                f"{arr.shape[0]} rows, {min_length} are committed."
            )
        return arr

    def _metadata_problem(self, part: str, arr: zarr.Array) -> str | None:
        """How an array's metadata differs from what the writer wrote for the variable."""
        doc: dict[str, Any] = dict(arr.metadata.to_dict())
        dtype = self.part_dtype(part)
        for key, want in [("data_type", data_type(dtype)), ("fill_value", fill_value(dtype))]:
            found = json.loads(json.dumps(doc.get(key), default=str))  # as in the document
            if found != want:
                return f"{key} is {found!r}, written as {want!r}."
        inner = tuple(self.spec.shape) if part == "" else ()
        if tuple(doc["shape"][1:]) != inner or len(arr.chunks) != len(doc["shape"]):
            return f"shape {doc['shape']} does not fit the variable's shape {list(inner)}."
        try:
            Compression.from_codecs(doc["codecs"])
        except (ValueError, KeyError, TypeError) as ex:
            return f"codecs differ from the written ones: {ex}"
        return None

    def chunk_problems(self, part: str, arr: zarr.Array, lo: int, hi: int) -> list[str]:
        """Each chunk holding rows ``lo:hi`` read alone: the missing or damaged ones, named."""
        step = arr.chunks[0]
        problems = []
        for i in range(lo // step, -(-hi // step)):
            try:
                arr[i * step : (i + 1) * step]
            except CorruptRunError as ex:
                problems.append(str(ex))
            except Exception as ex:
                key = "/".join([self.part_path(part), "c", str(i)] + ["0"] * (arr.ndim - 1))
                problems.append(
                    f"Chunk {self.url(key)} (rows {i * step}-{(i + 1) * step - 1}) is damaged: {ex}"
                )
        return problems

    def committed_ends(self, length: int) -> dict[str, int | None]:
        """The rows of each part a chain of ``length`` draws uses (``None``: unknown, its
        ``ndims``/``shapes`` are damaged)."""
        if not self.is_ragged:
            return {"": length}
        ends: dict[str, int | None] = {"ndims": length, "shapes": None, "data": None}
        try:
            ndims = self._read_raw("ndims", 0, length)
            shape_starts, data_offsets = shape_offsets(
                ndims, self._read_raw("shapes", 0, int(ndims.sum()))
            )
        except CorruptRunError:
            return ends  # reported part by part
        return {**ends, "shapes": int(shape_starts[-1]), "data": int(data_offsets[-1])}

    def verify(self, length: int) -> list[str]:
        """Metadata and every chunk below the committed length of each part."""
        problems = []
        for part, end in self.committed_ends(length).items():
            try:
                arr = self.array(part, end or 0)
            except CorruptRunError as ex:
                problems.append(str(ex))
                continue
            problems += self.chunk_problems(part, arr, 0, arr.shape[0] if end is None else end)
        return problems

    def as_draws(self, values: np.ndarray) -> np.ndarray:
        """Rows read from a fixed-shape array as ``get_draws`` returns them (in the declared
        dtype: stored little endian, a big-endian declaration reads back big endian)."""
        if self.spec.is_str:
            return str_draws(values if values.dtype.kind == "U" else str_array(values))
        return values.astype(self.spec.dtype, copy=False)

    async def read_async(self, lo: int, hi: int) -> np.ndarray:
        """``read`` of a fixed-shape column (after ``array(hi)`` opened it)."""
        return self.as_draws(np.asarray(await self._arrays[""]._async_array.getitem(slice(lo, hi))))

    def _read_raw(self, part: str, lo: int, hi: int) -> np.ndarray:
        if hi <= lo:
            shape = (0, *self.spec.shape) if part == "" else (0,)
            return np.empty(shape, dtype=self.part_dtype(part))
        arr = self.array(part, hi)
        try:
            values = np.asarray(arr[lo:hi])
        except CorruptRunError:
            raise
        except Exception as ex:
            problems = self.chunk_problems(part, arr, lo, hi) or [f"{ex}"]
            raise CorruptRunError(problems[0]) from ex
        if self.spec.is_str and part in ("", "data"):
            values = str_array(values)
        return values

    def read(self, lo: int, hi: int) -> np.ndarray:
        """Draws ``lo:hi``: an array for rigid variables, else an object array of draws."""
        if not self.is_ragged:
            return self.as_draws(self._read_raw("", lo, hi))
        ndims = self._read_raw("ndims", 0, hi)
        shapes = self._read_raw("shapes", 0, int(ndims.sum()))
        shape_starts, data_offsets = shape_offsets(ndims, shapes)
        flat = self._read_raw("data", int(data_offsets[lo]), int(data_offsets[hi]))
        draw_shapes = [shapes[shape_starts[i] : shape_starts[i + 1]] for i in range(lo, hi)]
        offsets = data_offsets[lo : hi + 1] - data_offsets[lo]
        return ragged_draws(flat, offsets, draw_shapes, self.spec.dtype)


def _dims(var: Variable) -> list[str]:
    if var.dims and len(var.dims) == len(var.shape):
        return list(var.dims)
    return [f"{encode_name(var.name)}_dim_{i}" for i in range(len(var.shape))]


async def _gather(coroutines) -> list:
    return await asyncio.gather(*coroutines)


def chain_document(chain_number: int, draws: int) -> bytes:
    return group_document({"mcbackend": {"chain_number": chain_number, "draws": draws}})


class ZarrChain(BufferedChain):
    """A chain stored as a Zarr group; appends are buffered and flushed in batches."""

    _run: ZarrRun

    def __init__(self, cmeta: ChainMeta, run: ZarrRun, *, created: bool = False) -> None:
        super().__init__(cmeta, run, created=created)
        self._path = f"chain_{cmeta.chain_number}"
        self._columns = {
            section: {v.name: ZarrColumn(self._path, section, v, run.store) for v in variables}
            for section, variables in [
                (Section.DRAWS, run.meta.variables),
                (Section.STATS, run.meta.sample_stats),
            ]
        }
        if created:
            with self._creating():
                self._create()
        else:
            self._committed = self._stored_length()

    def _all_columns(self) -> list[ZarrColumn]:
        return [c for columns in self._columns.values() for c in columns.values()]

    def _stored_length(self) -> int:
        where = self._run.location.url(f"{self._path}/zarr.json")
        try:
            doc = json.loads(self._run.location.read_bytes(f"{self._path}/zarr.json"))
            return int(doc["attributes"]["mcbackend"]["draws"])
        except FileNotFoundError as ex:
            raise CorruptRunError(f"{where} is missing: the committed length is lost.") from ex
        except (ValueError, KeyError, TypeError) as ex:
            raise CorruptRunError(f"{where} is corrupt: {ex!r}") from ex

    def verify(self) -> list[str]:
        """Group documents, then each column's metadata and chunks below the committed length
        (arrays are written with the first flush)."""
        location = self._run.location
        groups = [f"{self._path}/{s.value}/zarr.json" for s in Section]
        groups += [f"{c.path}/zarr.json" for c in self._all_columns() if c.is_ragged]
        found = location.read_many(groups, missing_ok=True)
        problems = [f"{location.url(g)} is missing" for g in groups if g not in found]
        committed = self._stored_length()
        if committed:
            for column in self._all_columns():
                problems += column.verify(committed)
        return problems

    def _create(self) -> None:
        if self._run.location.exists(f"{self._path}/zarr.json"):
            raise self._refuse_existing()
        docs = {f"{self._path}/{s.value}/zarr.json": group_document({}) for s in Section}
        for column in self._all_columns():
            self._create_column(column)
        self._run.location.write_many(docs)
        commit = chain_document(self.cmeta.chain_number, 0)
        self._run.location.write_many({f"{self._path}/zarr.json": commit})

    def _create_column(self, column: ZarrColumn) -> None:
        chunks = self._run.chunk_draws or chunk_length_for(column.spec, self._run.flush_every)
        column.create(chunks, self._run.compression)

    def _resume(self) -> int:
        """Continue after the committed draws: column writers rebuilt from storage."""
        committed = self._stored_length()
        paths = [p for column in self._all_columns() for p in column.metadata_paths()]
        documents = self._run.location.read_many(paths, missing_ok=True)
        for column in self._all_columns():
            column.resume(committed, documents, self._create_column)
        return committed

    def _write(self, buffer: DrawBuffer, start: int, n: int) -> None:
        """All chunks and array metadata in one batch, then the draw count (commit point)."""
        files: dict[str, bytes] = {}
        for section, columns in self._columns.items():
            buffered = buffer.columns(section).columns
            for name, column in columns.items():
                files.update(column.append(buffered[name][:n]))
        self._run.location.write_many(files)
        self._lease.confirm()  # still this chain's writer after a pause of lease_seconds / 4
        doc = chain_document(self.cmeta.chain_number, start + n)
        self._run.location.write_many({f"{self._path}/zarr.json": doc})

    def _reader(self, spec, section):
        return self._columns[section][spec.name].read

    def _read_many_stored(self, specs, idx, *, section):
        """Fixed-shape columns are read concurrently (one round of requests on S3)."""
        columns = [self._columns[section][s.name] for s in specs]
        plain = [c for c in columns if not c.is_ragged]
        if len(plain) < 2 or not len(idx):
            return super()._read_many_stored(specs, idx, section=section)
        lo, hi = int(idx.min()), int(idx.max()) + 1
        for column in plain:
            column.array("", hi)
        try:
            blocks = sync(_gather(c.read_async(lo, hi) for c in plain))
        except Exception:  # read one by one: the damaged column raises, naming its chunk
            blocks = [c.read(lo, hi) for c in plain]
        out = {c.spec.name: block[idx - lo] for c, block in zip(plain, blocks)}
        ragged = [c.spec for c in columns if c.is_ragged]
        out.update(super()._read_many_stored(ragged, idx, section=section))
        return out


class ZarrRun(FileRun[ZarrChain]):
    """A run stored as a Zarr group at ``<root>/<rid>``."""

    chain_class = ZarrChain
    chain_marker = "zarr.json"

    def __init__(
        self,
        meta: RunMeta,
        location: Location,
        *,
        chunk_draws: int | None = None,
        chunk_bytes: int | None = None,
        max_chunk_draws: int | None = None,
        compression: Compression | None = None,
        **options,
    ) -> None:
        super().__init__(meta, location, **options)
        self.chunk_draws = chunk_draws
        self.compression = compression or Compression()
        self.store = open_store(location, read_only=self.read_only)

    def verify(self) -> list[str]:
        """The root document, chain folders without their commit document, and every chain:
        metadata as written and every chunk below the committed length (zarr-python checks
        each one's CRC-32C); the problems found."""
        problems = []
        if not self.location.exists("zarr.json"):
            problems.append(f"{self.location.url('zarr.json')} is missing (the run's group)")
        for folder in self._load_chains():
            problem = self._lost_commit(folder)
            if problem:
                problems.append(problem)
        for chain in self._chains.values():
            try:
                problems += chain.verify()
            except CorruptRunError as ex:
                problems.append(str(ex))
        return problems

    def _check_unmarked(self, folder: str) -> None:
        problem = self._lost_commit(folder)
        if problem:
            raise CorruptRunError(problem)

    def _lost_commit(self, folder: str) -> str | None:
        """A chain folder holding arrays but no ``zarr.json``: its committed length is lost
        (a chain being created holds only its two group documents until then)."""
        for section in Section:
            if set(self.location.child(f"{folder}/{section.value}").listdir()) - {"zarr.json"}:
                marker = self.location.url(f"{folder}/{self.chain_marker}")
                return f"{marker} is missing: the chain's committed length is lost."
        return None


def prepare_v1_run(run_dir: Location, meta: RunMeta) -> None:
    """The root group document of a new v1 run."""
    marker = {"format": FORMAT, "format_version": FORMAT_VERSION, "rid": meta.rid}
    run_dir.write_many({"zarr.json": group_document({"mcbackend": marker})})
