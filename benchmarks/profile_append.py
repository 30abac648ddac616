"""Where the time of appending goes, per thread: a py-spy profile summarised by activity.

    python benchmarks/profile_append.py [--backend zarr] [--workload big] [--repeat 3]

Runs ``benchmarks/append.py``'s workload into one local file backend under ``py-spy record
--threads --idle`` (``pip install py-spy``) and sorts every sample of every thread into what
it was doing: in the sampler's thread, appending (validation, buffer copy) or waiting for the
previous flush; in the flush thread, encoding, copying, writing files, metadata; in the encode
pool, encoding; in the write pool, writing. Seconds are samples divided by the sampling rate, so threads can add up to more
than the wall time (two cores) and idle time shows how much parallelism is left unused.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
import time

RATE = 200  # samples per second

# The first activity with a frame in the stack wins.
ACTIVITIES = [
    ("wait: previous flush", ["_wait_for_background", "_make_room", "_collect_oldest"]),
    ("wait: encode pool", ["encode_many ("]),
    ("wait: write pool", ["Future.result", "Condition.wait", "Semaphore.acquire"]),
    ("encode", ["Compression.encode", "_parquet_bytes", "ParquetWriter", "crc32c", "numcodecs"]),
    ("metadata (json)", ["document", "json", "chain_document"]),
    ("write files", ["_write_local", "write_many", "fsspec", "s3fs", "open ", "write "]),
    ("copy/assemble", ["ArrayAppender.append", "_table", "to_arrow", "concatenate", "stack"]),
    ("validate", ["validation.py"]),
    ("buffer append", ["DrawBuffer", "ColumnStore", "columns.py"]),
]


def thread_group(name: str) -> str:
    if "MainThread" in name:
        return "sampler (main)"
    if "mcbackend-write" in name:
        return "write pool"
    if "mcbackend-encode" in name:
        return "encode pool"
    if "idle-flush" in name:
        return "other"  # sleeps until a chain idles
    if "mcbackend-" in name:
        return "flush thread"
    return "other"


def activity(frames: list[str]) -> str:
    for label, needles in ACTIVITIES:
        for frame in reversed(frames):
            if any(needle in frame for needle in needles):
                return label
    return "other"


def phase(group: str, frames: list[str]) -> str | None:
    """The sampler's samples count inside the timed part only (``close`` is the final flush);
    the writers' threads live only while there is something to write."""
    if group != "sampler (main)":
        return "-"
    text = ";".join(frames)
    if "append_all" not in text:
        return None
    return "close" if "close (" in text else "append"


def summarise(raw_path: str) -> dict[tuple[str, str, str], int]:
    counts: collections.Counter[tuple[str, str, str]] = collections.Counter()
    with open(raw_path) as lines:
        stacks = [line.rstrip().rpartition(" ") for line in lines]
    for stack, _, n in stacks:
        frames = stack.split(";")
        group = thread_group(frames[0])
        where = phase(group, frames[1:])
        if group == "other" or where is None:
            continue
        idle = frames[-1].startswith("_worker (")  # a pool thread waiting for work
        what = "idle" if idle else activity(frames[1:])
        counts[(group, where, what)] += int(n)
    return counts


def print_summary(counts: dict[tuple[str, str, str], int], wall: float) -> None:
    print(f"wall time appending and closing: {wall:.2f} s; seconds per thread and activity:")
    for group in ("sampler (main)", "flush thread", "encode pool", "write pool"):
        rows = {k: v for k, v in counts.items() if k[0] == group}
        total = sum(rows.values()) / RATE
        print(f"  {group}: {total:.2f} s sampled")
        for (_, where, what), n in sorted(rows.items(), key=lambda kv: -kv[1]):
            print(f"    {where:7s} {what:22s} {n / RATE:7.2f} s")


def child(args: argparse.Namespace) -> None:
    """The measured process: the workload into a fresh local run, ``--repeat`` times."""
    sys.path.insert(0, os.path.dirname(__file__))
    import append as bench

    import mcbackend as mcb

    cls = {"zarr": mcb.ZarrBackend, "parquet": mcb.ParquetBackend}[args.backend]
    workload = bench.make_workload(args.workload, args.scale)
    wall = 0.0
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as root:
            seconds, latencies, _, _ = bench.append_all(cls(root), workload)
        wall += seconds
        print(
            f"{workload.n / seconds:.0f} draws/s, {workload.mib / seconds:.1f} MiB/s, "
            f"max append {latencies.max():.1f} ms, {(latencies > 5).sum()} appends > 5 ms"
        )
    print(f"wall={wall}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", default="zarr", choices=["zarr", "parquet"])
    parser.add_argument("--workload", default="big")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    py_spy = os.path.join(os.path.dirname(sys.executable), "py-spy")
    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "profile.txt")
        command = [py_spy, "record", "--threads", "--idle", "--rate", str(RATE), "-f", "raw"]
        command += ["-o", raw, "--", sys.executable, __file__, "--child", *sys.argv[1:]]
        start = time.perf_counter()
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        print(f"(profiled run took {time.perf_counter() - start:.1f} s)")
        lines = out.splitlines()
        print("\n".join(line for line in lines if not line.startswith("wall=")))
        wall = float(next(line for line in lines if line.startswith("wall="))[5:])
        print_summary(summarise(raw), wall)


if __name__ == "__main__":
    main()
