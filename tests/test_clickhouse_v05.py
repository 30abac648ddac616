"""Databases written by published mcbackend 0.5.x stay readable by ClickHouseBackend.

``V05Writer`` issues exactly the statements of ``mcbackend/backends/clickhouse.py`` at tag
v0.5.3 (identical in 0.5.0-0.5.3 but for error classes): the same CREATE TABLE text, the
same INSERT queries with the same row dicts. The one substitution: servers without
``DateTime64`` (before 20.1) or ``Bool`` (before 21.12), such as 18.16, get ``DateTime`` and
``UInt8`` in their place (0.5.x itself could not create its tables there), and its bool
values are passed to ``UInt8`` as integers.
"""

import base64
import re
import uuid
from datetime import UTC, datetime

import numpy as np
import pytest

clickhouse_driver = pytest.importorskip("clickhouse_driver")

import mcbackend as mcb  # noqa: E402
from mcbackend.errors import ReadOnlyError, RunNotFoundError  # noqa: E402
from mcbackend.meta import ChainMeta, Coordinate, RunMeta, Variable  # noqa: E402
from mcbackend.npproto.utils import ndarray_from_numpy  # noqa: E402

from .conftest import CLICKHOUSE_HOST as HOST  # noqa: E402

pytestmark = [
    pytest.mark.clickhouse,
    pytest.mark.filterwarnings("error::ResourceWarning"),
    pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning"),
]

# ---- the published writer (mcbackend 0.5.3), statement for statement ----------------------

V05_DTYPES = {
    "uint8": "UInt8", "uint16": "UInt16", "uint32": "UInt32", "uint64": "UInt64",
    "int8": "Int8", "int16": "Int16", "int32": "Int32", "int64": "Int64",
    "float32": "Float32", "float64": "Float64", "bool": "Bool", "str": "String",
}  # fmt: skip

V05_RUNS_TABLE = """
        CREATE TABLE IF NOT EXISTS runs (
            created_at DateTime64(9, "UTC"),
            rid String,
            proto String
        )
        ENGINE MergeTree()
        PRIMARY KEY (rid)
        PARTITION BY (created_at)
        ORDER BY (rid);
    """


class V05Writer:
    """What ``ClickHouseBackend``/``ClickHouseRun``/``ClickHouseChain`` of 0.5.3 execute."""

    def __init__(self, client):
        self.client = client
        version = tuple(int(p) for p in client.execute("SELECT version()")[0][0].split(".")[:2])
        self.has_datetime64, self.has_bool = version >= (20, 1), version >= (21, 12)
        client.execute(self.sql(V05_RUNS_TABLE))  # create_runs_table

    def sql(self, query: str) -> str:
        if not self.has_datetime64:
            query = query.replace('DateTime64(9, "UTC")', "DateTime")
        if not self.has_bool:
            query = re.sub(r"\bBool\b", "UInt8", query)
        return query

    def init_run(self, meta: RunMeta) -> None:
        existing = self.client.execute(f"SELECT rid, created_at FROM runs WHERE rid='{meta.rid}';")
        assert not existing
        created_at = datetime.now().astimezone(UTC)
        query = "INSERT INTO runs (created_at, rid, proto) VALUES"
        params = {
            "created_at": created_at,
            "rid": meta.rid,
            "proto": base64.encodebytes(bytes(meta)).decode("ascii"),
        }
        self.client.execute(query, [params])

    def create_chain_table(self, meta: ChainMeta, rmeta: RunMeta) -> str:
        cid = f"{meta.rid}_chain_{meta.chain_number}"
        assert not self.client.execute(f"SHOW TABLES LIKE '{cid}';")
        columns = [self.column_spec_for(var) for var in rmeta.variables]
        columns += [self.column_spec_for(var, is_stat=True) for var in rmeta.sample_stats]
        cols = ",\n            ".join(columns)
        query = f"""
        CREATE TABLE {cid}
        (
            `_draw_idx` UInt64,
            {cols}
        )
        ENGINE TinyLog();
    """
        self.client.execute(self.sql(query))
        return cid

    @staticmethod
    def column_spec_for(var: Variable, is_stat: bool = False) -> str:
        cdt = V05_DTYPES[var.dtype]
        for _ in range(len(var.shape)):
            cdt = f"Array({cdt})"
        if not is_stat:
            return f"`{var.name}` {cdt}"
        return f"`__stat_{var.name}` {cdt}"

    def append_all(self, cid: str, draws: list[dict], stats: list[dict]) -> None:
        """``ClickHouseChain.append`` for every draw, then ``_commit`` (flush_every=500)."""
        queue = []
        for draw_idx, (draw, stat) in enumerate(zip(draws, stats)):
            params = {**draw, **{f"__stat_{k}": v for k, v in stat.items()}}
            names = "`,`".join(params.keys())
            insert_query = f"INSERT INTO {cid} (`_draw_idx`,`{names}`) VALUES"
            str_cols = {k for k, v in params.items() if "str" in np.asarray(v).dtype.name}
            row = {"_draw_idx": draw_idx, **params}
            for col in str_cols:
                row[col] = params[col].tolist()
            if not self.has_bool:  # the UInt8 stand-in takes integers
                row = {
                    k: np.asarray(v).astype("uint8") if np.asarray(v).dtype == bool else v
                    for k, v in row.items()
                }
            queue.append(row)
        self.client.execute(insert_query, queue)


