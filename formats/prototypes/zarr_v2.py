"""Prototype of the Zarr v2 write path (formats/zarr.md, "Version 2 (draft)"). Not a backend.

    python formats/prototypes/zarr_v2.py init  URL  [--storage-options JSON]
    python formats/prototypes/zarr_v2.py chain URL N [--draws 1000 --tune 200 --flush 100]
    python formats/prototypes/zarr_v2.py close URL            (nothing to do: closers finalise)

It proves the parts of the design that are new: chains written by separate processes with no
shared file whose racing rewrites could lose a chain or shrink an array (per-chain commit
records + capacity shapes re-checked after every metadata write), chunks sized by bytes and
written once (each flush writes one staged segment + the commit record, plus the chunks it
completes), warm-up routed into ``warmup_*`` groups as draws arrive, exact shapes once every
chain is closed. It writes with fsspec only; encoding reuses ``mcbackend.zarrio``. Readers of
the result (``read_check.py``) never import mcbackend.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid
from dataclasses import dataclass, field

import fsspec
import numpy as np
from demo_model import COORDS, STATS, VARIABLES, WARMUP_STAT, synthetic_chain
from fsspec.implementations.local import LocalFileSystem

from mcbackend.zarrio import Compression

FORMAT_VERSION = 2
COMMITS = "_mcbackend/chains"  # per-chain commit records and staged segments
SAMPLED = ("posterior", "sample_stats", "warmup_posterior", "warmup_sample_stats")
DRAW_CAPACITY_MIN = 1024
COORD_CHUNK = 1 << 16


def put(fs, files: dict[str, bytes]) -> None:
    """Write whole files atomically: one PUT each on object stores, temp + rename locally."""
    if not isinstance(fs, LocalFileSystem):
        fs.pipe(files)
        return
    for path, data in files.items():
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{uuid.uuid4().hex}.partial"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)


def create(fs, path: str, data: bytes) -> None:
    """Create ``path`` unless it exists (FileExistsError): If-None-Match on S3, O_EXCL locally."""
    if not isinstance(fs, LocalFileSystem):
        fs.pipe_file(path, data, mode="create")
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{uuid.uuid4().hex}.partial"  # unique: a crashed creator blocks nobody
    with open(tmp, "wb") as f:
        f.write(data)
    try:
        os.link(tmp, path)  # atomic; FileExistsError if the path exists
    finally:
        os.remove(tmp)


def decode(blob: bytes, dtype: np.dtype, shape) -> np.ndarray:
    """Inverse of Compression("blosc").encode for numeric dtypes: check CRC-32C, decompress."""
    import google_crc32c
    import numcodecs

    data, crc = blob[:-4], blob[-4:]
    if np.uint32(google_crc32c.value(data)).tobytes() != crc:
        raise ValueError("segment blob fails its CRC-32C")
    raw = numcodecs.Blosc().decode(data)
    return np.frombuffer(raw, dtype=dtype.newbyteorder("<")).reshape(shape).astype(dtype)


def fill_value(dtype: np.dtype):
    return "NaN" if dtype.kind == "f" else (False if dtype.kind == "b" else 0)


def array_doc(shape, chunks, dtype: np.dtype, dims, attributes=None) -> bytes:
    comp = Compression("blosc")
    return json.dumps({
        "zarr_format": 3, "node_type": "array", "shape": list(shape), "data_type": dtype.name,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(chunks)}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": fill_value(dtype), "codecs": comp.codecs(dtype),
        "attributes": attributes or {}, "dimension_names": list(dims),
    }).encode()  # fmt: skip


def group_doc(attributes) -> bytes:
    return json.dumps({"zarr_format": 3, "node_type": "group", "attributes": attributes}).encode()


def chunk_draws(dtype: str, shape, chunk_bytes: int) -> int:
    return max(1, chunk_bytes // (np.dtype(dtype).itemsize * int(np.prod(shape, dtype=int))))


def group_arrays(group: str, chunk_bytes: int):
    """(name, dtype, shape, dims, draws per chunk) of a sampled group's arrays."""
    items = VARIABLES if group.endswith("posterior") else STATS
    return [(n, np.dtype(t), s, d, chunk_draws(t, s, chunk_bytes)) for n, t, s, d in items]


def group_attributes(sampled: bool) -> dict:
    return {
        "created_at": "2026-11-26T00:00:00+00:00", "creation_library": "mcbackend",
        "creation_library_version": "0.7.0-proto", "creation_library_language": "Python",
        "sample_dims": ["chain", "draw"] if sampled else [],
    }  # fmt: skip


