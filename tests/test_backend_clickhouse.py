"""ClickHouse backend against a real server on 127.0.0.1:9000 (started by scripts/clickhouse.sh)."""

import gc
import subprocess
import sys
import threading
import uuid

import numpy as np
import pytest

clickhouse_driver = pytest.importorskip("clickhouse_driver")

import mcbackend as mcb  # noqa: E402
from mcbackend.backends.clickhouse import quote_identifier  # noqa: E402
from mcbackend.meta import RunMeta, Variable  # noqa: E402
from mcbackend.testing import BackendConformance, make_meta, random_draws  # noqa: E402

from .conftest import CLICKHOUSE_HOST as HOST  # noqa: E402


@pytest.fixture
def database(clickhouse_database):
    return clickhouse_database


#: Unclosed sockets fail these tests (issue: ResourceWarning in the to_inferencedata tests).
pytestmark = [
    pytest.mark.filterwarnings("error::ResourceWarning"),
    pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning"),
]

_clients = []


def connect(database):
    """A client the test made; disconnected after the test (the backend never closes it)."""
    client = clickhouse_driver.Client(HOST, database=database)
    _clients.append(client)
    return client


@pytest.fixture(autouse=True)
def _disconnect_clients():
    yield
    while _clients:
        _clients.pop().disconnect()
    gc.collect()  # an unclosed socket warns now, inside this test


@pytest.mark.clickhouse
class TestClickHouse(BackendConformance):
    many_draws = 300

    @pytest.fixture
    def backend(self, database):
        return mcb.ClickHouseBackend(connect(database), flush_every=8)

    def reopen(self, backend, run):
        database = backend.client.connection.database
        return mcb.ClickHouseBackend(client_fn=lambda: connect(database)).get_run(run.meta.rid)


@pytest.mark.clickhouse
class TestClickHouseUnflushed(BackendConformance):
    """Pending inserts are flushed before any read."""

    many_draws = 50

    @pytest.fixture
    def backend(self, database):
        return mcb.ClickHouseBackend(
            client_fn=lambda: connect(database), flush_every=10**6, flush_seconds=10**6
        )

    def finish(self, run):
        pass


@pytest.mark.clickhouse
class TestClickHouseBackgroundInserts(BackendConformance):
    """A chain with a client of its own inserts on a thread while appends go on."""

    many_draws = 300

    @pytest.fixture
    def backend(self, database):
        return mcb.ClickHouseBackend(client_fn=lambda: connect(database), flush_every=8)

    def reopen(self, backend, run):
        database = backend.client.connection.database
        return mcb.ClickHouseBackend(client_fn=lambda: connect(database)).get_run(run.meta.rid)


NASTY = [
    "q'uote",
    'dq"uote',
    "back`tick",
    "semi;colon",
    "dash--comment",
    "x'); DROP TABLE runs; --",
    "back\\slash",
    "spa ce ü",
    "pct%",
    "r%(lo)s",
    "%(x)s",
    "%%",
    "%s%d",
]


@pytest.mark.clickhouse
@pytest.mark.parametrize("nasty", NASTY)
def test_hostile_names_are_quoted_not_executed(database, nasty):
    client = connect(database)
    backend = mcb.ClickHouseBackend(client)
    meta = RunMeta(
        rid=f"{nasty}{uuid.uuid4().hex[:6]}",
        variables=[Variable(nasty, "float64", [2]), Variable("plain", "int8", [])],
        sample_stats=[Variable(nasty, "bool", [])],
    )
    run = backend.init_run(meta)
    chain = run.init_chain(0)
    draws = random_draws(meta.variables, 5)
    for d in draws:
        chain.append(d, {nasty: True})
    chain.flush()
    reopened = mcb.ClickHouseBackend(connect(database)).get_run(meta.rid)
    (chain,) = reopened.get_chains()
    np.testing.assert_array_equal(chain.get_draws(nasty), [d[nasty] for d in draws])
    assert chain.get_stats(nasty).all()
    tables = {t for (t,) in client.execute("SHOW TABLES")}
    assert {"runs", "chains", f"{meta.rid}_chain_0"} <= tables


