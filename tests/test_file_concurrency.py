"""Zarr and Parquet runs under concurrent processes: one creator per run id (issue 13 item 2)."""

import multiprocessing
import os
import shutil
import subprocess
import sys
import uuid

import pytest

import mcbackend as mcb
from mcbackend.errors import RunExistsError, RunNotFoundError
from mcbackend.files import Location
from mcbackend.meta import ExtendedValue, RunMeta, Variable

pytestmark = [
    pytest.mark.filterwarnings("error::ResourceWarning"),
    pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning"),
]

SPAWN = multiprocessing.get_context("spawn")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the checkout (for -c)

#: Every file layout: (backend class name, format_version).
LAYOUTS = {
    "zarr1": ("ZarrBackend", 1),
    "zarr2": ("ZarrBackend", 2),
    "parquet1": ("ParquetBackend", 1),
    "parquet2": ("ParquetBackend", 2),
}


@pytest.fixture(params=sorted(LAYOUTS))
def layout(request) -> str:
    if request.param.startswith("parquet"):
        pytest.importorskip("pyarrow")
    return request.param


def backend_of(layout: str, root: str, options: dict | None, **kwargs) -> mcb.Backend:
    cls, version = LAYOUTS[layout]
    return getattr(mcb, cls)(root, options, format_version=version, flush_seconds=None, **kwargs)


def meta_of(rid: str, worker: int) -> RunMeta:
    """Each worker's metadata differs, so a loser overwriting the winner's shows."""
    return RunMeta(
        rid=rid,
        variables=[Variable("who", "int64", [])],
        attributes={"creator": ExtendedValue(string_value=f"worker {worker}")},
    )


# ---- workers (module level: spawned processes import them) ---------------------------------


def create_runs(layout, root, options, rids, worker, barrier, results):
    backend = backend_of(layout, root, options)
    for rid in rids:
        barrier.wait()
        try:
            run = backend.init_run(meta_of(rid, worker))
            chain = run.init_chain(0)
            chain.append({"who": worker})
            run.close()
            results.put((rid, worker, "created"))
        except RunExistsError:
            results.put((rid, worker, "exists"))
        except Exception as ex:
            results.put((rid, worker, f"error {type(ex).__name__}: {str(ex)[:300]}"))


def run_workers(target, workers: int, trials: int, before=()) -> list[tuple]:
    """Run ``target(*before, worker, barrier, results)`` in ``workers`` processes that meet at
    a barrier before each trial; their results, one per worker and trial."""
    barrier = SPAWN.Barrier(workers)
    results = SPAWN.Queue()
    procs = [
        SPAWN.Process(target=target, args=(*before, w, barrier, results)) for w in range(workers)
    ]
    for p in procs:
        p.start()
    out = [results.get(timeout=300) for _ in range(workers * trials)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
        p.close()
    results.close()
    results.join_thread()
    return out


def check_one_creator_per_run_id(layout, root, options, workers: int, trials: int) -> None:
    """Of ``workers`` processes creating each run id at once exactly one succeeds, the others
    get ``RunExistsError``; the run holds the winner's metadata and draw."""
    rids = [f"race_{uuid.uuid4().hex[:8]}_{t}" for t in range(trials)]
    out = run_workers(create_runs, workers, trials, before=(layout, root, options, rids))
    errors = [o for o in out if o[2].startswith("error")]
    assert not errors, errors
    reader = backend_of(layout, root, options)
    listed = list(reader.get_runs().rid)
    for rid in rids:
        outcomes = sorted(o[2] for o in out if o[0] == rid)
        assert outcomes == ["created"] + ["exists"] * (workers - 1), (rid, outcomes)
        (winner,) = [o[1] for o in out if o[0] == rid and o[2] == "created"]
        run = reader.get_run(rid)
        assert run.meta.attributes["creator"].string_value == f"worker {winner}"
        (chain,) = run.get_chains()
        assert chain.get_draws("who").tolist() == [winner]
        assert listed.count(rid) == 1


def test_concurrent_creators_of_one_run_id_exactly_one_wins(layout, tmp_path):
    check_one_creator_per_run_id(layout, str(tmp_path), None, workers=4, trials=15)


@pytest.mark.s3
def test_concurrent_creators_of_one_run_id_exactly_one_wins_on_s3(layout, s3_bucket, s3_options):
    check_one_creator_per_run_id(layout, s3_bucket, s3_options, workers=3, trials=8)


@pytest.mark.s3
def test_s3_create_if_absent_is_honoured(s3_bucket, s3_options):
    """The claim relies on it: the S3 server (moto here) refuses a second ``If-None-Match: *``."""
    folder = Location.from_url(f"{s3_bucket}/claims", s3_options)
    folder.create_file("a", b"first")
    with pytest.raises(FileExistsError):
        folder.create_file("a", b"second")
    assert folder.read_bytes("a") == b"first"


#: A creator that claims the run id, then stalls before writing its files (to be killed).
STALLING_CREATOR = """
import sys, time
import mcbackend as mcb
from tests.test_file_concurrency import meta_of

def stall(self, run_dir, meta):
    print("claimed", flush=True)
    time.sleep(600)

mcb.ZarrBackend._prepare_run = stall
mcb.ZarrBackend(sys.argv[1]).init_run(meta_of("r", 0))
"""


def test_creation_under_way_or_crashed_is_reported_and_its_folder_can_be_deleted(tmp_path):
    """A run id claimed by a creator that has not written its marker is no run yet: creating
    it again names the process (still running, or crashed); deleting the folder frees the id."""
    backend = mcb.ZarrBackend(str(tmp_path))
    proc = subprocess.Popen(
        [sys.executable, "-c", STALLING_CREATOR, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout.readline() == "claimed\n"
        with pytest.raises(RunExistsError, match=f"process {proc.pid} .* has not finished"):
            backend.init_run(meta_of("r", 1))
        with pytest.raises(RunNotFoundError, match="not a run yet"):
            backend.get_run("r")
        assert "r" not in list(backend.get_runs().rid)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    with pytest.raises(RunExistsError, match=f"process {proc.pid} .* crashed .* delete "):
        backend.init_run(meta_of("r", 1))
    shutil.rmtree(tmp_path / "r")
    backend.init_run(meta_of("r", 1)).close()
    assert backend.get_run("r").meta.attributes["creator"].string_value == "worker 1"


@pytest.mark.s3
def test_failed_creation_on_s3_leaves_nothing(layout, s3_bucket, s3_options, monkeypatch):
    """A creation failing after its files went up (injected after the layout's own files)
    deletes them, claim last: the id can be created again at once."""
    backend = backend_of(layout, s3_bucket, s3_options)
    prepare = type(backend)._prepare_run

    def prepare_then_fail(self, run_dir, meta):
        prepare(self, run_dir, meta)
        raise OSError("injected: the connection dropped")

    monkeypatch.setattr(type(backend), "_prepare_run", prepare_then_fail)
    with pytest.raises(OSError, match="Cannot write the run to .*injected"):
        backend.init_run(meta_of("r", 0))
    assert Location.from_url(f"{s3_bucket}/r", s3_options).files() == []
    monkeypatch.undo()
    backend.init_run(meta_of("r", 1)).close()
    assert backend.get_run("r").meta.attributes["creator"].string_value == "worker 1"