# ---- run creation ---------------------------------------------------------------------------


def init_run(fs, root: str, chunk_bytes: int) -> None:
    """Everything whose content does not depend on the number of chains or draws."""
    marker = {"format": "zarr", "format_version": FORMAT_VERSION, "rid": root.rsplit("/", 1)[-1],
              "chunk_bytes": chunk_bytes}  # fmt: skip
    create(fs, f"{root}/mcbackend.json", json.dumps(marker).encode())  # one wins
    files = {f"{root}/zarr.json": group_doc({"mcbackend": marker})}
    comp = Compression("blosc")
    for group in SAMPLED:
        files[f"{root}/{group}/zarr.json"] = group_doc(group_attributes(True))
        for name, dtype, shape, dims, c in group_arrays(group, chunk_bytes):
            files[f"{root}/{group}/{name}/zarr.json"] = array_doc(
                (0, 0, *shape), (1, c, *shape), dtype, ("chain", "draw", *dims)
            )
        dims_used = {d for _, _, _, dims, _ in group_arrays(group, chunk_bytes) for d in dims}
        for dim in sorted(dims_used):
            labels = np.asarray(COORDS[dim])
            dtype = labels.dtype if labels.dtype.kind != "U" else np.dtype("U")
            doc = json.loads(array_doc(labels.shape, labels.shape, np.dtype("int64"), (dim,)))
            if labels.dtype.kind == "U":
                doc.update(data_type="string", fill_value="", codecs=comp.codecs(dtype))
            files[f"{root}/{group}/{dim}/zarr.json"] = json.dumps(doc).encode()
            files[f"{root}/{group}/{dim}/c/0"] = comp.encode(labels)
        for coord in ("chain", "draw"):
            files[f"{root}/{group}/{coord}/zarr.json"] = array_doc(
                (0,), (COORD_CHUNK,), np.dtype("int64"), (coord,)
            )
    put(fs, files)


# ---- capacity: shapes that cover every chain's commit record --------------------------------


def read_records(fs, root: str) -> dict[int, dict]:
    fs.invalidate_cache(f"{root}/{COMMITS}")  # a cached listing would defeat the re-check
    paths = [p for p in fs.ls(f"{root}/{COMMITS}", detail=False) if p.endswith(".json")]
    return {int(p.rsplit("/", 1)[-1][:-5]): json.loads(fs.cat_file(p)) for p in paths}


def wanted_shapes(records: dict[int, dict]) -> dict[str, tuple[int, int]]:
    """(chains, draws) per sampled group: exact once every chain is closed, else capacity."""
    all_closed = all(r["closed"] for r in records.values())
    chains = max(records) + 1
    shapes = {}
    for group in SAMPLED:
        key = "warmup_draws" if group.startswith("warmup") else "posterior_draws"
        need = max(r[key] for r in records.values())
        if not all_closed and need:
            need = max(DRAW_CAPACITY_MIN, 1 << (need - 1).bit_length())
        shapes[group] = (chains, need)
    return shapes


