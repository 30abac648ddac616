"""Zarr v2 commit records and array shapes (``formats/zarr.md``, "Shapes without a shared file").

Each chain's record ``_mcbackend/chains/<n>.json`` is its commit point and the only per-chain
mutable document. Array shapes are a deterministic function of the set of records, written
by whichever writer changed a record, and re-checked against a fresh listing until stable, so
chains written by processes that never talk all land.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ...errors import CorruptRunError
from ...files import Location
from ...zarrio import Compression
from .v2layout import COORD_CHUNK, SAMPLED, ArraySpec, array_document, sampled_array_document

__all__ = [
    "CHAINS",
    "Record",
    "converge_shapes",
    "read_records",
    "record_attributes",
    "wanted_shapes",
]

CHAINS = "_mcbackend/chains"
DRAW_CAPACITY_MIN = 1024


@dataclass
class Record:
    """What a chain has committed: draws per group, the staged segment(s), closed or not."""

    chain: int
    writer: str
    draws: int = 0
    warmup_draws: int = 0
    posterior_draws: int = 0
    segments: list[str] = field(default_factory=list)
    closed: bool = False
    #: PyMC runs: [first start, last end] of the draws' ``perf_counter`` times (the groups'
    #: ``sampling_time``); left out of the JSON of other runs.
    sampling_span: list[float] | None = None

    def to_json(self) -> bytes:
        fields = asdict(self)
        if self.sampling_span is None:
            del fields["sampling_span"]
        return json.dumps(fields).encode()

    @classmethod
    def parse(cls, raw: bytes, where: str) -> Record:
        try:
            record = cls(**json.loads(raw))
        except (ValueError, TypeError) as ex:
            raise CorruptRunError(f"The commit record {where} is corrupt: {ex}") from ex
        if record.draws != record.warmup_draws + record.posterior_draws or record.draws < 0:
            raise CorruptRunError(f"The commit record {where} is corrupt: draws do not add up.")
        return record

    def length(self, group: str) -> int:
        return self.warmup_draws if SAMPLED[group][1] else self.posterior_draws


def record_name(chain: int) -> str:
    return f"{CHAINS}/{chain}.json"


def read_records(run_dir: Location) -> dict[int, Record]:
    """Every chain's commit record, from a fresh listing."""
    folder = run_dir.child(CHAINS)
    numbers = sorted(
        int(n[:-5]) for n in folder.listdir() if n.endswith(".json") and n[:-5].isdigit()
    )
    raw = run_dir.read_many([record_name(n) for n in numbers])
    return {n: Record.parse(raw[record_name(n)], run_dir.url(record_name(n))) for n in numbers}


def wanted_shapes(records: dict[int, Record], groups: list[str]) -> dict[str, tuple[int, int]]:
    """(chains, draws) per sampled group: exact once every chain is closed, else a capacity
    (a power of two, at least 1024) that covers every record."""
    if not records:
        return {g: (0, 0) for g in groups}
    all_closed = all(r.closed for r in records.values())
    chains = max(records) + 1
    shapes = {}
    for group in groups:
        need = max(r.length(group) for r in records.values())
        if not all_closed and need:
            need = max(DRAW_CAPACITY_MIN, 1 << (need - 1).bit_length())
        shapes[group] = (chains, need)
    return shapes


def record_attributes(records: dict[int, Record]) -> dict[str, Any]:
    """The sampled groups' attributes the records decide (PyMC runs): ``tuning_steps``, the
    warm-up draws every chain has, and ``sampling_time``, from the first start to the last end
    of any chain's draws (when every chain has timed draws)."""
    spans = [r.sampling_span for r in records.values()]
    attrs: dict[str, Any] = {
        "tuning_steps": min((r.warmup_draws for r in records.values()), default=0)
    }
    if spans and all(spans):
        attrs["sampling_time"] = max(s[1] for s in spans if s) - min(s[0] for s in spans if s)
    return attrs


