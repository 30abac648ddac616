import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")

import mcbackend as mcb  # noqa: E402
from mcbackend.meta import Variable  # noqa: E402
from mcbackend.testing import BackendConformance, make_meta, random_draws  # noqa: E402


class TestParquetLocal(BackendConformance):
    many_draws = 300

    @pytest.fixture
    def backend(self, tmp_path):
        return mcb.ParquetBackend(str(tmp_path / "runs"), flush_every=8, flush_seconds=None)

    def reopen(self, backend, run):
        return mcb.ParquetBackend(str(backend.location.path)).get_run(run.meta.rid)


class TestParquetCompacted(TestParquetLocal):
    """Reads from the compacted file written when a chain closes."""

    def finish(self, run):
        run.close()


class TestParquetMemoryUnflushed(BackendConformance):
    many_draws = 300

    @pytest.fixture
    def backend(self):
        url = f"memory://parquet-{np.random.randint(10**9)}"
        return mcb.ParquetBackend(url, flush_every=5, flush_seconds=None)

    def finish(self, run):
        pass


class TestParquetV1Local(TestParquetLocal):
    """Layout version 1 stays writable (``format_version=1``)."""

    @pytest.fixture
    def backend(self, tmp_path):
        return mcb.ParquetBackend(
            str(tmp_path / "runs"), flush_every=8, flush_seconds=None, format_version=1
        )


class TestParquetV1Compacted(TestParquetV1Local):
    def finish(self, run):
        run.close()


@pytest.mark.s3
class TestParquetS3(BackendConformance):
    many_draws = 100

    @pytest.fixture
    def backend(self, s3_bucket, s3_options):
        return mcb.ParquetBackend(
            f"{s3_bucket}/runs", s3_options, flush_every=16, flush_seconds=None
        )

    def reopen(self, backend, run):
        url = f"{backend.location.url()}/{run.meta.rid}"
        return mcb.open_run(url, backend.location.storage_options)


def _sample_run(tmp_path, close=True):
    """A v1 run (the tests below read v1's ``chain_<n>`` files directly)."""
    backend = mcb.ParquetBackend(str(tmp_path), flush_every=4, format_version=1)
    meta = make_meta(
        [Variable("mu", "float64", []), Variable("theta", "float32", [2, 3], dims=["a", "b"])],
        [Variable("in_warmup", "bool", [])],
    )
    run = backend.init_run(meta)
    draws = random_draws(meta.variables, 10)
    chain = run.init_chain(0)
    for d in draws:
        chain.append(d, {"in_warmup": False})
    if close:
        run.close()
    else:
        run.flush()
    return meta, draws


@pytest.mark.parametrize("close", [True, False])
def test_pyarrow_dataset_reads_chain_without_mcbackend(tmp_path, close):
    import pyarrow.dataset as ds

    meta, draws = _sample_run(tmp_path, close)
    table = ds.dataset(str(tmp_path / meta.rid / "chain_0"), format="parquet").to_table()
    table = table.sort_by("draw")
    assert table.column("draw").to_pylist() == list(range(10))
    np.testing.assert_array_equal(table.column("mu").to_numpy(), [d["mu"] for d in draws])
    theta = np.array(table.column("theta").to_pylist(), dtype="float32")
    np.testing.assert_array_equal(theta, [d["theta"] for d in draws])
    assert b"mcbackend" in table.schema.metadata


def test_duckdb_reads_chain_without_mcbackend(tmp_path):
    duckdb = pytest.importorskip("duckdb")
    meta, draws = _sample_run(tmp_path)
    path = str(tmp_path / meta.rid / "chain_0" / "*.parquet")
    rows = duckdb.sql(
        f"SELECT draw, mu, theta FROM read_parquet('{path}') ORDER BY draw"
    ).fetchall()
    assert [r[0] for r in rows] == list(range(10))
    np.testing.assert_allclose([r[1] for r in rows], [d["mu"] for d in draws])
    np.testing.assert_allclose(
        np.array([r[2] for r in rows], dtype="float32"), [d["theta"] for d in draws]
    )


def test_pandas_reads_compacted_chain(tmp_path):
    import pandas as pd

    meta, draws = _sample_run(tmp_path)
    files = list((tmp_path / meta.rid / "chain_0").glob("*.parquet"))
    assert len(files) == 1, "closing compacts the chain into one file"
    df = pd.read_parquet(files[0])
    np.testing.assert_array_equal(df["mu"], [d["mu"] for d in draws])
    import pyarrow.parquet as pq

    assert pq.ParquetFile(files[0]).num_row_groups == 3  # one per flush: 4 + 4 + 2 draws


def test_reading_one_variable_reads_only_its_column(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    meta, _ = _sample_run(tmp_path)
    chain = mcb.open_run(str(tmp_path / meta.rid)).get_chains()[0]
    requested = []
    original = pq.ParquetFile.read_row_groups

    def spy(self, row_groups, columns=None, **kwargs):
        requested.append(columns)
        return original(self, row_groups, columns=columns, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_groups", spy)
    chain.get_draws("mu", slice(5, 7))
    assert requested == [["mu"]]


def test_large_files_are_not_compacted(tmp_path, monkeypatch):
    from mcbackend.backends.parquet import v1 as parquet

    monkeypatch.setattr(parquet, "COMPACT_BELOW", 1)  # every file counts as large
    meta, draws = _sample_run(tmp_path)
    files = sorted(p.name for p in (tmp_path / meta.rid / "chain_0").glob("*.parquet"))
    assert files == [parquet.part_name(0, 4), parquet.part_name(4, 8), parquet.part_name(8, 10)]
    chain = mcb.open_run(str(tmp_path / meta.rid)).get_chains()[0]
    np.testing.assert_array_equal(chain.get_draws("mu"), [d["mu"] for d in draws])


def test_count_flushes_stay_aligned_after_other_flushes(tmp_path):
    """A count flush happens when the chain reaches a multiple of flush_every, whatever flushed
    before (an explicit flush, a reopened chain): each flush is one file, named by its draws."""
    meta = mcb.meta.RunMeta(
        rid="aligned", variables=[Variable("x", "float32", [])], sample_stats=[]
    )
    options = dict(flush_every=4, flush_seconds=None, background_flush=False, compact=False)
    chain = mcb.ParquetBackend(str(tmp_path), **options).init_run(meta).init_chain(0)
    for i in range(2):
        chain.append({"x": np.float32(i)})
    chain.flush()  # draws 0-1
    for i in range(2, 10):
        chain.append({"x": np.float32(i)})  # 2-3 (count), 4-7 (count), 8-9 buffered
    chain.close()
    (chain,) = mcb.ParquetBackend(str(tmp_path), **options).get_run("aligned").get_chains()
    for i in range(10, 13):
        chain.append({"x": np.float32(i)})  # resumed: 10-11 (count), 12 buffered
    chain.flush()
    folder = tmp_path / "aligned" / "chain=0"
    parts = sorted(p.name for p in folder.iterdir() if p.name.startswith("part-"))
    bounds = [tuple(int(b) for b in p[5:-8].split("-")) for p in parts]
    assert bounds == [(0, 2), (2, 4), (4, 8), (8, 10), (10, 12), (12, 13)]
    np.testing.assert_array_equal(chain.get_draws("x"), np.arange(13, dtype="float32"))
