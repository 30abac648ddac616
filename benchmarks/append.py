"""Append throughput and latency of every backend, against what the machine physically does.

    python benchmarks/append.py [--backends numpy,zarr,parquet,clickhouse] [--storage local,s3]
                                [--workloads small,scalars300,big] [--rounds 3] [--quick]

What is measured, and why:

- Each workload appends the same pre-generated float32 draws to one chain of a fresh run in a
  fresh directory (or S3 prefix), then closes the run: the time includes ``init_run`` and the
  final flush, so buffered backends pay for everything they buffered.
- Physical references, on the same bytes in the same process: writing them to fresh files in
  4 MiB pieces (without fsync, i.e. into the page cache; and with one fsync per file at the
  end), and encoding them with each format's default codec (Zarr: blosc-lz4 + byte shuffle +
  CRC-32C on <= 1 MiB chunks, as ``mcbackend/zarrio.py`` writes them, on one thread and on a
  pool of two; Parquet: pyarrow with zstd and page checksums on 4 MiB row groups, as
  ``ParquetBackend`` writes them). A backend is printed as draws/s, MiB/s and as ratios to
  these references and to NumPyBackend (a memory copy): targets are ratios measured in one
  run, not absolute figures.
- Latency of every single ``append`` (p50, p99, max in ms), locally and on S3 (moto's server
  on loopback, started here): a sampler stalls for the slowest append, not the average.
- Files written per MiB of draws (Zarr and Parquet, local): each file costs a request on S3.

The machine this runs on may be shared and noisy: every case runs once per round, the order
of cases rotates between rounds, and the report gives medians with the raw figures.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import shutil
import socket
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import numpy as np

import mcbackend as mcb
from mcbackend.meta import RunMeta, Variable

PIECE_BYTES = 4 << 20  # the file-write reference writes pieces of this size
ZARR_CHUNK_BYTES = 1 << 20  # ZarrBackend's default chunks hold at most this much
STATS = [Variable("in_warmup", "bool", [])]


# ---- workloads ------------------------------------------------------------------------------


@dataclass
class Workload:
    """Pre-generated draws (distinct random values, so codecs see realistic data)."""

    name: str
    shapes: dict[str, tuple[int, ...]]
    draws: list[dict[str, np.ndarray]] = field(repr=False)

    @property
    def n(self) -> int:
        return len(self.draws)

    @property
    def draw_bytes(self) -> int:
        return sum(4 * int(np.prod(s)) for s in self.shapes.values())

    @property
    def mib(self) -> float:
        return self.n * self.draw_bytes / 2**20

    def columns(self) -> dict[str, np.ndarray]:
        """Each variable's draws stacked: the bytes every reference works on."""
        return {name: np.stack([d[name] for d in self.draws]) for name in self.shapes}

    def meta(self) -> RunMeta:
        variables = [Variable(name, "float32", list(s)) for name, s in self.shapes.items()]
        return RunMeta(rid=f"bench{uuid.uuid4().hex[:12]}", variables=variables, sample_stats=STATS)


# Draw counts span at least three default flushes (16384, 2048 and 64/512 draws), so the
# latencies include appends that meet a flush under way.
WORKLOADS: dict[str, tuple[str, dict[str, tuple[int, ...]], int]] = {
    "small": ("small: (), (3,), (5,2)", {"a": (), "b": (3,), "c": (5, 2)}, 50_000),
    "scalars300": ("300 scalar variables", {f"v{i}": () for i in range(300)}, 6_500),
    "big": ("big: (100,), (1000,), (100,100)", {"x": (100,), "y": (1000,), "z": (100, 100)}, 2_048),
}


def make_workload(key: str, scale: float) -> Workload:
    title, shapes, n = WORKLOADS[key]
    rng = np.random.default_rng(42)
    n = max(int(n * scale), 10)
    draws = [
        {name: rng.normal(size=s).astype("float32") for name, s in shapes.items()} for _ in range(n)
    ]
    return Workload(title, shapes, draws)


# ---- physical references --------------------------------------------------------------------


def pieces(columns: dict[str, np.ndarray], size: int = PIECE_BYTES) -> list[memoryview]:
    """All the columns' bytes, one after the other, cut into pieces of ``size`` bytes."""
    raw = memoryview(np.concatenate([arr.reshape(-1) for arr in columns.values()])).cast("B")
    return [raw[i : i + size] for i in range(0, len(raw), size)]