# ---- fixtures -----------------------------------------------------------------------------


@pytest.fixture
def fresh_database(clickhouse_database):
    """A database of its own (the session database holds other tests' tables)."""
    admin = clickhouse_driver.Client(HOST)
    name = f"mcb_v05_{uuid.uuid4().hex[:10]}"
    admin.execute(f"CREATE DATABASE {name}")
    yield name
    admin.execute(f"DROP DATABASE {name}")
    admin.disconnect()


def tables(client) -> set[str]:
    return {t for (t,) in client.execute("SHOW TABLES")}


def v05_meta(rid: str) -> RunMeta:
    return RunMeta(
        rid=rid,
        variables=[
            Variable("mu", "float64", []),
            Variable("theta", "float32", [3], dims=["school"]),
            Variable("M", "int64", [2, 3]),
            Variable("flags", "bool", [2]),
            Variable("label", "str", []),
            Variable("dyn", "float64", [0]),  # 0.5.x marked dynamic lengths with 0
        ],
        sample_stats=[
            Variable("tune", "bool", []),
            Variable("accept", "float64", []),
            Variable("warning", "str", []),
        ],
        coordinates=[Coordinate("school", ndarray_from_numpy(np.array(["a", "b", "c"])))],
    )


def v05_draws(n: int) -> tuple[list[dict], list[dict]]:
    rng = np.random.default_rng(42)
    draws = [
        {
            "mu": rng.normal(),
            "theta": rng.normal(size=3).astype("float32"),
            "M": rng.integers(-9, 9, size=(2, 3)),
            "flags": rng.random(2) > 0.5,
            "label": np.array(f"draw {i}"),
            "dyn": rng.normal(size=i % 3),
        }
        for i in range(n)
    ]
    stats = [
        {"tune": np.array(i < 4), "accept": rng.random(), "warning": np.array("" if i % 2 else "w")}
        for i in range(n)
    ]
    return draws, stats


def write_v05_run(client, rid: str, n: int = 10, chains: int = 2):
    writer = V05Writer(client)
    meta = v05_meta(rid)
    writer.init_run(meta)
    written = []
    for c in range(chains):
        cid = writer.create_chain_table(ChainMeta(rid, c), meta)
        draws, stats = v05_draws(n + c)
        writer.append_all(cid, draws, stats)
        written.append((draws, stats))
    return meta, written


# ---- tests --------------------------------------------------------------------------------


