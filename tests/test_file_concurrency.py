"""Zarr and Parquet runs under concurrent processes: one creator per run id (issue 13 item 2)."""

import multiprocessing
import uuid

import pytest

import mcbackend as mcb
from mcbackend.errors import RunExistsError
from mcbackend.meta import ExtendedValue, RunMeta, Variable

pytestmark = [
    pytest.mark.filterwarnings("error::ResourceWarning"),
    pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning"),
]

SPAWN = multiprocessing.get_context("spawn")

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