def write_files(columns: dict[str, np.ndarray], directory: str, fsync: bool) -> float:
    """Seconds to write the bytes as fresh files of 4 MiB; with ``fsync``, one per file at the end."""
    chunks = pieces(columns)
    start = time.perf_counter()
    descriptors = []
    for i, piece in enumerate(chunks):
        fd = os.open(os.path.join(directory, f"p{i}"), os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        os.write(fd, piece)
        descriptors.append(fd)
    for fd in descriptors:
        if fsync:
            os.fsync(fd)
        os.close(fd)
    return time.perf_counter() - start


def zarr_chunks(columns: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Chunks of at most 1 MiB (a power of two of draws), as ZarrBackend cuts them by default."""
    chunks = []
    for arr in columns.values():
        row = max(arr[0].nbytes, 1)
        rows = 2 ** int(np.log2(max(ZARR_CHUNK_BYTES // row, 1)))
        chunks += [arr[i : i + rows] for i in range(0, len(arr), rows)]
    return chunks


def zarr_encode(columns: dict[str, np.ndarray], threads: int) -> float:
    """Seconds to blosc-lz4-shuffle-compress and CRC-32C every chunk (the Zarr default codecs),
    each chunk on one thread (as in ZarrBackend's writer thread, where numcodecs does not
    start blosc's own threads), chunks on a pool of ``threads``."""
    import google_crc32c
    import numcodecs
    import numcodecs.blosc

    blosc = numcodecs.Blosc("lz4", 5, numcodecs.Blosc.SHUFFLE, blocksize=0)

    def encode(chunk: np.ndarray) -> int:
        raw = blosc.encode(chunk)
        return len(raw) + len(np.uint32(google_crc32c.value(raw)).tobytes())

    chunks = zarr_chunks(columns)
    default, numcodecs.blosc.use_threads = numcodecs.blosc.use_threads, False
    try:
        start = time.perf_counter()
        if threads == 1:
            for chunk in chunks:
                encode(chunk)
        else:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(encode, chunks))
        return time.perf_counter() - start
    finally:
        numcodecs.blosc.use_threads = default


def parquet_encode(columns: dict[str, np.ndarray]) -> float:
    """Seconds to encode the draws as Parquet with ParquetBackend's default compression (zstd)
    and page checksums, one row group per 4 MiB of draws, fixed shapes as fixed-size lists."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    compression = inspect.signature(mcb.ParquetBackend).parameters["compression"].default
    n = len(next(iter(columns.values())))
    draw_bytes = sum(arr[0].nbytes for arr in columns.values())
    rows = max(PIECE_BYTES // draw_bytes, 1)
    start = time.perf_counter()
    for lo in range(0, n, rows):
        arrays = {}
        for name, arr in columns.items():
            part = arr[lo : lo + rows]
            flat = pa.array(part.reshape(-1))
            size = int(np.prod(arr.shape[1:]))
            arrays[name] = pa.FixedSizeListArray.from_arrays(flat, size) if arr.ndim > 1 else flat
        table = pa.table(arrays)
        sink = io.BytesIO()
        pq.write_table(
            table, sink, compression=compression, use_dictionary=False, write_statistics=False,
            write_page_checksum=True, row_group_size=len(table),
        )  # fmt: skip
    return time.perf_counter() - start


REFERENCES = ["files", "files+fsync", "zarr codec", "zarr codec x2", "parquet codec"]
"""``zarr codec`` runs on one thread, ``zarr codec x2`` on two."""


def measure_reference(name: str, columns: dict[str, np.ndarray], scratch: str) -> float:
    """Median seconds of one reference, repeated at least 3 times and for 0.25 s: they take
    milliseconds, so a single run mostly measures the machine's noise."""
    times: list[float] = []
    while len(times) < 3 or sum(times) < 0.25:
        times.append(reference_once(name, columns, scratch))
    return statistics.median(times)


def reference_once(name: str, columns: dict[str, np.ndarray], scratch: str) -> float:
    if name in ("files", "files+fsync"):
        directory = tempfile.mkdtemp(dir=scratch)
        try:
            return write_files(columns, directory, fsync=name == "files+fsync")
        finally:
            shutil.rmtree(directory)
    if name.startswith("zarr codec"):
        return zarr_encode(columns, threads=2 if name.endswith("x2") else 1)
    return parquet_encode(columns)


# ---- backends -------------------------------------------------------------------------------


@dataclass
class Measurement:
    seconds: float
    latencies_ms: np.ndarray
    #: CPU seconds of the whole process (every thread) meanwhile: steadier than wall time on
    #: a busy machine, and it counts the writer threads' work too.
    cpu_seconds: float = 0.0
    files: int | None = None
    stored_bytes: int | None = None
    flush: str = ""


def append_all(
    backend: mcb.Backend, workload: Workload
) -> tuple[float, np.ndarray, mcb.Run, float]:
    """Seconds to create a run, append every draw to one chain and close the run; each
    ``append``'s latency in ms; the CPU seconds of the process meanwhile."""
    latencies = np.empty(workload.n)
    stats = [{"in_warmup": False}, {"in_warmup": True}]  # a leading warm-up, as samplers do
    clock = time.perf_counter
    cpu = time.process_time()
    start = clock()
    run = backend.init_run(workload.meta())
    chain = run.init_chain(0)
    for i, draw in enumerate(workload.draws):
        t = clock()
        chain.append(draw, stats[int(i < workload.n // 2)])
        latencies[i] = clock() - t
    run.close()
    seconds = clock() - start
    cpu = time.process_time() - cpu
    if len(chain) != workload.n:
        raise AssertionError(f"{backend}: {len(chain)} draws stored, {workload.n} appended")
    return seconds, latencies * 1000, run, cpu


def flush_settings(run: mcb.Run) -> str:
    """The flush policy a file run chose (it decides file sizes and when appends wait)."""
    names = ["flush_every", "flush_seconds", "background_flush", "chunk_draws", "compression"]
    found = {n: getattr(run, n) for n in names if hasattr(run, n)}
    return ", ".join(f"{k}={v}" for k, v in found.items())


def local_files(path: str) -> tuple[int, int]:
    """Files and bytes under ``path``."""
    count = size = 0
    for root, _, files in os.walk(path):
        count += len(files)
        size += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return count, size


@dataclass
class Case:
    """One backend on one storage; ``make`` returns a backend rooted somewhere fresh."""

    label: str
    make: Callable[[], tuple[mcb.Backend, str | None]]

    def measure(self, workload: Workload) -> Measurement:
        backend, local_root = self.make()
        seconds, latencies, run, cpu = append_all(backend, workload)
        m = Measurement(seconds, latencies, cpu, flush=flush_settings(run))
        if local_root is not None:
            m.files, m.stored_bytes = local_files(local_root)
            shutil.rmtree(local_root, ignore_errors=True)
        return m


def file_cases(names: list[str], storage: list[str], scratch: str, s3: dict | None) -> list[Case]:
    classes = {"zarr": "ZarrBackend", "parquet": "ParquetBackend"}
    cases = []
    for name in [n for n in names if n in classes]:
        cls = getattr(mcb, classes[name])
        if "local" in storage:

            def local(cls=cls) -> tuple[mcb.Backend, str]:
                root = tempfile.mkdtemp(dir=scratch)
                return cls(root), root

            cases.append(Case(f"{name} local", local))
        if s3 is not None:

            def remote(cls=cls) -> tuple[mcb.Backend, None]:
                return cls(f"{s3['bucket']}/{uuid.uuid4().hex[:12]}", s3["options"]), None

            cases.append(Case(f"{name} s3", remote))
    return cases


def clickhouse_cases() -> tuple[list[Case], Callable[[], None]]:
    """Cases on a fresh database of the server at 127.0.0.1:9000, if one answers: with one
    client passed in (inserts inline: the caller may use the client between appends) and with
    ``client_fn`` (a client per chain, inserting on a thread while appends go on)."""
    try:
        import clickhouse_driver

        admin = clickhouse_driver.Client("127.0.0.1", connect_timeout=3)
        admin.execute("SELECT 1")
    except Exception as ex:
        print(f"(clickhouse skipped: {ex})")
        return [], lambda: None
    database = f"mcb_bench_{uuid.uuid4().hex[:10]}"
    admin.execute(f"CREATE DATABASE {database}")
    client = clickhouse_driver.Client("127.0.0.1", database=database)

    def new_client():
        return clickhouse_driver.Client("127.0.0.1", database=database)

    cases = [
        Case("clickhouse", lambda: (mcb.ClickHouseBackend(client), None)),
        Case("clickhouse fn", lambda: (mcb.ClickHouseBackend(client, client_fn=new_client), None)),
    ]
    return cases, lambda: admin.execute(f"DROP DATABASE {database}")


@contextmanager
def moto_bucket() -> Iterator[dict]:
    """moto's S3 server on a free loopback port and a fresh bucket in it (as tests/conftest.py)."""
    from moto.server import ThreadedMotoServer
    from s3fs import S3FileSystem

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        options = {
            "endpoint_url": f"http://127.0.0.1:{port}",
            "key": "testing",
            "secret": "testing",
        }
        bucket = f"mcb-bench-{uuid.uuid4().hex[:8]}"
        S3FileSystem(**options).mkdir(bucket)
        yield {"bucket": f"s3://{bucket}", "options": options}
    finally:
        server.stop()


# ---- rounds and report ----------------------------------------------------------------------


def rotated(items: list, r: int) -> list:
    k = r % len(items) if items else 0
    return items[k:] + items[:k]


def run_rounds(
    workload: Workload, cases: list[Case], rounds: int, scratch: str
) -> tuple[dict[str, list[float]], dict[str, list[Measurement]]]:
    """Every reference and case once per round, in an order that rotates between rounds."""
    columns = workload.columns()
    refs: dict[str, list[float]] = {name: [] for name in REFERENCES}
    results: dict[str, list[Measurement]] = {c.label: [] for c in cases}
    jobs: list[Callable[[], None]] = [
        lambda name=name: refs[name].append(measure_reference(name, columns, scratch))
        for name in REFERENCES
    ]
    jobs += [lambda c=c: results[c.label].append(c.measure(workload)) for c in cases]
    for case in cases:  # warm-up: imports, thread pools, connections
        case.measure(Workload(workload.name, workload.shapes, workload.draws[:10]))
    for r in range(rounds):
        for job in rotated(jobs, r):
            job()
        print(f"  round {r + 1}/{rounds} done", flush=True)
    return refs, results


def fmt_raw(values: list[float], digits: int = 0) -> str:
    return "[" + " ".join(f"{v:.{digits}f}" for v in values) + "]"


def report(
    workload: Workload,
    where: str,
    refs: dict[str, list[float]],
    results: dict[str, list[Measurement]],
) -> None:
    mib = workload.mib
    print(f"\n== {workload.name}, {where}: {workload.n} draws of "
          f"{workload.draw_bytes / 1024:.1f} KiB, {mib:.1f} MiB ==")  # fmt: skip
    ref_rates = {name: mib / statistics.median(s) for name, s in refs.items()}
    print(f"{'reference':24s} {'MiB/s':>8s}  raw MiB/s per round")
    for name, seconds in refs.items():
        print(f"{name:24s} {ref_rates[name]:8.0f}  {fmt_raw([mib / s for s in seconds])}")
    numpy_rate = numpy_cpu_rate = None
    if "numpy" in results:
        numpy_rate = workload.n / statistics.median(m.seconds for m in results["numpy"])
        numpy_cpu_rate = workload.n / statistics.median(m.cpu_seconds for m in results["numpy"])
    header = (
        f"{'backend':24s} {'draws/s':>9s} {'MiB/s':>7s} {'/numpy':>7s} {'cpu/np':>7s} {'/files':>7s}"
        f" {'/fsync':>7s} {'/codec':>7s} {'p50 ms':>7s} {'p99 ms':>7s} {'max ms':>7s} {'>5ms':>5s}"
        f" {'files/MiB':>9s} {'size':>6s}  raw draws/s per round"
    )
    print(header)
    for label, ms in results.items():
        print(backend_line(label, ms, workload, ref_rates, numpy_rate, numpy_cpu_rate))
    settings = {label: ms[0].flush for label, ms in results.items() if ms and ms[0].flush}
    for label, text in settings.items():
        print(f"  flush settings, {label}: {text}")


def backend_line(label, ms, workload, ref_rates, numpy_rate, numpy_cpu_rate) -> str:
    rates = [workload.n / m.seconds for m in ms]
    rate = workload.n / statistics.median(m.seconds for m in ms)
    cpu_rate = workload.n / statistics.median(max(m.cpu_seconds, 1e-9) for m in ms)
    mib_rate = rate * workload.draw_bytes / 2**20
    codec = {"zarr": "zarr codec", "parquet": "parquet codec"}.get(label.split()[0])
    lat = np.concatenate([m.latencies_ms for m in ms])
    # Latency percentiles per round, then the median over rounds; max is the worst of all.
    p50 = statistics.median(np.percentile(m.latencies_ms, 50) for m in ms)
    p99 = statistics.median(np.percentile(m.latencies_ms, 99) for m in ms)
    slow = statistics.median(int((m.latencies_ms > 5).sum()) for m in ms)  # per round
    files = ms[0].files
    per_mib = f"{files / workload.mib:9.2f}" if files is not None else f"{'-':>9s}"
    stored = ms[0].stored_bytes
    size = f"{stored / 2**20 / workload.mib:6.2f}" if stored is not None else f"{'-':>6s}"
    return (
        f"{label:24s} {rate:9.0f} {mib_rate:7.1f}"
        f" {ratio(rate, numpy_rate):>7s} {ratio(cpu_rate, numpy_cpu_rate):>7s}"
        f" {ratio(mib_rate, ref_rates['files']):>7s}"
        f" {ratio(mib_rate, ref_rates['files+fsync']):>7s}"
        f" {ratio(mib_rate, ref_rates.get(codec or '', 0.0)):>7s}"
        f" {p50:7.3f} {p99:7.3f} {lat.max():7.1f} {slow:5.0f} {per_mib} {size}  {fmt_raw(rates)}"
    )


def ratio(value: float, reference: float | None) -> str:
    return f"{value / reference:.3f}x" if reference else "-"


# ---- main -----------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backends", default="numpy,zarr,parquet,clickhouse")
    parser.add_argument("--storage", default="local,s3", help="where file backends write")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the draw counts")
    parser.add_argument(
        "--s3-scale", type=float, default=1.0, help="S3 draw counts relative to local"
    )
    parser.add_argument(
        "--quick", action="store_true", help="one round, a tenth of the draws (a smoke test)"
    )
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.scale = 1, args.scale * 0.1
    return args


def backend_cases(names: list[str], storage: list[str], scratch: str, s3: dict | None):
    """Local cases (numpy, zarr, parquet, clickhouse) and S3 cases, and a cleanup."""
    cases = [Case("numpy", lambda: (mcb.NumPyBackend(), None))] if "numpy" in names else []
    cases += file_cases(names, storage, scratch, None)
    cleanup: Callable[[], None] = lambda: None  # noqa: E731
    if "clickhouse" in names:
        more, cleanup = clickhouse_cases()
        cases += more
    s3_cases = file_cases(names, [], scratch, s3) if s3 else []
    if s3_cases and "numpy" in names:  # the same workload in memory, for the ratio
        s3_cases.insert(0, cases[0])
    return cases, s3_cases, cleanup


LEGEND = """\
Columns: draws/s and MiB/s of appending and closing (median of rounds); /numpy, /files,
/fsync, /codec: that rate over NumPyBackend's, over writing the same bytes to 4 MiB files
(page cache; one fsync per file at the end) and over the format's default codec on one thread;
cpu/np: draws per CPU second of the process (all threads) over NumPyBackend's, steadier than
wall time when the machine is busy;
p50/p99: per-append latency (median over rounds), max: worst append of all rounds, >5ms:
appends slower than 5 ms per round; files/MiB: files written per MiB of draws, size: bytes
stored over bytes of draws (local)."""


def describe_machine(scratch: str) -> str:
    import numcodecs.blosc

    stat = os.statvfs(scratch)
    return (
        f"cpus={os.cpu_count()} scratch={scratch} ({stat.f_bavail * stat.f_frsize / 2**30:.0f} GiB"
        f" free) numcodecs.blosc.use_threads={numcodecs.blosc.use_threads}"
        f" blosc threads={numcodecs.blosc.get_nthreads()}"
    )


def main() -> None:
    args = parse_args()
    names, storage = args.backends.split(","), args.storage.split(",")
    with ExitStack() as stack:
        scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="mcbackend-bench-"))
        s3 = stack.enter_context(moto_bucket()) if "s3" in storage else None
        cases, s3_cases, cleanup = backend_cases(names, storage, scratch, s3)
        stack.callback(cleanup)
        print(f"rounds={args.rounds} scale={args.scale} s3-scale={args.s3_scale}")
        print(describe_machine(scratch))
        print(LEGEND)
        for key in args.workloads.split(","):
            workload = make_workload(key, args.scale)
            print(f"\n{workload.name}, local: measuring...", flush=True)
            report(workload, "local", *run_rounds(workload, cases, args.rounds, scratch))
            if s3_cases:
                remote = make_workload(key, args.scale * args.s3_scale)
                print(f"\n{remote.name}, S3: measuring...", flush=True)
                where = "S3 (moto on loopback)"
                report(remote, where, *run_rounds(remote, s3_cases, args.rounds, scratch))


if __name__ == "__main__":
    main()
