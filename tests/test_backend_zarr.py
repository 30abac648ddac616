import json
import re

import numpy as np
import pytest

import mcbackend as mcb
from mcbackend.errors import CorruptRunError
from mcbackend.meta import Variable
from mcbackend.testing import BackendConformance, make_meta


class TestZarrLocal(BackendConformance):
    many_draws = 300

    @pytest.fixture
    def backend(self, tmp_path):
        return mcb.ZarrBackend(
            str(tmp_path / "runs"), format_version=1, flush_every=8, flush_seconds=None
        )

    def reopen(self, backend, run):
        return mcb.ZarrBackend(str(backend.location.path)).get_run(run.meta.rid)


class TestZarrSmallChunks(TestZarrLocal):
    """Flushes that straddle chunk boundaries (3 draws a flush, 4 draws a chunk)."""

    @pytest.fixture
    def backend(self, tmp_path):
        return mcb.ZarrBackend(
            str(tmp_path), format_version=1, chunk_draws=4, flush_every=3, flush_seconds=None
        )


class TestZarrMemoryUnflushed(BackendConformance):
    """Reads in the writing process include draws that were never flushed."""

    many_draws = 300

    @pytest.fixture
    def backend(self):
        url = f"memory://zarr-{np.random.randint(10**9)}"
        return mcb.ZarrBackend(url, format_version=1, flush_every=5, flush_seconds=None)

    def finish(self, run):
        pass


@pytest.mark.s3
class TestZarrS3(BackendConformance):
    """The whole suite against a real S3-protocol server (moto) through s3fs."""

    many_draws = 100

    @pytest.fixture
    def backend(self, s3_bucket, s3_options):
        return mcb.ZarrBackend(
            f"{s3_bucket}/runs", s3_options, format_version=1, flush_every=16, flush_seconds=None
        )

    def reopen(self, backend, run):
        return mcb.open_run(
            f"{backend.location.url()}/{run.meta.rid}", backend.location.storage_options
        )


class TestZarrV2Local(TestZarrLocal):
    """Layout v2 (formats/zarr.md): the whole suite, chunks of 64 bytes so flushes straddle
    chunk boundaries and chains end inside a chunk."""

    @pytest.fixture
    def backend(self, tmp_path):
        return mcb.ZarrBackend(
            str(tmp_path / "runs"), format_version=2, chunk_bytes=64, flush_every=7,
            flush_seconds=None,
        )  # fmt: skip


class TestZarrV2Memory(TestZarrMemoryUnflushed):
    @pytest.fixture
    def backend(self):
        url = f"memory://zarr-{np.random.randint(10**9)}"
        return mcb.ZarrBackend(url, format_version=2, flush_every=5, flush_seconds=None)


@pytest.mark.s3
class TestZarrV2S3(TestZarrS3):
    @pytest.fixture
    def backend(self, s3_bucket, s3_options):
        return mcb.ZarrBackend(
            f"{s3_bucket}/runs", s3_options, format_version=2, chunk_bytes=256, flush_every=16,
            flush_seconds=None,
        )  # fmt: skip


# ---- names and settings every Zarr layout must handle ---------------------------------------


def zarr_backend(tmp_path, version: int, **kwargs) -> mcb.ZarrBackend:
    return mcb.ZarrBackend(
        str(tmp_path), format_version=version, flush_every=2, flush_seconds=None, **kwargs
    )


@pytest.mark.parametrize("version", [1, 2])
def test_str_variables_without_compression(tmp_path, version):
    """``compression=None`` stores str values (fixed, ragged and stats) like any others."""
    meta = make_meta(
        [Variable("s", "str", []), Variable("w", "str", [-1]), Variable("x", "float64", [])],
        [Variable("t", "str", [])],
    )
    run = zarr_backend(tmp_path, version, compression=None).init_run(meta)
    chain = run.init_chain(0)
    for i in range(5):
        chain.append(
            {"s": f"ä{i}", "w": np.array(["a", "bb"][: i % 3], str), "x": i}, {"t": "t" * i}
        )
    run.close()
    chain = mcb.open_run(str(tmp_path / meta.rid)).get_chains()[0]
    assert chain.get_draws("s").tolist() == [f"ä{i}" for i in range(5)]
    assert [w.tolist() for w in chain.get_draws("w")] == [[], ["a"], ["a", "bb"], [], ["a"]]
    assert chain.get_stats("t").tolist() == ["t" * i for i in range(5)]
    assert mcb.open_run(str(tmp_path / meta.rid)).verify() == []


