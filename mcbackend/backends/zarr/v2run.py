"""A Zarr v2 run: an ArviZ-shaped Zarr v3 hierarchy (``formats/zarr.md``, "Version 2").

Its settings (``chunk_bytes``, compression) live in the root group's
``attributes.mcbackend``; chains are found from their commit records.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
from typing import Any

from ..._inferencedata import attributes_to_python, find_warmup_stat
from ...codec import Section
from ...errors import CorruptRunError
from ...files import FileRun, Location
from ...meta import ChainMeta, RunMeta
from ...zarrio import Compression
from .v1 import open_store
from .v2chain import ZarrV2Chain
from .v2commits import Record, read_records, record_attributes, shape_files, wanted_shapes
from .v2layout import (
    MAX_CHUNK_DRAWS,
    ArraySpec,
    Names,
    coordinate_files,
    data_group_files,
    group_attributes,
    group_document,
    is_pymc,
    ragged,
    run_coords,
    sampled_arrays,
)
from .v2read import SegmentGone, is_final, read_rows

__all__ = ["DEFAULT_CHUNK_BYTES", "ZarrV2Run", "create_v2_run"]

DEFAULT_CHUNK_BYTES = 4 << 20
FLUSH_TARGET_BYTES = 16 << 20

_log = logging.getLogger(__name__)


def create_v2_run(
    run_dir: Location,
    meta: RunMeta,
    chunk_bytes: int,
    compression: Compression,
    max_chunk_draws: int = MAX_CHUNK_DRAWS,
) -> None:
    """Every document of a new run that does not depend on chains or draws."""
    settings = {
        "format": "zarr",
        "format_version": 2,
        "rid": meta.rid,
        "chunk_bytes": chunk_bytes,
        "max_chunk_draws": max_chunk_draws,
        "compression": compression.name,
        "compression_level": compression.level,
        "names": Names.ARVIZ,
    }
    created_at = datetime.datetime.now(datetime.UTC).isoformat()
    files = {"zarr.json": group_document({"mcbackend": settings})}
    arrays = sampled_arrays(meta, chunk_bytes, max_chunk_draws)
    coords = run_coords(meta)
    shown = [a for a in arrays if not a.hidden]
    for group in dict.fromkeys(a.group for a in shown):
        files[f"{group}/zarr.json"] = group_document(group_attributes(meta, True, created_at))
        sizes = {d: n for a in shown if a.group == group for d, n in zip(a.dims, a.shape)}
        files.update(coordinate_files(group, sizes, coords, compression))
    groups = sorted({a.group for a in arrays})
    files.update(shape_files(arrays, wanted_shapes({}, groups), compression))
    files.update(data_group_files(meta, compression, created_at))
    run_dir.write_many(files)


def with_legacy_nodes(location: Location, arrays: list[ArraySpec]) -> list[ArraySpec]:
    """Writers before '\\' was escaped (``encode_name``) left it raw in node names; their
    nodes are used where the escaped one does not exist (one lookup per such name)."""
    out = []
    for array in arrays:
        legacy = array.node.replace("%5C", "\\")
        if (
            legacy != array.node
            and not location.exists(f"{array.key}/zarr.json")
            and location.exists(f"{dataclasses.replace(array, node=legacy).key}/zarr.json")
        ):
            array = dataclasses.replace(array, node=legacy)
        out.append(array)
    return out


class ZarrV2Run(FileRun[ZarrV2Chain]):
    """A run stored as Zarr v2 at ``<root>/<rid>``."""

    chain_class = ZarrV2Chain
    chain_marker = ""
    #: Flushes of about 16 MiB (not 4): each flush costs a record, a segment and a shape check
    #: whatever its size (on S3, sequential requests), and stages rows only once now.
    flush_target_bytes = FLUSH_TARGET_BYTES

    def __init__(
        self,
        meta: RunMeta,
        location: Location,
        *,
        chunk_draws: int | None = None,
        chunk_bytes: int | None = None,
        max_chunk_draws: int | None = None,
        compression: Compression | None = None,
        **options: Any,
    ) -> None:
        super().__init__(meta, location, **options)
        settings = self._settings()
        self.chunk_bytes = int(settings["chunk_bytes"])
        self.compression = Compression(settings["compression"], int(settings["compression_level"]))
        self.max_chunk_draws = int(settings["max_chunk_draws"])
        self.names = settings["names"]
        arrays = sampled_arrays(meta, self.chunk_bytes, self.max_chunk_draws, self.names)
        self.arrays = with_legacy_nodes(location, arrays)
        self.ragged = ragged(meta, self.names)
        self._by_name = {
            (a.group, part.name): (a, i)
            for a in self.arrays
            for i, part in enumerate(a.member.parts)
        }
        self.store = open_store(location, read_only=self.read_only)
        self.stat_names = frozenset(s.name for s in meta.sample_stats)
        self.warmup_stat = find_warmup_stat([s.name for s in meta.sample_stats])
        #: The shapes a chain of this handle converged to last: a convergence to the same
        #: shapes writes only the files that differ (``converge_shapes``).
        self.converged: dict[str, tuple[int, int]] | None = None

    def group_files(self, records: dict[int, Record]) -> dict[str, bytes]:
        """A PyMC run's sampled group documents, with the attributes its records decide
        (``tuning_steps``, ``sampling_time``); other runs' never change after init_run."""
        if not is_pymc(self.meta):
            return {}
        attrs = record_attributes(records)
        created_at = str(attributes_to_python(self.meta.attributes).get("created_at", ""))
        return {
            f"{group}/zarr.json": group_document(
                group_attributes(self.meta, True, created_at, **attrs)
            )
            for group in dict.fromkeys(a.group for a in self.arrays if not a.hidden)
        }

    def _settings(self) -> dict[str, Any]:
        where = self.location.url("zarr.json")
        try:
            settings = json.loads(self.location.read_bytes("zarr.json"))["attributes"]["mcbackend"]
            keys = ("chunk_bytes", "max_chunk_draws", "compression", "compression_level")
            return {k: settings[k] for k in keys} | {"names": settings.get("names", Names.STORED)}
        except FileNotFoundError as ex:
            raise CorruptRunError(f"The Zarr v2 run lacks its root document {where}.") from ex
        except (ValueError, KeyError, TypeError) as ex:
            raise CorruptRunError(f"The root document {where} is corrupt: {ex!r}") from ex

    def array(self, prefix: str, section: Section, name: str) -> tuple[ArraySpec, int]:
        """The array holding stored variable ``name`` and its position on the array's
        stacking axis (0 for an array of one variable)."""
        group = "sample_stats" if section is Section.STATS else "posterior"
        return self._by_name[(f"{prefix}_{group}" if prefix else group, name)]

    def get_chains(self) -> list[ZarrV2Chain]:
        for number in read_records(self.location):
            if number not in self._chains:
                cmeta = ChainMeta(rid=self.meta.rid, chain_number=number)
                self._chains[number] = self.chain_class(cmeta, self)
        return [self._chains[n] for n in sorted(self._chains)]

    def verify(self) -> list[str]:
        """Every array document, every chunk below each chain's committed length and the
        staged segment of open chains; the problems found (empty: all good)."""
        problems = self._verify_documents()
        try:
            records = read_records(self.location)
        except CorruptRunError as ex:
            return [*problems, str(ex)]
        for record in records.values():
            for array in self.arrays:
                n = record.length(array.group)
                for k in range(-(-n // array.chunk)):
                    lo, hi = k * array.chunk, min(n, (k + 1) * array.chunk)
                    try:
                        read_rows(self.location, record, [(array, lo, hi)], self.compression)
                    except CorruptRunError as ex:
                        problems.append(str(ex))
                    except SegmentGone:
                        problems.append(f"Chain {record.chain}: its segment vanished (re-run).")
                    if not is_final(array, record, k):
                        break
        groups = sorted({a.group for a in self.arrays})
        stored = self._stored_shapes()
        for group, (chains, draws) in wanted_shapes(records, groups).items():
            have = stored.get(group)
            if have is not None and (have[0] < chains or have[1] < draws):
                _log.warning(
                    "%s: shape %s is stale (records need %d chains, %d draws); the next writer "
                    "fixes it",
                    group, have, chains, draws,
                )  # fmt: skip
        for chain in self.get_chains():
            problems += chain.verify_hidden(records[chain.cmeta.chain_number].draws)
        return problems

    def _verify_documents(self) -> list[str]:
        names = [f"{a.key}/zarr.json" for a in self.arrays]
        docs = self.location.read_many(names, missing_ok=True)
        problems = []
        for array, name in zip(self.arrays, names):
            if name not in docs:
                problems.append(f"{self.location.url(name)} is missing")
                continue
            try:
                doc = json.loads(docs[name])
                chunk = doc["chunk_grid"]["configuration"]["chunk_shape"]
                expected = [1, array.chunk, *array.shape]
                if chunk != expected or doc["codecs"] != self.compression.codecs(array.dtype):
                    problems.append(
                        f"{self.location.url(name)}: chunks or codecs differ from {expected}"
                    )
                if doc["dimension_names"] != ["chain", "draw", *array.dims]:
                    problems.append(f"{self.location.url(name)}: dimension_names differ")
            except (ValueError, KeyError, TypeError) as ex:
                problems.append(f"{self.location.url(name)} is corrupt: {ex!r}")
        return problems

    def _stored_shapes(self) -> dict[str, tuple[int, int]]:
        shapes = {}
        for array in self.arrays:
            if array.group in shapes:
                continue
            try:
                doc = json.loads(self.location.read_bytes(f"{array.key}/zarr.json"))
                shapes[array.group] = tuple(doc["shape"][:2])
            except (OSError, ValueError, KeyError):
                continue
        return shapes
