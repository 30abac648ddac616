"""ClickHouse under concurrent processes: one creator per run id, one writer per chain."""

import multiprocessing
import os
import signal
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest

clickhouse_driver = pytest.importorskip("clickhouse_driver")

import mcbackend as mcb  # noqa: E402
from mcbackend.errors import ChainLockedError, RunExistsError  # noqa: E402
from mcbackend.meta import RunMeta, Variable  # noqa: E402

from .conftest import CLICKHOUSE_HOST as HOST  # noqa: E402

pytestmark = [
    pytest.mark.clickhouse,
    pytest.mark.filterwarnings("error::ResourceWarning"),
    pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning"),
]

SPAWN = multiprocessing.get_context("spawn")


def meta_of(rid: str) -> RunMeta:
    return RunMeta(rid=rid, variables=[Variable("a", "int64", []), Variable("who", "int64", [])])


def backend_of(database: str, **kwargs) -> mcb.ClickHouseBackend:
    return mcb.ClickHouseBackend(
        client_fn=lambda: clickhouse_driver.Client(HOST, database=database), **kwargs
    )


# ---- workers (module level: spawned processes import them) ---------------------------------


def create_runs(database, rids, worker, barrier, results):
    backend = backend_of(database)
    for rid in rids:
        barrier.wait()
        try:
            run = backend.init_run(meta_of(rid))
            chain = run.init_chain(0)
            chain.append({"a": 0, "who": worker})
            run.close()
            results.put((rid, worker, "created"))
        except RunExistsError:
            results.put((rid, worker, "exists"))
        except Exception as ex:
            results.put((rid, worker, f"error {type(ex).__name__}: {str(ex)[:300]}"))
    backend.close()


def append_to_chain(database, rids, worker, barrier, results, n):
    """Every worker tries its first append while the others do; the one that got the chain
    writes the rest only after all have tried (so it never finishes before another starts)."""
    for rid in rids:
        backend = backend_of(database, flush_every=7)
        (chain,) = backend.get_run(rid).get_chains()
        barrier.wait()
        try:
            chain.append({"a": 0, "who": worker})
            outcome = "wrote"
        except ChainLockedError:
            outcome = "locked"
        except Exception as ex:
            outcome = f"error {type(ex).__name__}: {str(ex)[:300]}"
        barrier.wait()
        try:
            if outcome == "wrote":
                for i in range(1, n):
                    chain.append({"a": i, "who": worker})
            chain.close()
        except Exception as ex:
            outcome = f"error {type(ex).__name__}: {str(ex)[:300]}"
        results.put((rid, worker, outcome))
        backend.close()


