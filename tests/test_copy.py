"""copy_run between backends reproduces every draw and stat exactly."""

import uuid

import numpy as np
import pytest

import mcbackend as mcb
from mcbackend.meta import Variable
from mcbackend.testing import NUMERIC_DTYPES, assert_values_equal, make_meta, random_draws

VARIABLES = [Variable(f"v_{dt}", dt, [2]) for dt in NUMERIC_DTYPES] + [
    Variable("word", "str", []),
    Variable("ragged", "float64", [-1]),
]
STATS = [Variable("in_warmup", "bool", []), Variable("energy", "float32", [])]


def filled(backend, n=37):
    meta = make_meta(VARIABLES, STATS)
    run = backend.init_run(meta)
    written = []
    for c in range(2):
        chain = run.init_chain(c)
        draws, stats = random_draws(VARIABLES, n, seed=c), random_draws(STATS, n, seed=10 + c)
        for d, s in zip(draws, stats):
            chain.append(d, s)
        written.append((draws, stats))
    run.close()
    return run, written


def assert_same(run, written):
    assert [c.cmeta.chain_number for c in run.get_chains()] == [0, 1]
    for chain, (draws, stats) in zip(run.get_chains(), written):
        for var in VARIABLES:
            assert_values_equal(chain.get_draws(var.name), [d[var.name] for d in draws], var)
        for var in STATS:
            assert_values_equal(chain.get_stats(var.name), [s[var.name] for s in stats], var)


def make(kind, request, tmp_path):
    if kind == "numpy":
        return mcb.NumPyBackend()
    if kind == "zarr":
        return mcb.ZarrBackend(str(tmp_path / f"zarr-{uuid.uuid4().hex[:6]}"))
    if kind == "parquet":
        return mcb.ParquetBackend(str(tmp_path / f"pq-{uuid.uuid4().hex[:6]}"))
    if kind == "zarr-s3":
        bucket, options = (
            request.getfixturevalue("s3_bucket"),
            request.getfixturevalue("s3_options"),
        )
        return mcb.ZarrBackend(f"{bucket}/runs", options)
    if kind == "clickhouse":
        import clickhouse_driver

        from .conftest import CLICKHOUSE_HOST

        database = request.getfixturevalue("clickhouse_database")
        client = clickhouse_driver.Client(CLICKHOUSE_HOST, database=database)
        # copy_run keeps the run id, so each ClickHouse end gets a database of its own
        fresh = f"{database}_{uuid.uuid4().hex[:6]}"
        client.execute(f"CREATE DATABASE {fresh}")
        request.addfinalizer(lambda: client.execute(f"DROP DATABASE {fresh}"))
        return mcb.ClickHouseBackend(clickhouse_driver.Client(CLICKHOUSE_HOST, database=fresh))
    raise ValueError(kind)


@pytest.mark.parametrize(
    ("source", "destination"),
    [
        ("numpy", "zarr"),
        ("zarr", "parquet"),
        ("parquet", "zarr"),
        ("clickhouse", "zarr-s3"),
        ("zarr", "clickhouse"),
        ("parquet", "numpy"),
    ],
)
def test_copy_run(source, destination, request, tmp_path):
    run, written = filled(make(source, request, tmp_path))
    copied = mcb.copy_run(run, make(destination, request, tmp_path), batch=10)
    assert bytes(copied.meta) == bytes(run.meta)
    assert_same(copied, written)


def test_copy_round_trip_through_clickhouse(request, tmp_path):
    run, written = filled(mcb.ZarrBackend(str(tmp_path / "a")))
    there = mcb.copy_run(run, make("clickhouse", request, tmp_path))
    back = mcb.copy_run(there, mcb.ParquetBackend(str(tmp_path / "b")))
    assert_same(mcb.open_run(str(tmp_path / "b" / run.meta.rid)), written)
    assert back.meta.rid == run.meta.rid


def test_copy_refuses_existing_run_and_keeps_it(tmp_path):
    run, written = filled(mcb.NumPyBackend())
    dest = mcb.ZarrBackend(str(tmp_path))
    mcb.copy_run(run, dest)
    with pytest.raises(ValueError, match="already exists"):
        mcb.copy_run(run, dest)
    assert_same(dest.get_run(run.meta.rid), written)
    assert np.all([len(c) == 37 for c in dest.get_run(run.meta.rid).get_chains()])


def test_copy_appends_in_batches(monkeypatch):
    """copy_run stores batches with append_many, never draw by draw."""
    from mcbackend.backends.numpy import NumPyChain

    run, written = filled(mcb.NumPyBackend(), n=25)
    batches = []
    original = NumPyChain._append_many

    def counting(self, draws, stats, n):
        batches.append(n)
        return original(self, draws, stats, n)

    def refuse(self, draw, stats):
        raise AssertionError("copy_run appended a single draw")

    monkeypatch.setattr(NumPyChain, "_append_many", counting)
    monkeypatch.setattr(NumPyChain, "_append", refuse)
    copied = mcb.copy_run(run, mcb.NumPyBackend(), batch=10)
    assert batches == [10, 10, 5, 10, 10, 5]
    assert_same(copied, written)