@pytest.mark.parametrize("version", [1, 2])
def test_backslash_in_names_is_escaped_and_stored(tmp_path, version):
    """zarr-python reads '\\' as a path separator: node names write it '%5C'."""
    meta = make_meta([Variable("a\\b", "float64", [2]), Variable("r\\", "int8", [-1])])
    run = zarr_backend(tmp_path, version).init_run(meta)
    chain = run.init_chain(0)
    for i in range(3):
        chain.append({"a\\b": [i, -i], "r\\": [i] * i})
    run.close()
    nodes = {p.name for p in (tmp_path / meta.rid).rglob("*") if "%5C" in p.name}
    assert nodes == {"a%5Cb", "r%5C"}
    chain = mcb.open_run(str(tmp_path / meta.rid)).get_chains()[0]
    np.testing.assert_array_equal(chain.get_draws("a\\b"), [[0, 0], [1, -1], [2, -2]])
    assert [r.tolist() for r in chain.get_draws("r\\")] == [[], [1], [2, 2]]


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("a\x00b", "NUL"),
        ("x" * 256, "256 bytes"),
        ("%/" * 43, "258 bytes"),
        ("zarr.json", "Zarr's metadata"),
        ("Zarr.JSON", "Zarr's metadata"),
    ],
)
@pytest.mark.parametrize("role", ["variables", "sample_stats", "data"])
def test_names_no_file_can_hold_are_refused_at_init_run(tmp_path, version, name, reason, role):
    """Names whose node cannot be a file (NUL, over 255 bytes escaped, a metadata key) are
    refused at init_run, naming them and why, before anything is written."""
    from mcbackend.meta import DataVariable
    from mcbackend.npproto.utils import ndarray_from_numpy

    meta = make_meta([Variable("ok", "float64", [])])
    if role == "data":
        meta.data = [DataVariable(name, ndarray_from_numpy(np.ones(2)), [], True)]
    else:
        getattr(meta, role).append(Variable(name, "float64", []))
    backend = zarr_backend(tmp_path, version)
    if role == "data" and version == 1:  # v1 keeps data in meta.pb only: any name is fine
        backend.init_run(meta)
        return
    with pytest.raises(ValueError, match=f"{re.escape(repr(name))}.*{reason}"):
        backend.init_run(meta)
    assert not (tmp_path / meta.rid).exists()
    assert zarr_backend(tmp_path, version).get_runs().empty


def test_v2_runs_written_with_raw_backslash_stay_readable(tmp_path):
    """Earlier writers left '\\' raw in v2 node names (readable then): still read."""
    meta = make_meta([Variable("a\\b", "float64", [])])
    run = zarr_backend(tmp_path, 2).init_run(meta)
    chain = run.init_chain(0)
    chain.append_many({"a\\b": [1.0, 2.0, 3.0]})
    run.close()
    posterior = tmp_path / meta.rid / "posterior"
    (posterior / "a%5Cb").rename(posterior / "a\\b")
    reopened = mcb.open_run(str(tmp_path / meta.rid))
    assert reopened.get_chains()[0].get_draws("a\\b").tolist() == [1.0, 2.0, 3.0]
    assert reopened.verify() == []


# ---- Zarr v1: missing and damaged pieces are found, never read as fill values ----------------

V1_DRAWS = (10, 7)  # chains of complete and partial 4-draw chunks


def v1_expected(chain: int, i: int) -> tuple[dict, dict]:
    """Draw ``i`` of ``chain``: no value equals a fill value (0, "" or empty)."""
    k = 100 * chain + i + 1
    draw = {
        "mu": k + 0.5,
        "theta": np.array([k, -k], "int32"),
        "label": f"l{k}",
        "ragged": np.arange(3 + i % 4, dtype="float32") + k,
    }
    return draw, {"energy": -float(k), "warning": f"w{k}"}


def small_v1_run(tmp_path):
    meta = make_meta(
        [
            Variable("mu", "float64", []),
            Variable("theta", "int32", [2]),
            Variable("label", "str", []),
            Variable("ragged", "float32", [-1]),
        ],
        [Variable("energy", "float64", []), Variable("warning", "str", [])],
    )
    backend = mcb.ZarrBackend(
        str(tmp_path), format_version=1, chunk_draws=4, flush_every=4, flush_seconds=None
    )
    run = backend.init_run(meta)
    for c, n in enumerate(V1_DRAWS):
        chain = run.init_chain(c)
        for i in range(n):
            chain.append(*v1_expected(c, i))
    run.close()
    return tmp_path / meta.rid


def read_all(run_dir) -> None:
    """Read every value of every chain and compare it with what was written."""
    run = mcb.open_run(str(run_dir))
    chains = run.get_chains()
    assert [len(c) for c in chains] == list(V1_DRAWS)
    for c, chain in enumerate(chains):
        expected = [v1_expected(c, i) for i in range(V1_DRAWS[c])]
        for name in ("mu", "theta", "label", "ragged"):
            got = chain.get_draws(name)
            for i, (draw, _) in enumerate(expected):
                np.testing.assert_array_equal(got[i], draw[name])
        for name in ("energy", "warning"):
            np.testing.assert_array_equal(chain.get_stats(name), [s[name] for _, s in expected])


