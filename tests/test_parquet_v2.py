"""Parquet layout v2: plain readers (pandas, pyarrow, DuckDB, polars) without mcbackend, local
and on moto S3; one process per chain; readers during compaction; damaged runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")

import mcbackend as mcb  # noqa: E402
from mcbackend.errors import CorruptRunError  # noqa: E402
from mcbackend.meta import Variable  # noqa: E402
from mcbackend.testing import make_meta  # noqa: E402

from .parquet_worker import N_WARMUP, draw, meta  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHAINS, DRAWS = 3, 20


def write_run(root: str, rid: str, options=None, *, close: bool = True, flush_every: int = 6):
    backend = mcb.ParquetBackend(root, options, flush_every=flush_every, flush_seconds=None)
    run = backend.init_run(meta(rid))
    for c in range(CHAINS):
        chain = run.init_chain(c)
        for i in range(DRAWS):
            chain.append(*draw(c, i))
    if close:
        run.close()
    else:
        run.flush()
    return run


def run_without_mcbackend(code: str) -> dict:
    """Run ``code`` in a fresh interpreter where importing mcbackend fails; its printed JSON."""
    blocker = "import sys\nsys.modules['mcbackend'] = None\n"
    proc = subprocess.run(
        [sys.executable, "-c", blocker + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd="/",
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


PLAIN_READERS = """
import json
import duckdb, pandas as pd, polars as pl, pyarrow.dataset as ds
run, root, options = {run!r}, {root!r}, {options!r}
out = {{}}
fs = None
if options:
    import s3fs
    fs = s3fs.S3FileSystem(**options)
df = pd.read_parquet(run, storage_options=options or None)
out["pandas"] = [len(df), sorted(int(c) for c in df["chain"].unique()), int(df["draw"].max()),
                 int(df["warmup"].sum()), [float(v) for v in df.sort_values(["chain", "draw"])["mu"]]]
strip = (lambda u: u.split("://", 1)[-1]) if fs else (lambda u: u)
t = ds.dataset(strip(run), partitioning="hive", filesystem=fs).to_table()
z = t.sort_by([("chain", "ascending"), ("draw", "ascending")]).column("z").combine_chunks()
out["pyarrow"] = [t.num_rows, str(t.schema.field("z").type), z.to_numpy_ndarray()[-1].tolist()]
t = ds.dataset(strip(root), partitioning="hive", filesystem=fs).to_table(columns=["run_id", "chain"])
out["pyarrow_root"] = sorted(set(map(str, t.column("run_id").to_pylist())))
con = duckdb.connect()
prefix = ""
if fs:
    con.register_filesystem(fs)
    prefix = "s3://"
glob = prefix + strip(run) + "/**/*.parquet"
out["duckdb"] = con.sql(
    f"SELECT chain, count(*), min(draw), max(draw), count(*) FILTER (WHERE warmup) "
    f"FROM read_parquet('{{glob}}', hive_partitioning=true) GROUP BY chain ORDER BY chain"
).fetchall()
out["duckdb_z"] = con.sql(
    f"SELECT z FROM read_parquet('{{glob}}', hive_partitioning=true) "
    "WHERE chain = 0 AND draw = 1"
).fetchall()[0][0]
out["duckdb_root"] = con.sql(
    f"SELECT run_id, count(*) FROM read_parquet('{{prefix + strip(root)}}/*/*/*.parquet', "
    "hive_partitioning=true) GROUP BY run_id ORDER BY run_id"
).fetchall()
pl_options = None
if options:
    pl_options = {{"aws_endpoint_url": options["endpoint_url"], "aws_access_key_id": "testing",
                   "aws_secret_access_key": "testing", "aws_region": "us-east-1",
                   "aws_allow_http": "true"}}