def shape_files(
    arrays: list[ArraySpec],
    shapes: dict[str, tuple[int, int]],
    compression: Compression,
    stored: AbstractSet[str] = frozenset(),
) -> dict[str, bytes]:
    """Array documents for ``shapes``, with the ``chain``/``draw`` coordinates (whose chunk
    ``k`` holds ``arange(k*65536, (k+1)*65536)`` whatever the shape, so writers agree: a
    chunk in ``stored``, known to be written, is left out)."""
    files = {}
    for array in arrays:
        chains, draws = shapes[array.group]
        files[f"{array.key}/zarr.json"] = sampled_array_document(array, chains, draws, compression)
    for name, k in coordinate_chunks(shapes).items():
        if name not in stored:
            files[name] = coordinate_chunk(compression, k)
    for group, (chains, draws) in shapes.items():
        for coord, n in (("chain", chains), ("draw", draws)):
            files[f"{group}/{coord}/zarr.json"] = array_document(
                (n,), (COORD_CHUNK,), INT64, (coord,), compression
            )
    return files


def coordinate_chunks(shapes: dict[str, tuple[int, int]]) -> dict[str, int]:
    """The ``chain``/``draw`` coordinates' chunks ``shapes`` need: ``{name: k}``."""
    return {
        f"{group}/{coord}/c/{k}": k
        for group, (chains, draws) in shapes.items()
        for coord, n in (("chain", chains), ("draw", draws))
        for k in range(-(-n // COORD_CHUNK))
    }


INT64 = np.dtype("int64")


@functools.lru_cache(maxsize=64)
def coordinate_chunk(compression: Compression, k: int) -> bytes:
    """Chunk ``k`` of a ``chain``/``draw`` coordinate, encoded once per process: every shape
    change rewrites the coordinates (four groups, two each), and encoding 512 KiB costs."""
    return compression.encode(np.arange(k * COORD_CHUNK, (k + 1) * COORD_CHUNK, dtype=INT64))


def converge_shapes(
    run_dir: Location,
    arrays: list[ArraySpec],
    compression: Compression,
    group_files: Callable[[dict[int, Record]], dict[str, bytes]] | None = None,
    coordinates: set[str] | None = None,
    known: Mapping[str, tuple[int, int]] | None = None,
) -> dict[str, tuple[int, int]]:
    """Write the shapes (and the group documents ``group_files`` makes) the current records
    call for, re-list, repeat until the records listed after a write equal those the write was
    computed from (see ``formats/zarr.md``). The first write always happens (another writer
    may have written older shapes since); locally, when the shapes are those this process
    converged to before (``known``), it skips the files that hold their bytes already.
    ``coordinates``: the coordinate chunks this writer stored before (their content never
    changes), not written again; those written are added (on S3 a third of the requests of a
    shape change)."""
    stored = coordinates if coordinates is not None else set()
    groups = sorted({a.group for a in arrays})
    records = read_records(run_dir)
    written = None
    while True:
        shapes = wanted_shapes(records, groups)
        documents = group_files(records) if group_files else {}
        if (shapes, documents) != written:
            files = {**shape_files(arrays, shapes, compression, stored), **documents}
            run_dir.write_many(changed_files(run_dir, files) if shapes == known else files)
            stored.update(coordinate_chunks(shapes))
            written = (shapes, documents)
        again = read_records(run_dir)
        if again == records:
            return shapes
        records = again


def changed_files(run_dir: Location, files: Mapping[str, bytes]) -> dict[str, bytes]:
    """The ``files`` whose stored bytes differ (local disk only). Finding that a file holds the
    bytes already is as good as writing them at that moment, so convergence holds; it saves
    the rewrite, which costs far more than the read locally (ext4 writes back a file renamed
    over another: 0.4-1 ms a document). On object stores every file is written (a read is a
    request, as the write is)."""
    if not run_dir.is_local:
        return dict(files)
    stored = run_dir.read_many(list(files), missing_ok=True)
    return {name: data for name, data in files.items() if stored.get(name) != data}
