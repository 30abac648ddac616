"""A Zarr v2 chain (``formats/zarr.md``, "How draws arrive"): warm-up routed into
``warmup_*`` groups as draws arrive, complete chunks written once, one staged segment per
flush with the partial chunks' new rows (every few flushes all of them), the commit record as
the commit point, shapes grown by the record protocol (``v2commits``). Chunks and staged rows
are encoded on the encode pool's two workers."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..._pymc_layout import PERF_DIFF, PERF_START, sampling_span
from ...codec import Section
from ...columns import as_object_array
from ...errors import CorruptRunError
from ...files import BufferedChain, DrawBuffer
from ...files.encoding import encode_many, submit_encodes
from ...files.pipeline import Encode
from ...meta import ChainMeta
from .v1 import VARIABLE_CHUNK_DRAWS, ZarrColumn
from .v2commits import CHAINS, Record, converge_shapes, record_name, wanted_shapes
from .v2layout import SAMPLED, ArraySpec, fill_array
from .v2read import SegmentGone, read_rows
from .v2segments import encode_segment, segment_name

if TYPE_CHECKING:
    from .v2run import ZarrV2Run

__all__ = ["ZarrV2Chain"]

READ_RETRIES = 5
#: Live segments per chain at most: each flush stages only its new rows of partial chunks
#: while fewer are live, else one segment restages them all and replaces the others.
MAX_SEGMENTS = 8
STAGED = "staged:"  # encode keys of staged rows (chunk keys are paths)

#: A live segment: its name and ``{array key: (first_row, rows)}``.
Segment = tuple[str, dict[str, tuple[int, int]]]


class ZarrV2Chain(BufferedChain):
    """One chain of a v2 run: rows of every array at ``c/<chain>/<k>``."""

    def __init__(self, cmeta: ChainMeta, run: ZarrV2Run, *, created: bool = False) -> None:
        super().__init__(cmeta, run)
        self._run: ZarrV2Run = run
        self._number = cmeta.chain_number
        #: Planned by the writes handed over (``_plan_write``): each array's partial chunk
        #: (rows ``:len(tail)`` of its chunk-sized block) and each group's length.
        self._tails: dict[str, np.ndarray] = {}
        self._blocks: dict[str, np.ndarray] = {}
        self._lengths = dict.fromkeys(SAMPLED, 0)
        self._staged: list[Segment] | None = []  # live segments, oldest first; None: unknown
        self._leading_over = False  # a posterior draw was appended: warm-up refused after
        self._close_failed = False  # a close() failed after taking the partial chunks
        self._closing = False  # close() writes what is buffered: its write is the last
        self._capacity: dict[str, tuple[int, int]] = {}
        self._coordinates: set[str] = set()  # coordinate chunks this handle stored
        warmup = self._stat_specs.get(run.warmup_stat or "")
        if warmup is not None and warmup.is_rigid and warmup.shape == () and warmup.dtype == bool:
            self._leading_stat = warmup.name  # appends check it inline
        else:
            self._checks_staged = warmup is not None
        #: Dynamic-shape variables (``v2layout.ragged``), kept as a v1 chain keeps them.
        self._hidden = {
            (section, var.name): ZarrColumn(
                f"{CHAINS}/{self._number}/ragged", section, var, run.store
            )
            for section, var in run.ragged
        }
        if created:
            self._lease.acquire(new_chain=True)
            with self._creating():
                for column in self._hidden.values():
                    column.create(VARIABLE_CHUNK_DRAWS, run.compression)
                self._record = Record(chain=self._number, writer=uuid.uuid4().hex)
                try:
                    run.location.create_file(record_name(self._number), self._record.to_json())
                except FileExistsError:
                    raise self._refuse_existing() from None
                try:
                    self._converge()
                except BaseException:  # a full disk: the chain number must stay free for a retry
                    run.location.remove([record_name(self._number)])
                    raise
            # Created empty, lease held: appends start from here, not from a reread of storage
            # (on S3 the first append waited ~10 ms for three requests).
            self._writing = True
        else:
            self._record = self._read_record()
            self._committed = self._record.draws

    # ---- records ------------------------------------------------------------------------

    def _read_record(self) -> Record:
        name = record_name(self._number)
        return Record.parse(self._run.location.read_bytes(name), self._run.location.url(name))

    def _stored_length(self) -> int:
        return self._read_record().draws

    def _converge(self) -> None:
        self._capacity = converge_shapes(
            self._run.location,
            self._run.arrays,
            self._run.compression,
            self._run.group_files,
            self._coordinates,
            known=self._run.converged,
        )
        self._run.converged = self._capacity

    # ---- appending: warm-up routing -----------------------------------------------------

    def _warmup_flags(self, stats: dict[str, Any], n: int | None) -> np.ndarray | None:
        stat = self._run.warmup_stat
        if stat is None:
            return None
        flags = np.asarray(stats[stat], dtype=bool)
        return flags.reshape(-1) if n is not None else flags.reshape(1)

    def _check_warmup(self, flags: np.ndarray | None) -> None:
        """Refuse a warm-up draw after posterior draws, before the buffer takes anything."""
        if flags is None or not len(flags):
            return
        started = self._leading_over
        for i, flag in enumerate(flags):
            if flag and started:
                raise ValueError(
                    f"Chain {self.cid}: draw {len(self) + i} is marked as warm-up "
                    f"({self._run.warmup_stat!r}) after posterior draws; warm-up draws must lead."
                )
            started = started or not flag

    def _check_staged(self, buffer: DrawBuffer) -> None:
        stat = self._run.warmup_stat
        if stat is None:
            return
        flag = buffer.stats.staged(stat)
        if type(flag) is not np.bool_:
            flags = self._warmup_flags({stat: flag}, None)
            self._check_warmup(flags)
            self._note_posterior(flags)
        elif flag:
            if self._leading_over:
                self._check_warmup(np.ones(1, bool))  # raises
        else:
            self._leading_over = True

    def _append_many(self, draws: Any, stats: Any, n: int) -> None:
        with self._writes.lock:
            flags = self._warmup_flags(stats, n)
            self._check_warmup(flags)
            super()._append_many(draws, stats, n)
            self._note_posterior(flags)

    def _note_posterior(self, flags: np.ndarray | None) -> None:
        if flags is not None and len(flags) and not flags.all():
            self._leading_over = True

    # ---- writing ------------------------------------------------------------------------

    def _resume(self) -> int:
        """Continue after the committed draws: partial chunks from the record's segment (or a
        closed chain's padded last chunks); debris of uncommitted flushes deleted."""
        record = self._read_record()
        record.writer = uuid.uuid4().hex
        self._tails = {}
        for array in self._run.arrays:
            n = record.length(array.group)
            grows = not (SAMPLED[array.group][1] and record.posterior_draws > 0)
            if n % array.chunk and grows:
                start = n - n % array.chunk
                self._tails[array.key] = self._read_with_retry([(array, start, n)], record)[0]
        folder = self._run.location.child(f"{CHAINS}/{self._number}")
        stale = [
            f"{CHAINS}/{self._number}/{s}"
            for s in folder.listdir()
            if s.startswith("seg-")  # segments and their temporary files
        ]
        keep = {f"{CHAINS}/{self._number}/{s}" for s in record.segments}
        self._run.location.remove([s for s in stale if s not in keep])
        paths = [p for column in self._hidden.values() for p in column.metadata_paths()]
        documents = self._run.location.read_many(paths, missing_ok=True)
        for column in self._hidden.values():
            column.resume(
                record.draws,
                documents,
                lambda col: col.create(VARIABLE_CHUNK_DRAWS, self._run.compression),
            )
        self._record = record
        self._lengths = {g: record.length(g) for g in SAMPLED}
        self._blocks = {}
        self._staged = None  # the next segment restages every partial chunk
        self._leading_over = self._leading_over or record.posterior_draws > 0
        return record.draws

    def _write(self, buffer: DrawBuffer, start: int, n: int) -> None:
        self._plan_write(buffer, start, n)()()

    def _plan_write(self, buffer: DrawBuffer, start: int, n: int) -> Encode:
        """Cut the write's chunks and stage its partial chunks' rows, in order (``_lengths``,
        ``_tails`` and ``_staged`` say what the writes handed over hold); the encodes start at
        once in the encode pool, beside the appends that follow and the previous write's
        storing. The store step (writer thread, in order) writes each file as its encode
        finishes, then commits."""
        before = dict(self._lengths)
        flags = self._warmup_flags(
            {self._run.warmup_stat: buffer.columns(Section.STATS).rows(self._run.warmup_stat, 0, n)}
            if self._run.warmup_stat
            else {},
            n,
        )
        n_warm = 0
        if flags is not None and before["posterior"] == 0:
            n_warm = int(np.argmin(flags)) if not flags.all() else n
        if flags is not None and flags[n_warm:].any():
            raise CorruptRunError(f"Chain {self.cid}: a warm-up draw after posterior draws.")
        chunks: dict[str, np.ndarray | Padded] = {}
        files: dict[str, bytes] = {}
        for array in self._run.arrays:
            rows = slice(0, n_warm) if SAMPLED[array.group][1] else slice(n_warm, n)
            if rows.stop > rows.start:
                columns = buffer.columns(array.section)
                parts = [columns.rows(p.name, rows.start, rows.stop) for p in array.member.parts]
                chunks.update(self._extend(array, _as_rows(parts, array), before[array.group]))
        for (section, name), column in self._hidden.items():
            files.update(column.append(buffer.columns(section).rows(name, 0, n)))
        lengths = {g: before[g] + (n_warm if w else n - n_warm) for g, (_, w) in SAMPLED.items()}
        closing = self._closing
        if n_warm < n or closing:  # warm-up over for good (or closing): partial chunks final
            final = [a for a in self._run.arrays if closing or SAMPLED[a.group][1]]
            chunks.update(self._last_chunks(final, lengths))
        live = self._live_segments(lengths)
        full = self._staged is None or len(live) >= MAX_SEGMENTS
        if full:
            live = []
        staged = self._to_stage(before, lengths, full)
        name = segment_name(start, start + n)
        if staged:
            live.append((name, {key: (first, len(rows)) for key, (first, rows) in staged.items()}))
        self._lengths, self._staged = lengths, live
        items = chunks | {f"{STAGED}{k}": rows for k, (_, rows) in staged.items()}
        encodes = submit_encodes(self._encode, items, lambda rows: rows.nbytes)
        segments = [name for name, _ in live]

        def store() -> None:
            blobs: dict[str, bytes] = {}
            local = self._run.location.is_local
            for i, encoded in enumerate(encodes):
                blobs.update(encoded.result())
                later = encodes[i + 1 :]
                if local and later and not later[0].done():  # store while the rest encodes
                    ready = [k for k in blobs if not k.startswith(STAGED)]
                    self._run.location.write_many({k: blobs.pop(k) for k in ready})
            if staged:
                stage = {key: blobs.pop(f"{STAGED}{key}") for key in staged}
                files[f"{CHAINS}/{self._number}/{name}"] = encode_segment(staged, stage)
            self._run.location.write_many(blobs | files)  # in one batch of requests remotely
            self._commit(lengths, segments, closed=closing, span=self._span(buffer, n))

        return lambda: store

    def _span(self, buffer: DrawBuffer, n: int) -> list[float] | None:
        """The record's ``sampling_span`` grown by the buffer's timed draws (PyMC runs)."""
        stats = self._run.stat_names
        if PERF_START not in stats or PERF_DIFF not in stats:
            return None
        columns = buffer.columns(Section.STATS)
        span = sampling_span(columns.rows(PERF_START, 0, n), columns.rows(PERF_DIFF, 0, n))
        old = self._record.sampling_span
        if span is None or old is None:
            return old if span is None else list(span)
        return [min(old[0], span[0]), max(old[1], span[1])]

    def _encoded(self, chunks: Mapping[str, np.ndarray | Padded]) -> dict[str, bytes]:
        """Chunks (and staged rows) encoded on the encode pool (blosc and zstd release the GIL)."""
        return encode_many(self._encode, chunks, lambda rows: rows.nbytes)

    def _encode(self, rows: np.ndarray | Padded) -> bytes:
        return self._run.compression.encode(rows.padded() if isinstance(rows, Padded) else rows)

    def _extend(self, array: ArraySpec, new: np.ndarray, length: int) -> dict[str, np.ndarray]:
        """Append rows to an array's partial chunk; complete chunks are returned by key. Whole
        chunks of ``new`` are views of it (the buffer is not touched once handed over); only
        rows of a partial chunk are copied, into a chunk-sized block that a partial chunk
        fills up (rows already staged in it never change)."""
        if array.is_str:  # str widths differ between writes: no fixed block
            return self._extend_str(array, new, length)
        c = array.chunk
        tail = self._tails.get(array.key)
        t = 0 if tail is None else len(tail)
        k = (length - t) // c
        chunks: dict[str, np.ndarray] = {}
        used = 0
        if t:
            block = self._blocks.get(array.key)
            if block is None:  # a tail read back on resuming
                block = np.empty((c, *array.shape), array.dtype)
                block[:t] = tail
            used = min(c - t, len(new))
            block[t : t + used] = new[:used]
            t += used
            if t < c:
                self._tails[array.key], self._blocks[array.key] = block[:t], block
                return chunks
            chunks[array.chunk_key(self._number, k)] = block[None]
            k += 1
        whole = (len(new) - used) // c
        for i in range(whole):
            lo = used + i * c
            chunks[array.chunk_key(self._number, k + i)] = new[None, lo : lo + c]
        rest = new[used + whole * c :]
        block = np.empty((c, *array.shape), array.dtype)
        block[: len(rest)] = rest
        self._tails[array.key], self._blocks[array.key] = block[: len(rest)], block
        return chunks

    def _extend_str(self, array: ArraySpec, new: np.ndarray, length: int) -> dict[str, np.ndarray]:
        tail = self._tails.get(array.key)
        tail = new if tail is None or not len(tail) else np.concatenate([tail, new])
        k = (length + len(new) - len(tail)) // array.chunk
        chunks = {}
        while len(tail) >= array.chunk:
            chunks[array.chunk_key(self._number, k)] = tail[None, : array.chunk]
            tail, k = tail[array.chunk :], k + 1
        self._tails[array.key] = tail
        return chunks

    def _last_chunks(self, arrays: list[ArraySpec], lengths: dict[str, int]) -> dict[str, Padded]:
        """Partial last chunks (padded with the fill value where encoded); their tails emptied."""
        chunks = {}
        for array in arrays:
            tail = self._tails.get(array.key)
            if tail is None or not len(tail):
                continue
            dtype = tail.dtype if array.is_str else array.dtype  # keeps the str width
            k = lengths[array.group] // array.chunk
            chunks[array.chunk_key(self._number, k)] = Padded(tail, dtype, array.chunk)
            self._tails[array.key] = tail[:0]
        return chunks

    # ---- staged segments ----------------------------------------------------------------

    def _to_stage(
        self, before: dict[str, int], lengths: dict[str, int], full: bool
    ) -> dict[str, tuple[int, np.ndarray]]:
        """``{array key: (first_row, rows)}`` for this flush's segment: the partial chunks'
        rows new in this flush (older ones are in the live segments), or with ``full`` all of
        them (after a resume, and when ``MAX_SEGMENTS`` are live: the new segment replaces
        them)."""
        staged = {}
        for array in self._run.arrays:
            tail = self._tails.get(array.key)
            if tail is None or not len(tail):
                continue
            n = lengths[array.group]
            first = n - len(tail) if full else max(before[array.group], n - len(tail))
            if first < n:
                staged[array.key] = (first, tail[len(tail) - (n - first) :])
        return staged

    def _live_segments(self, lengths: dict[str, int]) -> list[Segment]:
        """The live segments that still hold rows of a partial chunk."""
        if not self._staged:
            return []
        starts = {
            a.key: lengths[a.group] - len(self._tails.get(a.key, ())) for a in self._run.arrays
        }
        return [
            (name, entries)
            for name, entries in self._staged
            if any(first + rows > starts[key] for key, (first, rows) in entries.items())
        ]

    def _commit(
        self,
        lengths: dict[str, int],
        segments: list[str],
        closed: bool,
        span: list[float] | None = None,
    ) -> None:
        """Overwrite the record (the commit point), delete older segments, grow shapes."""
        old = self._record.segments
        record = Record(
            chain=self._number,
            writer=self._record.writer,
            draws=lengths["posterior"] + lengths.get("warmup_posterior", 0),
            warmup_draws=lengths.get("warmup_posterior", 0),
            posterior_draws=lengths["posterior"],
            segments=segments,
            closed=closed,
            sampling_span=span or self._record.sampling_span,
        )
        self._lease.confirm()  # still this chain's writer after a pause of lease_seconds / 4
        self._run.location.write_bytes(record_name(self._number), record.to_json())
        self._record = record
        self._run.location.remove(
            [f"{CHAINS}/{self._number}/{s}" for s in old if s not in segments]
        )
        groups = sorted({a.group for a in self._run.arrays})
        needs = wanted_shapes({self._number: record}, groups)
        have = {g: self._capacity.get(g, (0, 0)) for g in groups}
        if closed or any(needs[g][0] > have[g][0] or needs[g][1] > have[g][1] for g in groups):
            self._converge()

    def _finish(self) -> None:
        """Flush, write the padded last chunks, commit as closed; shapes become exact. Draws
        still buffered go in the same write (one commit and shape update, no segment)."""
        self._closing = True
        try:
            self.flush()
        finally:
            self._closing = False
        if self._close_failed:  # the partial chunks it took went nowhere: reread them
            self._start_writing()
        if self._appending and not self._record.closed:
            self._checked(self._writes.wait)
            self._lease.confirm()
            lengths = {g: self._record.length(g) for g in SAMPLED}
            try:
                self._run.location.write_many(
                    self._encoded(self._last_chunks(self._run.arrays, lengths))
                )
                self._commit(lengths, [], closed=True)
            except OSError as ex:
                self._close_failed = True
                raise self._finishing_error("Writing the last chunks", ex) from ex
            self._close_failed = False
            self._staged = []
        self._writes.close()

    def verify_hidden(self, committed: int) -> list[str]:
        """Problems of the hidden columns below ``committed`` draws (as v1 checks them)."""
        if not committed:
            return []
        return [p for c in self._hidden.values() for p in c.verify(committed)]

    # ---- reading ------------------------------------------------------------------------

    def _read_with_retry(
        self, requests: list[tuple[ArraySpec, int, int]], record: Record | None = None
    ) -> list[np.ndarray]:
        for _ in range(READ_RETRIES):
            try:
                return read_rows(
                    self._run.location,
                    record or self._read_record(),
                    requests,
                    self._run.compression,
                )
            except SegmentGone:
                record = None
        raise CorruptRunError(f"Chain {self.cid}: its staged segment kept vanishing while read.")

    def _reader(self, spec, section):
        def read(lo: int, hi: int) -> np.ndarray:
            return self._read_many_range([spec], lo, hi, section)[spec.name]

        return read

    def _read_many_stored(self, specs, idx, *, section):
        if not len(idx):
            return {
                s.name: np.empty((0, *s.shape), s.dtype) if s.is_rigid else as_object_array([])
                for s in specs
            }
        lo, hi = int(idx.min()), int(idx.max()) + 1
        block = self._read_many_range(specs, lo, hi, section)
        return {name: values[idx - lo] for name, values in block.items()}

    def _read_many_range(self, specs, lo: int, hi: int, section: Section) -> dict[str, np.ndarray]:
        """Chain draws ``lo:hi``: warm-up rows, then posterior rows."""
        for _ in range(READ_RETRIES):
            record = self._read_record()
            if hi > record.draws:
                raise CorruptRunError(
                    f"Chain {self.cid}: draws up to {hi} asked, {record.draws} committed."
                )
            w = record.warmup_draws
            requests = []
            owners: list[tuple[str, int | None]] = []
            in_arrays = [s for s in specs if (section, s.name) not in self._hidden]
            hidden = {
                s.name: self._hidden[(section, s.name)].read(lo, hi)
                for s in specs
                if (section, s.name) in self._hidden
            }
            for spec in in_arrays:
                for group, rows in (("warmup", (lo, min(hi, w))), ("", (max(lo, w) - w, hi - w))):
                    if rows[1] > rows[0]:
                        array, index = self._run.array(group, section, spec.name)
                        requests.append((array, *rows))
                        owners.append((spec.name, index if array.member.stacked else None))
            try:
                values = read_rows(self._run.location, record, requests, self._run.compression)
            except SegmentGone:
                continue
            out: dict[str, list[np.ndarray]] = {s.name: [] for s in in_arrays}
            for (name, part), block in zip(owners, values):
                out[name].append(block if part is None else block[..., part])
            in_array = {s.name: _as_draws(out[s.name], s) for s in in_arrays}
            return in_array | hidden
        raise CorruptRunError(f"Chain {self.cid}: its staged segment kept vanishing while read.")