def run_workers(target, workers: int, trials: int, before=(), after=()) -> list[tuple]:
    """Run ``target(*before, worker, barrier, results, *after)`` in ``workers`` processes that
    meet at a barrier before each trial; their results, one per worker and trial."""
    barrier = SPAWN.Barrier(workers)
    results = SPAWN.Queue()
    procs = [
        SPAWN.Process(target=target, args=(*before, w, barrier, results, *after))
        for w in range(workers)
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


# ---- run ids ----------------------------------------------------------------------------------


def test_concurrent_creators_of_one_run_id_exactly_one_wins(clickhouse_database):
    database, trials, workers = clickhouse_database, 30, 3
    rids = [f"race_{uuid.uuid4().hex[:8]}_{t}" for t in range(trials)]
    out = run_workers(create_runs, workers, trials, before=(database, rids))
    errors = [o for o in out if o[2].startswith("error")]
    assert not errors, errors
    reader = backend_of(database)
    listed = list(reader.get_runs().rid)
    for rid in rids:
        outcomes = sorted(o[2] for o in out if o[0] == rid)
        assert outcomes == ["created"] + ["exists"] * (workers - 1), (rid, outcomes)
        (winner,) = [o[1] for o in out if o[0] == rid and o[2] == "created"]
        (chain,) = reader.get_run(rid).get_chains()
        assert chain.get_draws("who").tolist() == [winner]
        assert listed.count(rid) == 1
    reader.close()


# ---- one writer per chain -------------------------------------------------------------------


def new_chain(database: str, draws: int = 0) -> str:
    rid = f"chain_{uuid.uuid4().hex[:10]}"
    backend = backend_of(database)
    run = backend.init_run(meta_of(rid))
    chain = run.init_chain(0)
    for i in range(draws):
        chain.append({"a": i, "who": -1})
    run.close()
    backend.close()
    return rid


def test_concurrent_appenders_to_one_chain_exactly_one_writes(clickhouse_database):
    database, trials, workers, n = clickhouse_database, 15, 2, 30
    rids = [new_chain(database, draws=3) for _ in range(trials)]
    out = run_workers(append_to_chain, workers, trials, before=(database, rids), after=(n,))
    errors = [o for o in out if o[2].startswith("error")]
    assert not errors, errors
    reader = backend_of(database)
    for rid in rids:
        outcomes = sorted(o[2] for o in out if o[0] == rid)
        assert outcomes == ["locked", "wrote"], (rid, outcomes)
        (winner,) = [o[1] for o in out if o[0] == rid and o[2] == "wrote"]
        (chain,) = reader.get_run(rid).get_chains()
        assert len(chain) == 3 + n
        assert chain.get_draws("a").tolist() == [0, 1, 2, *range(n)]
        assert chain.get_draws("who").tolist() == [-1] * 3 + [winner] * n
        table = f"`{rid}_chain_0`"
        idx = reader.client.execute(f"SELECT _draw_idx FROM {table} ORDER BY _draw_idx")
        assert [i for (i,) in idx] == list(range(3 + n)), "draw indices are unique"
    reader.close()


WRITER = """
import sys, clickhouse_driver, mcbackend as mcb
connect = lambda: clickhouse_driver.Client({host!r}, database={database!r})
backend = mcb.ClickHouseBackend(client_fn=connect, flush_every=2, lease_seconds=4)
(chain,) = backend.get_run({rid!r}).get_chains()
for i in range(5):
    chain.append({{"a": i, "who": 1}})
chain.flush()
print("holding", flush=True)
if sys.stdin.readline().strip() == "close":
    chain.close()
    print("closed", flush=True)
sys.stdin.readline()
"""


def start_writer(database: str, rid: str) -> subprocess.Popen:
    code = WRITER.format(host=HOST, database=database, rid=rid)
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "holding"
    return proc


def test_second_writer_refused_until_the_first_closes(clickhouse_database):
    database = clickhouse_database
    rid = new_chain(database)
    writer = start_writer(database, rid)  # another process appends and holds the chain
    backend = backend_of(database)
    (chain,) = backend.get_run(rid).get_chains()
    assert len(chain) == 5  # reading needs no lease
    with pytest.raises(ChainLockedError, match="another writer"):
        chain.append({"a": 99, "who": 2})
    with pytest.raises(ChainLockedError):
        chain.append_many({"a": [99], "who": [2]})
    writer.stdin.write("close\n")
    writer.stdin.flush()
    assert writer.stdout.readline().strip() == "closed"
    chain.append({"a": 5, "who": 2})  # the first writer closed: this handle may write now
    chain.close()
    writer.communicate("\n", timeout=30)
    assert chain.get_draws("a").tolist() == list(range(6))
    assert chain.get_draws("who").tolist() == [1] * 5 + [2]
    backend.close()


def test_crashed_writer_lease_expires(clickhouse_database):
    database = clickhouse_database
    rid = new_chain(database)
    writer = start_writer(database, rid)
    os.kill(writer.pid, signal.SIGKILL)
    writer.communicate(timeout=30)  # also closes its pipes
    # The writer renewed its lease (every lease_seconds / 4) at its last flush.
    backend = backend_of(database, lease_seconds=6)
    (chain,) = backend.get_run(rid).get_chains()
    with pytest.raises(ChainLockedError):
        chain.append({"a": 5, "who": 2})
    time.sleep(7.5)
    chain.append({"a": 5, "who": 2})  # the crashed writer's lease expired
    chain.close()
    assert chain.get_draws("a").tolist() == list(range(6))
    backend.close()


@pytest.mark.parametrize("lease_seconds", [2, 4])
def test_writer_that_lost_its_lease_refuses_to_insert(clickhouse_database, lease_seconds):
    """Also where inserts soon after a renewal skip the lease check (``lease_seconds=4``: for
    1 s), an insert after a longer idle time checks it."""
    database = clickhouse_database
    rid = new_chain(database)
    first = backend_of(database, lease_seconds=lease_seconds, flush_every=100)
    (slow,) = first.get_run(rid).get_chains()
    slow.append({"a": 0, "who": 1})
    slow.flush()
    slow.append({"a": 1, "who": 1})  # pending, then idle beyond the lease
    time.sleep(lease_seconds + 1.5)
    second = backend_of(database, lease_seconds=lease_seconds)
    (fast,) = second.get_run(rid).get_chains()
    fast.append({"a": 1, "who": 2})
    fast.close()
    with pytest.raises(ChainLockedError, match="lost its lease"):
        slow.flush()
    assert np.array_equal(fast.get_draws("who"), [1, 2])
    first.close()
    second.close()