@pytest.mark.clickhouse
def test_percent_in_run_id_or_name_reads_its_own_data(database):
    """The driver %-formats queries that have parameters: ``r%(lo)s`` used to read ``r0``."""
    backend = mcb.ClickHouseBackend(connect(database))
    tag = uuid.uuid4().hex[:6]
    rids = [f"r0{tag}", f"r%(lo)s{tag}", f"r%%(lo)s{tag}", f"r%{tag}"]
    names = ["lo", "%(lo)s", "%%", "%"]
    for i, rid in enumerate(rids):
        meta = RunMeta(rid=rid, variables=[Variable(n, "int64", []) for n in names])
        chain = backend.init_run(meta).init_chain(0)
        for d in range(3):
            chain.append({n: 1000 * i + 10 * j + d for j, n in enumerate(names)})
        chain.close()
    reader = mcb.ClickHouseBackend(connect(database))
    for i, rid in enumerate(rids):
        (chain,) = reader.get_run(rid).get_chains()
        for j, n in enumerate(names):
            assert chain.get_draws(n).tolist() == [1000 * i + 10 * j + d for d in range(3)]
            assert chain.get_draws_at(2, [n])[n] == 1000 * i + 10 * j + 2
    assert set(rids) <= set(reader.get_runs().rid)


@pytest.mark.clickhouse
@pytest.mark.parametrize(
    "variables, match",
    [
        ([Variable("ü" * 81, "float64", [])], "too long for ClickHouse"),
        ([Variable("x" * 241, "float64", [])], "too long for ClickHouse"),
        ([Variable("x" * 233, "float64", [-1])], "__shape_"),  # its shape column is too long
        ([Variable("a\nb", "float64", [])], "control characters"),
    ],
)
def test_names_checked_at_init_run_leave_no_orphan(database, variables, match):
    backend = mcb.ClickHouseBackend(connect(database))
    meta = make_meta(variables)
    with pytest.raises(ValueError, match=match):
        backend.init_run(meta)
    assert meta.rid not in set(backend.get_runs().rid)
    with pytest.raises(mcb.RunNotFoundError):
        backend.get_run(meta.rid)


@pytest.mark.clickhouse
def test_longest_accepted_names_are_stored(database):
    """Names just within the checked limit really fit the server (files named after them)."""
    backend = mcb.ClickHouseBackend(connect(database))
    rid = "é" * 20 + uuid.uuid4().hex[:8]  # 128 bytes on disk; with the lease prefix < 240
    variables = [Variable("ü" * 40, "float64", [2]), Variable("x" * 232, "int8", [-1])]
    run = backend.init_run(RunMeta(rid=rid, variables=variables))
    chain = run.init_chain(2**32 - 1)
    chain.append({"ü" * 40: [1.0, 2.0], "x" * 232: [1, 2, 3]})
    run.close()
    (chain,) = mcb.ClickHouseBackend(connect(database)).get_run(rid).get_chains()
    assert chain.cmeta.chain_number == 2**32 - 1
    assert chain.get_draws("x" * 232)[0].tolist() == [1, 2, 3]


@pytest.mark.clickhouse
def test_too_long_run_id_and_reserved_prefix_refused_at_init_run(database):
    backend = mcb.ClickHouseBackend(connect(database))
    for rid, match in [("ü" * 60, "too long"), ("__mcb_run_x", "reserved")]:
        with pytest.raises(ValueError, match=match):
            backend.init_run(RunMeta(rid=rid, variables=[Variable("a", "float64", [])]))
        assert rid not in set(backend.get_runs().rid)


@pytest.mark.clickhouse
def test_chain_numbers_beyond_uint32_refused_before_create_table(database):
    client = connect(database)
    backend = mcb.ClickHouseBackend(client)
    run = backend.init_run(make_meta([Variable("a", "float64", [])]))
    before = {t for (t,) in client.execute("SHOW TABLES")}
    with pytest.raises(ValueError, match="too large for ClickHouse"):
        run.init_chain(2**32)
    assert {t for (t,) in client.execute("SHOW TABLES")} == before
    assert run.get_chains() == []


@pytest.mark.clickhouse
def test_no_connection_left_open(database):
    """Clients made with client_fn are disconnected (ResourceWarning: unclosed socket)."""
    code = f"""
import gc, warnings
warnings.simplefilter("error", ResourceWarning)
import clickhouse_driver, mcbackend as mcb
from mcbackend.meta import RunMeta, Variable
connect = lambda: clickhouse_driver.Client({HOST!r}, database={database!r})
backend = mcb.ClickHouseBackend(client_fn=connect)
run = backend.init_run(RunMeta(rid="leak" + {uuid.uuid4().hex!r},
    variables=[Variable("a", "float64", [])], sample_stats=[Variable("tune", "bool", [])]))
for c in range(2):
    chain = run.init_chain(c)
    for i in range(5):
        chain.append({{"a": float(i)}}, {{"tune": i < 2}})
run.close()
assert run.to_inferencedata()["posterior"].sizes["draw"] == 3  # reconnects after close
backend.close()
for _ in range(3):  # read back the way to_inferencedata users do, never closing anything
    tree = mcb.ClickHouseBackend(client_fn=connect).get_run(run.rid).to_inferencedata()
    assert tree["posterior"].sizes["draw"] == 3
    tree = mcb.open_run("clickhouse://{HOST}:9000/{database}/" + run.rid).to_inferencedata()
del backend, run, chain, tree
gc.collect()
print("clean")
"""
    out = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error::ResourceWarning", "-c", code],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0 and out.stdout.strip() == "clean", out.stderr[-3000:]
    assert "ResourceWarning" not in out.stderr, out.stderr[-3000:]