def test_reads_runs_written_by_published_05(fresh_database):
    client = clickhouse_driver.Client(HOST, database=fresh_database)
    meta, written = write_v05_run(client, "my_run", n=10, chains=2)
    # Another run whose id starts like this one: its chains are not this run's.
    write_v05_run(client, "my_run_2", n=3, chains=1)
    before = tables(client)

    backend = mcb.ClickHouseBackend(client)
    runs = backend.get_runs()
    assert sorted(runs.rid) == ["my_run", "my_run_2"]
    assert bytes(runs.loc["my_run", "meta"]) == bytes(meta)

    run = backend.get_run("my_run")
    assert run.legacy
    chains = run.get_chains()
    assert [c.cmeta.chain_number for c in chains] == [0, 1]
    for chain, (draws, stats) in zip(chains, written):
        assert len(chain) == len(draws)
        np.testing.assert_array_equal(chain.get_draws("mu"), [d["mu"] for d in draws])
        theta = chain.get_draws("theta")
        assert theta.dtype == np.float32 and theta.shape == (len(draws), 3)
        np.testing.assert_array_equal(theta, [d["theta"] for d in draws])
        m = chain.get_draws("M")
        assert m.dtype == np.int64 and m.shape == (len(draws), 2, 3)
        np.testing.assert_array_equal(m, [d["M"] for d in draws])
        np.testing.assert_array_equal(chain.get_draws("flags"), [d["flags"] for d in draws])
        assert [str(s) for s in chain.get_draws("label")] == [str(d["label"]) for d in draws]
        for got, d in zip(chain.get_draws("dyn"), draws):
            np.testing.assert_array_equal(got, d["dyn"])
        np.testing.assert_array_equal(chain.get_draws("M", slice(None, None, -3)), m[::-3])
        np.testing.assert_array_equal(chain.get_stats("tune"), [s["tune"] for s in stats])
        np.testing.assert_array_equal(chain.get_stats("accept"), [s["accept"] for s in stats])
        assert [str(w) for w in chain.get_stats("warning")] == [str(s["warning"]) for s in stats]
        at = chain.get_draws_at(5, ["M", "mu"])
        np.testing.assert_array_equal(at["M"], draws[5]["M"])

    tree = run.to_inferencedata()
    posterior = tree["posterior"]
    assert posterior["theta"].dims == ("chain", "draw", "school")
    assert list(posterior["theta"].coords["school"].values) == ["a", "b", "c"]
    assert posterior.sizes["draw"] == 10 - 4 and tree["warmup_posterior"].sizes["draw"] == 4
    np.testing.assert_array_equal(posterior["M"].values[0], [d["M"] for d in written[0][0][4:]])
    np.testing.assert_array_equal(
        tree["sample_stats"]["accept"].values[1], [s["accept"] for s in written[1][1][4:10]]
    )

    assert tables(client) == before, "reading must not create tables"
    with pytest.raises(ReadOnlyError, match="0.5.x"):
        chains[0].append({**written[0][0][0]}, written[0][1][0])
    with pytest.raises(ReadOnlyError, match="0.5.x"):
        run.init_chain(2)
    assert tables(client) == before
    client.disconnect()


def test_reading_an_empty_database_creates_nothing(fresh_database):
    client = clickhouse_driver.Client(HOST, database=fresh_database)
    backend = mcb.ClickHouseBackend(client)
    assert len(backend.get_runs()) == 0
    with pytest.raises(RunNotFoundError):
        backend.get_run("nope")
    assert tables(client) == set()
    run = backend.init_run(RunMeta(rid="r", variables=[Variable("a", "float64", [])]))
    assert tables(client) == {"runs", "chains", "__mcb_run_r"}
    run.init_chain(0).append({"a": 1.0})
    run.close()
    client.disconnect()


def test_new_runs_share_a_database_with_05_runs(fresh_database):
    """A 0.5.x database keeps working: new runs land in its runs table, both kinds list."""
    client = clickhouse_driver.Client(HOST, database=fresh_database)
    write_v05_run(client, "old", n=3, chains=1)
    backend = mcb.ClickHouseBackend(client)
    run = backend.init_run(v05_meta("new"))
    draws, stats = v05_draws(6)
    chain = run.init_chain(0)
    for d, s in zip(draws, stats):
        chain.append(d, s)
    run.close()
    assert sorted(backend.get_runs().rid) == ["new", "old"]
    new, old = backend.get_run("new"), backend.get_run("old")
    assert not new.legacy and old.legacy
    np.testing.assert_array_equal(new.get_chains()[0].get_draws("M"), [d["M"] for d in draws])
    assert len(old.get_chains()[0]) == 3
    client.disconnect()