@dataclass(frozen=True)
class Padded:
    """A partial last chunk: its rows, padded with the fill value to ``length`` rows when it is
    encoded (in the encode pool, not in the thread that plans the write)."""

    rows: np.ndarray
    dtype: np.dtype
    length: int

    @property
    def nbytes(self) -> int:
        return self.length * self.rows[:1].nbytes

    def padded(self) -> np.ndarray:
        padded = fill_array(self.dtype, (1, self.length, *self.rows.shape[1:]))
        padded[0, : len(self.rows)] = self.rows
        return padded


def _as_rows(parts: list[Any], array: ArraySpec) -> np.ndarray:
    """An array's rows from its parts' values (stacked along a last axis when several)."""
    values = np.stack(parts, axis=-1) if array.member.stacked else parts[0]
    if array.is_str:
        return np.asarray(values).astype(str).reshape(-1, *array.shape)
    return np.asarray(values, dtype=array.dtype)


def _as_draws(blocks: list[np.ndarray], spec) -> np.ndarray:
    """A stored variable's draws from its blocks (warm-up, posterior), in its own dtype (a
    stacked array holds its parts' common type)."""
    if not blocks:
        return np.empty((0, *spec.shape), spec.dtype)
    values = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
    if not spec.is_str and values.dtype != spec.dtype:
        values = values.astype(spec.dtype)
    if spec.is_str:
        from ...codec import str_draws

        return str_draws(values)
    return values.astype(spec.dtype, copy=False)  # big-endian declarations read back so