def test_quote_identifier_refuses_control_characters():
    with pytest.raises(ValueError, match="cannot be a ClickHouse identifier"):
        quote_identifier("a\nb")
    assert quote_identifier("a`b") == "`a\\`b`"


@pytest.mark.clickhouse
def test_get_runs_and_unknown_run(database):
    backend = mcb.ClickHouseBackend(connect(database))
    meta = make_meta([Variable("a", "float64", [])])
    backend.init_run(meta)
    runs = backend.get_runs()
    assert meta.rid in list(runs.rid)
    assert bytes(runs.set_index("rid").loc[meta.rid, "meta"]) == bytes(meta)
    with pytest.raises(KeyError, match="No run with id 'nope'"):
        backend.get_run("nope")


@pytest.mark.clickhouse
def test_client_fn_gives_each_chain_its_own_client(database):
    backend = mcb.ClickHouseBackend(client_fn=lambda: connect(database))
    run = backend.init_run(make_meta([Variable("a", "float64", [])]))
    c0, c1 = run.init_chain(0), run.init_chain(1)
    assert c0._client is not c1._client is not backend.client


@pytest.mark.clickhouse
def test_reader_in_other_process_sees_committed_draws(database):
    backend = mcb.ClickHouseBackend(connect(database), flush_every=5)
    meta = make_meta([Variable("a", "int64", [])])
    chain = backend.init_run(meta).init_chain(0)
    for i in range(12):
        chain.append({"a": i})  # 10 inserted, 2 pending
    code = (
        "import clickhouse_driver, mcbackend as mcb\n"
        f"c = clickhouse_driver.Client({HOST!r}, database={database!r})\n"
        f"(ch,) = mcb.ClickHouseBackend(c).get_run({meta.rid!r}).get_chains()\n"
        "print(len(ch), ch.get_draws('a').tolist())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[0] == "10"
    assert out.stdout.strip().endswith(str(list(range(10))))


@pytest.mark.clickhouse
def test_server_types_chosen_by_version(database):
    backend = mcb.ClickHouseBackend(connect(database))
    run = backend.init_run(make_meta([Variable("b", "bool", [])]))
    run.init_chain(0)
    table = f"{run.meta.rid}_chain_0"
    types = dict(
        backend.client.execute(
            "SELECT name, type FROM system.columns WHERE table = %(t)s AND database = %(d)s",
            {"t": table, "d": database},
        )
    )
    assert types["b"] == ("Bool" if backend.types.modern else "UInt8")


@pytest.mark.clickhouse
@pytest.mark.parametrize("engine", ["StripeLog", "MergeTree"])
def test_chain_table_engines(database, engine):
    backend = mcb.ClickHouseBackend(connect(database), engine=engine)
    meta = make_meta([Variable("a", "float64", [2]), Variable("i", "int32", [])])
    chain = backend.init_run(meta).init_chain(0)
    chain.append_many({"a": np.ones((30, 2)), "i": np.arange(30)})
    chain.append({"a": [2.0, 3.0], "i": 30})
    chain.close()
    (chain,) = mcb.ClickHouseBackend(connect(database)).get_run(meta.rid).get_chains()
    assert chain.get_draws("i").tolist() == list(range(31))
    assert chain.get_draws("a")[-1].tolist() == [2.0, 3.0]
    found = backend.client.execute(
        "SELECT engine FROM system.tables WHERE database = currentDatabase() "
        f"AND name = '{meta.rid}_chain_0'"
    )
    assert found == [(engine,)]
    with pytest.raises(ValueError, match="engine must be one of"):
        mcb.ClickHouseBackend(connect(database), engine="Memory")


@pytest.mark.clickhouse
def test_flushes_bounded_by_bytes(database):
    """A batch is inserted once its draws take ``flush_bytes``, however large flush_every."""
    backend = mcb.ClickHouseBackend(
        connect(database), flush_every=10**6, flush_seconds=10**6, flush_bytes=8000
    )
    meta = make_meta([Variable("x", "float64", [100])])  # 800 bytes a draw
    chain = backend.init_run(meta).init_chain(0)
    for _ in range(25):
        chain.append({"x": np.zeros(100)})
    stored = backend.client.execute(f"SELECT count() FROM `{meta.rid}_chain_0`")[0][0]
    assert stored == 20  # two inserts of 10 draws; 5 pending
    chain.close()


@pytest.mark.clickhouse
def test_insert_every_is_a_deprecated_name_of_flush_every(database):
    with (
        pytest.warns(DeprecationWarning, match="'insert_every' is deprecated"),
        pytest.warns(DeprecationWarning, match="'insert_interval' is deprecated"),
    ):
        backend = mcb.ClickHouseBackend(connect(database), insert_every=3, insert_interval=10**6)
    assert (backend.flush_every, backend.flush_seconds) == (3, 10**6)
    chain = backend.init_run(make_meta([Variable("a", "int64", [])])).init_chain(0)
    for i in range(4):
        chain.append({"a": i})
    assert chain._committed == 3  # one insert of three, one draw pending


@pytest.mark.clickhouse
def test_array_columns_cut_into_blocks_keep_every_draw(database):
    """Array columns go to the server as offsets and flat data (``clickhouse_arrays``); an
    insert the driver cuts into blocks of ``insert_block_size`` rows keeps every draw whole."""
    variables = [
        Variable("rigid", "float32", [2, 3]),
        Variable("ragged", "float64", [-1]),
        Variable("anyndim", "int16", [], undefined_ndim=True),
        Variable("z", "complex64", [2]),
        Variable("flags", "bool", [3]),
        Variable("half", "float16", [2]),
        Variable("empty", "int32", [0]),
        Variable("s", "float64", []),
    ]
    meta = make_meta(variables, [Variable("depth", "int64", [])])
    draws = random_draws(variables, 10, seed=3)
    client = clickhouse_driver.Client(HOST, database=database, settings={"insert_block_size": 3})
    _clients.append(client)
    chain = mcb.ClickHouseBackend(client, flush_every=100).init_run(meta).init_chain(0)
    for i, draw in enumerate(draws):
        chain.append(draw, {"depth": i})
    chain.close()
    (stored,) = mcb.ClickHouseBackend(connect(database)).get_run(meta.rid).get_chains()
    assert stored.get_stats("depth").tolist() == list(range(10))
    for v in variables:
        values = stored.get_draws(v.name)
        for i, draw in enumerate(draws):
            np.testing.assert_array_equal(values[i], draw[v.name], err_msg=v.name)
            assert np.asarray(values[i]).dtype == np.dtype(v.dtype), v.name


@pytest.mark.clickhouse
def test_own_clients_insert_in_the_background_and_keep_every_draw(database):
    """With ``client_fn`` a chain inserts on a thread of its own; every draw is stored once, in
    order, whatever reads and closes meet an insert under way."""
    backend = mcb.ClickHouseBackend(client_fn=lambda: connect(database), flush_every=50)
    meta = make_meta([Variable("a", "int64", []), Variable("b", "float32", [3])])
    chain = backend.init_run(meta).init_chain(0)
    inserting = set()
    for i in range(2000):
        chain.append({"a": i, "b": np.full(3, i, dtype="float32")})
        inserting |= {t.name for t in threading.enumerate() if t.name.startswith("mcb-")}
        if i == 1234:
            assert len(chain) == 1235
            assert chain.get_draws("a")[-3:].tolist() == [1232, 1233, 1234]
    assert inserting == {f"mcb-{chain.cid}"}
    chain.close()
    (stored,) = mcb.ClickHouseBackend(connect(database)).get_run(meta.rid).get_chains()
    assert stored.get_draws("a").tolist() == list(range(2000))
    assert stored.get_draws("b")[:, 0].tolist() == list(range(2000))


@pytest.mark.clickhouse
def test_a_client_passed_in_stays_usable_between_appends(database):
    """A client the caller passed in serves the caller too (one query at a time), so its
    chains insert inline: no insert is under way when append returns."""
    client = connect(database)
    backend = mcb.ClickHouseBackend(client, flush_every=7)
    meta = make_meta([Variable("a", "int64", [])])
    chain = backend.init_run(meta).init_chain(0)
    for i in range(50):
        chain.append({"a": i})
        stored = client.execute(f"SELECT count() FROM {quote_identifier(meta.rid + '_chain_0')}")
        assert stored == [(7 * ((i + 1) // 7),)]
    chain.close()