lf = pl.scan_parquet(run + "/**/*.parquet", hive_partitioning=True, storage_options=pl_options)
out["polars"] = lf.group_by("chain").agg(pl.len(), pl.col("draw").max()).sort("chain").collect().rows()
print(json.dumps(out, default=str))
"""


def check_plain_readers(root: str, options: dict | None) -> None:
    write_run(root, "runA", options)
    write_run(root, "runB", options, close=False)  # still "sampling": parts, no compaction
    run = f"{root}/runA"
    out = run_without_mcbackend(PLAIN_READERS.format(run=run, root=root, options=options))
    n = CHAINS * DRAWS
    expected_mu = [float(1000 * c + i) for c in range(CHAINS) for i in range(DRAWS)]
    assert out["pandas"] == [n, list(range(CHAINS)), DRAWS - 1, CHAINS * N_WARMUP, expected_mu]
    rows, ztype, last_z = out["pyarrow"]
    assert rows == n and "fixed_shape_tensor" in ztype
    np.testing.assert_array_equal(last_z, draw(CHAINS - 1, DRAWS - 1)[0]["z"])
    assert out["pyarrow_root"] == ["runA", "runB"]
    assert out["duckdb"] == [[c, DRAWS, 0, DRAWS - 1, N_WARMUP] for c in range(CHAINS)]
    # DuckDB 2.0.1 gives the flat values (FLOAT[]), C order
    np.testing.assert_array_equal(out["duckdb_z"], draw(0, 1)[0]["z"].reshape(-1))
    assert out["duckdb_root"] == [["runA", n], ["runB", n]]
    assert out["polars"] == [[c, DRAWS, DRAWS - 1] for c in range(CHAINS)]


def test_plain_readers_local(tmp_path):
    check_plain_readers(str(tmp_path), None)


@pytest.mark.s3
def test_plain_readers_s3(s3_bucket, s3_options):
    check_plain_readers(f"{s3_bucket}/runs", s3_options)


def test_layout_and_metadata(tmp_path):
    write_run(str(tmp_path), "r1")
    names = sorted(p.name for p in (tmp_path / "r1").iterdir())
    expected = ["_claim.json", "_mcbackend", "_mcbackend.json", "_meta.pb"]
    assert names == expected + [f"chain={c}" for c in range(CHAINS)]
    leases = tmp_path / "r1" / "_mcbackend" / "leases"  # each chain's released writer lease
    assert sorted(p.name for p in leases.iterdir()) == [str(c) for c in range(CHAINS)]
    assert [p.name for p in (leases / "0").iterdir()] == [f"{0:012d}.json"]
    assert json.loads((leases / "0" / f"{0:012d}.json").read_text())["released"] is True
    files = sorted(p.name for p in (tmp_path / "r1" / "chain=0").iterdir())
    assert files == ["_chain.json", f"data-{0:012d}-{DRAWS:012d}.parquet"]
    assert json.loads((tmp_path / "r1" / "_mcbackend.json").read_text())["format_version"] == 2
    import pyarrow.parquet as pq

    schema = pq.read_schema(tmp_path / "r1" / "chain=1" / files[1])
    assert schema.names[:3] == ["run_id", "draw", "warmup"] and "chain" not in schema.names
    info = json.loads(schema.metadata[b"mcbackend"])
    assert info["format_version"] == 2 and info["chain"] == 1
    assert info["warmup_stat"] == "stats/in_warmup"
    assert info["coords"] == {"a": ["x", "y", "z"]}
    assert info["dims"] == {"z": ["a", "b"]}
    assert schema.field("z").type.dim_names == ["a", "b"]
    assert [c["column"] for c in info["columns"]] == [
        "mu",
        "z",
        "label",
        "stats/in_warmup",
        "stats/lp",
    ]


def test_reserved_names_are_refused(tmp_path):
    backend = mcb.ParquetBackend(str(tmp_path))
    for bad in ("draw", "chain", "run_id", "warmup"):
        with pytest.raises(ValueError, match="reserved"):
            backend.init_run(make_meta([Variable(bad, "float64", [])]))
    v1 = mcb.ParquetBackend(str(tmp_path), format_version=1)
    v1.init_run(make_meta([Variable("chain", "float64", [])]))  # fine in v1


def test_warmup_column_is_the_leading_block(tmp_path):
    backend = mcb.ParquetBackend(str(tmp_path), flush_every=2, flush_seconds=None)
    run = backend.init_run(
        make_meta([Variable("a", "float64", [])], [Variable("tune", "bool", [])])
    )
    chain = run.init_chain(0)
    for t in [True, True, True, False, False, True, False]:  # a late True is not warm-up
        chain.append({"a": 0.0}, {"tune": t})
    run.close()  # one writer per chain: the first handle gives the chain up
    # resuming from another handle continues the decision from the stored files
    chain = mcb.open_run(str(tmp_path / run.meta.rid)).get_chains()[0]
    chain.append({"a": 0.0}, {"tune": True})
    chain.close()
    import pandas as pd

    df = pd.read_parquet(tmp_path / run.meta.rid).sort_values("draw")
    assert df["warmup"].tolist() == [True] * 3 + [False] * 5


@pytest.mark.parametrize("s3", [False, pytest.param(True, marks=pytest.mark.s3)])
def test_one_process_per_chain(tmp_path, request, s3):
    """Every chain lands, though each process closes its run handle while others write."""
    if s3:
        options = request.getfixturevalue("s3_options")
        root = request.getfixturevalue("s3_bucket") + "/runs"
    else:
        options, root = {}, str(tmp_path)
    mcb.ParquetBackend(root, options).init_run(meta("multi"))
    url = f"{root}/multi"
    n_chains, n_draws = 4, 60
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.parquet_worker",
                "write",
                url,
                str(c),
                str(n_draws + 10 * c),
                "5",
                json.dumps(options),
            ],
            cwd=REPO,
            stderr=subprocess.PIPE,
            text=True,
        )
        for c in range(n_chains)
    ]
    for proc in procs:
        assert proc.wait(300) == 0, proc.stderr.read()
    run = mcb.open_run(url, options)
    chains = run.get_chains()
    assert [c.cmeta.chain_number for c in chains] == list(range(n_chains))
    for c in chains:
        n = n_draws + 10 * c.cmeta.chain_number
        assert len(c) == n
        np.testing.assert_array_equal(c.get_draws("mu"), 1000 * c.cmeta.chain_number + np.arange(n))
        files = [name for name in c._dir.listdir() if name.endswith(".parquet")]
        assert files == [f"data-{0:012d}-{n:012d}.parquet"]  # compacted by its own writer
    assert run.verify() == []


def test_close_compacts_only_chains_this_handle_wrote(tmp_path):
    backend = mcb.ParquetBackend(str(tmp_path), flush_every=4, flush_seconds=None)
    run = backend.init_run(meta("mine"))
    other = run.init_chain(1)
    for i in range(12):
        other.append(*draw(1, i))
    other.flush()  # another process's chain, still being written
    reader = mcb.open_run(str(tmp_path / "mine"), flush_every=4, flush_seconds=None)
    mine = reader.init_chain(0)
    for i in range(8):
        mine.append(*draw(0, i))
    reader.close()
    assert sorted(p.name for p in (tmp_path / "mine" / "chain=1").glob("*.parquet")) == [
        f"part-{a:012d}-{a + 4:012d}.parquet" for a in (0, 4, 8)
    ]
    assert [p.name for p in (tmp_path / "mine" / "chain=0").glob("*.parquet")] == [
        f"data-{0:012d}-{8:012d}.parquet"
    ]
    for i in range(12, 16):
        other.append(*draw(1, i))
    run.close()
    (chain1,) = [
        c for c in mcb.open_run(str(tmp_path / "mine")).get_chains() if c.cmeta.chain_number == 1
    ]
    np.testing.assert_array_equal(chain1.get_draws("mu"), 1000 + np.arange(16))


@pytest.mark.parametrize("s3", [False, pytest.param(True, marks=pytest.mark.s3)])
def test_readers_never_fail_while_chains_are_compacted(tmp_path, request, s3):
    """A reader process loops over whole-run reads while this process compacts chain after
    chain (each compaction writes the covering file, then deletes 20 parts)."""
    if s3:
        options = request.getfixturevalue("s3_options")
        root = request.getfixturevalue("s3_bucket") + "/runs"
    else:
        options, root = {}, str(tmp_path)
    backend = mcb.ParquetBackend(root, options, flush_every=2, flush_seconds=None)
    run = backend.init_run(meta("busy"))
    chains = [run.init_chain(c) for c in range(6)]
    for chain in chains:
        for i in range(40):
            chain.append(*draw(chain.cmeta.chain_number, i))
        chain.flush()
    stop = tmp_path / "stop"
    reader = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.parquet_worker",
            "read",
            f"{root}/busy",
            str(stop),
            "5000",
            json.dumps(options),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    progress = tmp_path / "stop.reads"

    def reads() -> int:
        return int(progress.read_text() or 0) if progress.exists() else 0

    def wait_for_reads(n: int) -> None:
        """Pace by the reader, not by the clock: on a busy machine it may start late."""
        deadline = time.monotonic() + 120
        while reads() < n and reader.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)

    try:
        wait_for_reads(1)  # the reader is reading
        for chain in chains:
            chain.close()
            wait_for_reads(reads() + 1)  # a read between each compaction and the next
    finally:
        stop.touch()
        out, err = reader.communicate(timeout=300)
    result = json.loads(out.strip().splitlines()[-1])
    assert result["reads"] >= 3, err  # whole-run reads overlapping the compactions
    assert result["failures"] == []


def _parts(folder):
    return sorted(p for p in folder.glob("*.parquet"))


def test_missing_middle_part_is_reported_and_raises(tmp_path):
    run = write_run(str(tmp_path), "gap", close=False, flush_every=5)
    folder = tmp_path / "gap" / "chain=1"
    _parts(folder)[1].unlink()  # draws 5..9
    assert any("missing" in p for p in run.verify())
    chain = next(
        c for c in mcb.open_run(str(tmp_path / "gap")).get_chains() if c.cmeta.chain_number == 1
    )
    with pytest.raises(CorruptRunError, match="missing"):
        chain.get_draws("mu")
    assert "missing" in subprocess_verify(str(tmp_path / "gap"))


def subprocess_verify(url: str) -> str:
    proc = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "mcbackend"), "verify", url],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 1
    return proc.stdout + proc.stderr


@pytest.mark.parametrize("damage", ["swapped", "fewer_rows"])
def test_part_disagreeing_with_its_name_is_reported_and_raises(tmp_path, damage):
    run = write_run(str(tmp_path), "bad", close=False, flush_every=5)
    first, second = _parts(tmp_path / "bad" / "chain=0")[:2]
    if damage == "swapped":  # right name, other draws' content
        first.write_bytes(second.read_bytes())
    else:  # fewer rows than the name says
        import pyarrow.parquet as pq

        table = pq.read_table(first)
        pq.write_table(table.slice(0, 3), first)
    problems = run.verify()
    assert any(first.name in p for p in problems), problems
    chain = mcb.open_run(str(tmp_path / "bad")).get_chains()[0]
    with pytest.raises(CorruptRunError, match=first.name):
        chain.get_draws("mu")


def test_version_dispatch(tmp_path):
    """The marker's format_version picks the layout; newer ones are refused clearly."""
    from mcbackend.errors import FormatVersionError

    v1 = mcb.ParquetBackend(str(tmp_path), format_version=1).init_run(meta("old"))
    v2 = mcb.ParquetBackend(str(tmp_path)).init_run(meta("new"))
    assert type(mcb.open_run(str(tmp_path / "old"))) is type(v1)
    assert type(mcb.open_run(str(tmp_path / "new"))) is type(v2)
    assert sorted(mcb.ParquetBackend(str(tmp_path)).get_runs()["rid"]) == ["new", "old"]
    marker = tmp_path / "new" / "_mcbackend.json"
    marker.write_text(marker.read_text().replace('"format_version": 2', '"format_version": 3'))
    with pytest.raises(FormatVersionError, match="v3"):
        mcb.open_run(str(tmp_path / "new"))
    with pytest.raises(ValueError, match="format_version=3"):
        mcb.ParquetBackend(str(tmp_path), format_version=3)