def converge_shapes(fs, root: str, chunk_bytes: int, stored: dict) -> dict:
    """Write array shapes for the current commit records, re-list, repeat until stable.

    Every record change is followed by its writer calling this, and a writer stops only when
    the records it lists after its writes equal those it computed from; so the last metadata
    written to each array covers every record (storage with read-after-write consistency).
    """
    records = read_records(fs, root)
    while True:
        shapes = wanted_shapes(records)
        if shapes != stored:
            files = {}
            for group, (nc, nd) in shapes.items():
                for name, dtype, shape, dims, c in group_arrays(group, chunk_bytes):
                    files[f"{root}/{group}/{name}/zarr.json"] = array_doc(
                        (nc, nd, *shape), (1, c, *shape), dtype, ("chain", "draw", *dims)
                    )
                comp = Compression("blosc")
                for coord, n in (("chain", nc), ("draw", nd)):
                    for k in range((n + COORD_CHUNK - 1) // COORD_CHUNK):  # content fixed by k
                        values = np.arange(k * COORD_CHUNK, (k + 1) * COORD_CHUNK, dtype="int64")
                        files[f"{root}/{group}/{coord}/c/{k}"] = comp.encode(values)
                    files[f"{root}/{group}/{coord}/zarr.json"] = array_doc(
                        (n,), (COORD_CHUNK,), np.dtype("int64"), (coord,)
                    )
            put(fs, files)
        again = read_records(fs, root)
        if again == records:
            return shapes
        records = again


# ---- one chain ------------------------------------------------------------------------------


@dataclass
class GroupTail:
    """Rows of one group of one chain not yet in a complete chunk (kept for the next chunk)."""

    length: int = 0
    tails: dict[str, np.ndarray] = field(default_factory=dict)


class ChainWriter:
    def __init__(self, fs, root: str, chain: int, chunk_bytes: int) -> None:
        self.fs, self.root, self.chain, self.chunk_bytes = fs, root, chain, chunk_bytes
        self.comp = Compression("blosc")
        self.groups = {g: GroupTail() for g in SAMPLED}
        self.draws = 0
        self.in_warmup = True
        self.segments: list[str] = []
        self.stored_shapes: dict = {}
        self.record = {"chain": chain, "writer": uuid.uuid4().hex, "draws": 0, "warmup_draws": 0,
                       "posterior_draws": 0, "segments": [], "closed": False}  # fmt: skip
        # Claim the chain: exactly one writer creates its record.
        path = f"{root}/{COMMITS}/{chain}.json"
        create(fs, path, json.dumps(self.record).encode())

    @classmethod
    def resume(cls, fs, root: str, chain: int, chunk_bytes: int) -> ChainWriter:
        """Continue a chain after a crash: lengths from its record, partial chunks from the
        newest segment it names (rows written after the commit are overwritten later)."""
        self = cls.__new__(cls)
        self.fs, self.root, self.chain, self.chunk_bytes = fs, root, chain, chunk_bytes
        self.comp = Compression("blosc")
        self.record = json.loads(fs.cat_file(f"{root}/{COMMITS}/{chain}.json"))
        self.record["writer"] = uuid.uuid4().hex
        self.draws = self.record["draws"]
        self.in_warmup = self.record["posterior_draws"] == 0
        self.stored_shapes = {}
        self.groups = {g: GroupTail() for g in SAMPLED}
        for g in SAMPLED:
            self.groups[g].length = self.record[
                "warmup_draws" if g.startswith("warmup") else "posterior_draws"
            ]
        self.segments = [f"{root}/{COMMITS}/{chain}/{s}" for s in self.record["segments"]]
        if fs.exists(f"{root}/{COMMITS}/{chain}"):  # segments of flushes a crash left uncommitted
            stale = [p for p in fs.ls(f"{root}/{COMMITS}/{chain}", detail=False)
                     if p.rsplit("/", 1)[-1].startswith("seg-") and p not in self.segments]  # fmt: skip
            if stale:
                fs.rm(stale)
        if self.segments:
            blob = fs.cat_file(self.segments[-1])
            size = int.from_bytes(blob[-8:], "little")
            index = json.loads(blob[-8 - size : -8])
            for group in SAMPLED:
                for name, dtype, shape, _, _ in group_arrays(group, chunk_bytes):
                    if f"{group}/{name}" in index:
                        offset, length, _, rows = index[f"{group}/{name}"]
                        self.groups[group].tails[name] = decode(
                            blob[offset : offset + length], dtype, (rows, *shape)
                        )
        return self

    def flush(self, draws: dict[str, np.ndarray], stats: dict[str, np.ndarray]) -> None:
        n = len(stats[WARMUP_STAT])
        warm = np.asarray(stats[WARMUP_STAT], bool)
        n_warm = int(np.argmin(warm)) if not warm.all() else n
        if not self.in_warmup:
            n_warm = 0
        if warm[n_warm:].any():
            raise ValueError("a warm-up draw after posterior draws (warm-up must lead)")
        self.in_warmup = n_warm == n
        files, index, blobs, offset = {}, {}, [], 0
        for prefix, rows in (("warmup_", slice(0, n_warm)), ("", slice(n_warm, n))):
            for kind, values in (("posterior", draws), ("sample_stats", stats)):
                group = prefix + kind
                state = self.groups[group]
                count = rows.stop - rows.start
                if not count:
                    continue
                for name, dtype, shape, _, c in group_arrays(group, self.chunk_bytes):
                    new = np.asarray(values[name][rows], dtype)
                    tail = state.tails.get(name, np.empty((0, *shape), dtype))
                    tail = np.concatenate([tail, new])
                    first = (state.length - (len(tail) - count)) // c
                    while len(tail) >= c:  # a complete chunk: written once, never rewritten
                        key = "/".join(["c", str(self.chain), str(first), *["0"] * len(shape)])
                        files[f"{self.root}/{group}/{name}/{key}"] = self.comp.encode(
                            tail[None, :c]
                        )
                        tail, first = tail[c:], first + 1
                    state.tails[name] = tail
                state.length += count
        if n_warm < n:  # warm-up is over for good: its partial chunks become final chunks
            files.update(self._last_chunks([g for g in SAMPLED if g.startswith("warmup")]))
        for group, state in self.groups.items():  # every array's partial chunk, staged
            for name, tail in state.tails.items():
                if len(tail):
                    encoded = self.comp.encode(tail)
                    first_row = state.length - len(tail)
                    index[f"{group}/{name}"] = [offset, len(encoded), first_row, len(tail)]
                    blobs.append(encoded)
                    offset += len(encoded)
        # One staged segment per flush: every array's partial chunk, so the newest segment
        # alone holds all staged rows (older ones can be deleted once it is written).
        seg = f"{self.root}/{COMMITS}/{self.chain}/seg-{self.draws:012d}-{self.draws + n:012d}"
        header = json.dumps(index).encode()
        files[seg] = b"".join([*blobs, header, len(header).to_bytes(8, "little")])
        put(self.fs, files)
        self.draws += n
        self._commit(segments=[seg.rsplit("/", 1)[-1]])
        if old := [s for s in self.segments if s != seg]:
            self.fs.rm(old)
        self.segments = [seg]

    def _commit(self, segments, closed=False) -> None:
        self.record.update(
            draws=self.draws, warmup_draws=self.groups["warmup_posterior"].length,
            posterior_draws=self.groups["posterior"].length, segments=segments, closed=closed,
        )  # fmt: skip
        put(self.fs, {f"{self.root}/{COMMITS}/{self.chain}.json": json.dumps(self.record).encode()})
        needs = wanted_shapes({self.chain: self.record})
        if any(needs[g][1] > self.stored_shapes.get(g, (0, 0))[1] for g in SAMPLED) or closed:
            self.stored_shapes = converge_shapes(
                self.fs, self.root, self.chunk_bytes, self.stored_shapes
            )

    def _last_chunks(self, groups) -> dict[str, bytes]:
        """The groups' partial last chunks, padded with the fill value; their tails emptied."""
        files = {}
        for group in groups:
            state = self.groups[group]
            for name, dtype, shape, _, c in group_arrays(group, self.chunk_bytes):
                tail = state.tails.get(name)
                if tail is None or not len(tail):
                    continue
                padded = np.full((1, c, *shape), np.nan if dtype.kind == "f" else 0, dtype)
                padded[0, : len(tail)] = tail
                k = state.length // c
                key = "/".join(["c", str(self.chain), str(k), *["0"] * len(shape)])
                files[f"{self.root}/{group}/{name}/{key}"] = self.comp.encode(padded)
                state.tails[name] = tail[:0]
        return files

    def close(self) -> None:
        """Write the partial last chunks (padded with the fill value), then finalise."""
        put(self.fs, self._last_chunks(SAMPLED))
        self._commit(segments=[], closed=True)
        if self.segments:
            self.fs.rm(self.segments)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["init", "chain"])
    parser.add_argument("url")
    parser.add_argument("chain", nargs="?", type=int)
    parser.add_argument("--storage-options", default="{}")
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=200)
    parser.add_argument("--flush", type=int, default=100)
    parser.add_argument("--chunk-bytes", type=int, default=4 << 20)
    parser.add_argument("--capacity-min", type=int, default=DRAW_CAPACITY_MIN)
    parser.add_argument("--resume", action="store_true", help="continue a chain after a crash")
    parser.add_argument("--kill-after", type=int, default=None, help="exit without closing")
    args = parser.parse_args()
    globals()["DRAW_CAPACITY_MIN"] = args.capacity_min
    fs, root = fsspec.core.url_to_fs(args.url, **json.loads(args.storage_options))
    if args.command == "init":
        init_run(fs, root, args.chunk_bytes)
        return
    chunk_bytes = json.loads(fs.cat_file(f"{root}/mcbackend.json"))["chunk_bytes"]
    if args.resume:
        writer = ChainWriter.resume(fs, root, args.chain, chunk_bytes)
    else:
        writer = ChainWriter(fs, root, args.chain, chunk_bytes)
    values, stats = synthetic_chain(args.chain, args.tune, args.draws)
    n = args.tune + args.draws
    for lo in range(writer.draws, n, args.flush):
        if args.kill_after is not None and lo >= args.kill_after:
            return
        sl = slice(lo, min(lo + args.flush, n))
        writer.flush({k: v[sl] for k, v in values.items()}, {k: v[sl] for k, v in stats.items()})
        time.sleep(0.01)
    writer.close()


if __name__ == "__main__":
    main()