#: Files reads do not need (group documents); verify still reports them missing.
V1_UNREAD = re.compile(
    r"^(zarr\.json|chain_\d+/(draws|stats)/zarr\.json|chain_\d+/draws/ragged/zarr\.json)$"
)


def test_v1_every_deleted_file_is_reported_and_never_read_as_fill(tmp_path):
    """Delete each file of a small v1 run in turn: verify names it, and reads raise
    CorruptRunError (or, for documents reads do not need, return the stored values)."""
    run_dir = small_v1_run(tmp_path)
    read_all(run_dir)
    assert mcb.open_run(str(run_dir)).verify() == []
    # _claim.json and the writer leases under _mcbackend/ only guard who writes
    # (formats/zarr.md), they hold no draws
    files = sorted(
        p
        for p in run_dir.rglob("*")
        if p.is_file() and p.name != "_claim.json" and "_mcbackend" not in p.parts
    )
    assert len(files) > 60
    for path in files:
        rel = path.relative_to(run_dir).as_posix()
        data = path.read_bytes()
        path.unlink()
        try:
            if rel in ("mcbackend.json", "meta.pb"):
                with pytest.raises((mcb.RunNotFoundError, CorruptRunError)):
                    mcb.open_run(str(run_dir))
                continue
            problems = mcb.open_run(str(run_dir)).verify()
            assert any(rel in p for p in problems), (rel, problems)
            if V1_UNREAD.match(rel):
                read_all(run_dir)
            else:
                with pytest.raises(CorruptRunError):
                    read_all(run_dir)
        finally:
            path.write_bytes(data)
    assert mcb.open_run(str(run_dir)).verify() == []


def test_v1_every_byte_flipped_chunk_is_reported_and_raises_naming_it(tmp_path):
    run_dir = small_v1_run(tmp_path)
    chunks = sorted(p for p in run_dir.rglob("*") if p.is_file() and "/c/" in p.as_posix())
    assert len(chunks) == 38
    for path in chunks:
        rel = path.relative_to(run_dir).as_posix()
        data = path.read_bytes()
        flipped = bytearray(data)
        flipped[len(flipped) // 2] ^= 0xFF
        path.write_bytes(bytes(flipped))
        try:
            (problem,) = mcb.open_run(str(run_dir)).verify()
            assert rel in problem, (rel, problem)
            with pytest.raises(CorruptRunError, match=re.escape(rel)):
                read_all(run_dir)
        finally:
            path.write_bytes(data)


@pytest.mark.parametrize(
    ("node", "field", "value"),
    [
        ("chain_0/draws/mu", "fill_value", 7.0),
        ("chain_0/draws/mu", "data_type", "int64"),
        ("chain_0/draws/theta", "data_type", "uint32"),
        ("chain_0/draws/label", "fill_value", "x"),
        ("chain_0/stats/energy", "data_type", "float32"),
        ("chain_0/draws/ragged/data", "data_type", "float64"),
        ("chain_0/draws/ragged/ndims", "fill_value", 1),
        ("chain_0/draws/theta", "shape", [10, 3]),
        ("chain_0/draws/mu", "shape", [6]),
        ("chain_0/draws/ragged/ndims", "shape", [6]),
    ],
)
def test_v1_tampered_array_metadata_is_reported_and_raises(tmp_path, node, field, value):
    run_dir = small_v1_run(tmp_path)
    path = run_dir / node / "zarr.json"
    doc = json.loads(path.read_text())
    doc[field] = value
    if field == "shape" and len(value) != len(doc["chunk_grid"]["configuration"]["chunk_shape"]):
        doc["chunk_grid"]["configuration"]["chunk_shape"] = [4, *value[1:]]
    path.write_text(json.dumps(doc))
    problems = mcb.open_run(str(run_dir)).verify()
    assert any(f"{node}/zarr.json" in p and field.split("_")[0] in p for p in problems), problems
    with pytest.raises(CorruptRunError, match=re.escape(node)):
        read_all(run_dir)


def test_v1_missing_chunk_reported_by_the_command(tmp_path):
    from click.testing import CliRunner

    from mcbackend.cli import main

    run_dir = small_v1_run(tmp_path)
    for lost in ["chain_1/stats/warning/c/1", "chain_0/zarr.json"]:
        data = (run_dir / lost).read_bytes()
        (run_dir / lost).unlink()
        result = CliRunner().invoke(main, ["verify", str(run_dir)])
        assert result.exit_code == 1
        (line,) = [x for x in result.output.splitlines() if x.startswith("CORRUPT")]
        assert lost in line and "missing" in line
        assert "1 problem(s)" in result.output
        (run_dir / lost).write_bytes(data)
