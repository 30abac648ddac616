"""The conformance suite every mcbackend backend passes: subclass it to test your own.

``BackendConformance`` holds pytest tests of the behaviour ``mcbackend.core`` promises (exact
dtypes and shapes, dynamic shapes and strings, slicing, stats a sampler leaves out, bad input
refused with nothing lost, metadata surviving, ArviZ conversion). A backend's test module
subclasses it and provides the ``backend`` fixture; it may override ``reopen`` to read a run
back through storage (a fresh handle) and ``finish`` to make written draws durable::

    import pytest
    from mcbackend.testing import BackendConformance

    class TestMyBackend(BackendConformance):
        @pytest.fixture
        def backend(self, tmp_path):
            return MyBackend(tmp_path)

The helpers (``make_meta``, ``random_draws``, ``assert_values_equal``, ...) are usable on their
own. Importing this module needs pytest; ``import mcbackend`` does not. For pytest's detailed
assertion messages, call ``pytest.register_assert_rewrite("mcbackend.testing")`` in a
``conftest.py`` before the import.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd

try:
    import pytest
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError("mcbackend.testing needs pytest: pip install pytest") from error

import mcbackend as mcb
from mcbackend._inferencedata import find_warmup_stat
from mcbackend.meta import Coordinate, DataVariable, RunMeta, Variable
from mcbackend.npproto.utils import ndarray_from_numpy

__all__ = [
    "BIG_ENDIAN_DTYPES",
    "HOSTILE_NAMES",
    "NUMERIC_DTYPES",
    "SLICES",
    "BackendConformance",
    "assert_values_equal",
    "make_meta",
    "new_rid",
    "random_draws",
    "random_value",
]

NUMERIC_DTYPES = [
    "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64", "complex64", "complex128", "bool",
]  # fmt: skip
#: Declared dtypes in non-native byte order: stored in any order, read back as declared.
BIG_ENDIAN_DTYPES = [">f8", ">c16", ">i4"]
#: Names storage layouts trip on (path separators, NUL, file name length, metadata keys).
HOSTILE_NAMES = [
    pytest.param("a\\b", id="backslash"),
    pytest.param("a/b", id="slash"),
    pytest.param("a\x00b", id="nul"),
    pytest.param("x" * 300, id="300-bytes"),
    pytest.param("%" * 100, id="300-bytes-escaped"),
    pytest.param("é" * 200, id="400-bytes-utf8"),
    pytest.param("zarr.json", id="zarr.json"),
    pytest.param("ZARR.JSON", id="ZARR.JSON"),
    pytest.param("c", id="c"),
    pytest.param("..", id="dotdot"),
    pytest.param("__x", id="dunder"),
]

_counter = iter(range(10**9))


def new_rid(prefix: str = "run") -> str:
    """A run id unique within the process (and random across processes)."""
    return f"{prefix}{next(_counter)}_{np.random.randint(10**9)}"


def make_meta(
    variables: list[Variable],
    sample_stats: list[Variable] | None = None,
    **kwargs,
) -> RunMeta:
    """A ``RunMeta`` with a fresh run id."""
    return RunMeta(rid=new_rid(), variables=variables, sample_stats=sample_stats or [], **kwargs)


def random_value(var: Variable, rng: np.random.Generator) -> np.ndarray:
    """A random draw for ``var``; dynamic dims get a random length."""
    if var.undefined_ndim:
        shape = tuple(rng.integers(1, 4, size=rng.integers(0, 3)))
    else:
        shape = tuple(int(rng.integers(1, 5)) if s <= 0 else s for s in var.shape)
    if var.dtype == "str":
        words = np.array(["", "α", "beta", "gamma-ray", "∂x/∂y"])
        return rng.choice(words, size=shape)
    dtype = np.dtype(var.dtype)
    native = dtype.newbyteorder("=")
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        values = rng.integers(info.min, info.max, size=shape, dtype=native, endpoint=True)
        return values.astype(dtype)
    if dtype.kind == "c":
        return (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(dtype)
    return rng.normal(scale=1e3, size=shape).astype(dtype)


def random_draws(variables: list[Variable], n: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Random draws; a warm-up stat (``in_warmup``, ``tune``) marks a leading block, as every
    sampler does (Zarr v2 routes draws by it and refuses warm-up after posterior draws)."""
    rng = np.random.default_rng(seed)
    draws = [{v.name: random_value(v, rng) for v in variables} for _ in range(n)]
    warmup = find_warmup_stat([v.name for v in variables if v.dtype == "bool" and not v.shape])
    for i, draw in enumerate(draws):
        if warmup is not None:
            draw[warmup] = np.array(i < n // 3)
    return draws


def assert_values_equal(actual: np.ndarray, expected: list[np.ndarray], var: Variable) -> None:
    """``actual`` (from get_draws/get_stats) holds exactly ``expected`` draws."""
    assert len(actual) == len(expected)
    rigid = mcb.core.is_rigid(var.shape) and not var.undefined_ndim
    if rigid and var.dtype == "str":  # one <U array, as published mcbackend returns them
        assert actual.dtype.kind == "U", (var.name, actual.dtype)
        assert actual.shape == (len(expected), *var.shape)
        if expected:
            np.testing.assert_array_equal(actual, np.stack(expected))
        return
    if rigid:
        assert actual.dtype == np.dtype(var.dtype), (var.name, actual.dtype)
        assert actual.shape == (len(expected), *var.shape)
        if expected:
            np.testing.assert_array_equal(actual, np.stack(expected))
        return
    assert actual.dtype == object
    for got, want in zip(actual, expected):
        got = np.asarray(got)
        assert got.shape == np.shape(want), (var.name, got.shape, np.shape(want))
        if var.dtype == "str":
            assert got.dtype.kind == "U"
        else:
            assert got.dtype == np.dtype(var.dtype)
        np.testing.assert_array_equal(got, want)


SLICES = [
    slice(None),
    slice(2, None),
    slice(2, 15, 3),
    slice(15, 2, -3),
    slice(-5, None),
    slice(None, -3),
    slice(-8, -2, 2),
    slice(7, 3),
    slice(100, 200),
]


class BackendConformance:
    """Behaviour every backend must show. Subclasses define the ``backend`` fixture."""

    #: Draws in the growth test: enough to outgrow NumPyBackend's preallocation and,
    #: for file backends, to span many flushes and chunks.
    many_draws = 2500

    @pytest.fixture
    def backend(self) -> mcb.Backend:  # pragma: no cover - overridden
        raise NotImplementedError()

    def reopen(self, backend: mcb.Backend, run: mcb.Run) -> mcb.Run:
        """A handle for reading ``run`` back; file backends reopen it from storage."""
        return run

    def finish(self, run: mcb.Run) -> None:
        """Make everything written so far durable (flush buffers)."""
        run.flush()

    # ---- helpers ------------------------------------------------------------------------

    def fill(self, backend, meta: RunMeta, n: int, chains: int = 1, seed: int = 0):
        run = backend.init_run(meta)
        written = []
        for c in range(chains):
            chain = run.init_chain(c)
            draws = random_draws(meta.variables, n, seed=seed + c)
            stats = random_draws(meta.sample_stats, n, seed=seed + 100 + c)
            for d, s in zip(draws, stats):
                chain.append(d, s if meta.sample_stats else None)
            written.append((draws, stats))
        self.finish(run)
        return run, written

    def chain_of(self, run: mcb.Run, number: int) -> mcb.Chain:
        return next(c for c in run.get_chains() if c.cmeta.chain_number == number)

    # ---- initialization -----------------------------------------------------------------

    def test_init_run_and_chains(self, backend):
        meta = make_meta([Variable("v1", "float32", [])])
        run = backend.init_run(meta)
        assert isinstance(run, mcb.Run)
        assert run.meta.rid == meta.rid
        chains = [run.init_chain(i) for i in range(3)]
        assert all(isinstance(c, mcb.Chain) for c in chains)
        assert [c.cmeta.chain_number for c in run.get_chains()] == [0, 1, 2]
        assert all(len(c) == 0 for c in run.get_chains())
        assert chains[1].cid != chains[2].cid
        assert set(chains[0].variables) == {"v1"}

    def test_meta_survives(self, backend):
        meta = make_meta(
            [Variable("theta", "float64", [3], dims=["city"], is_deterministic=True)],
            [Variable("in_warmup", "bool", [])],
            coordinates=[
                Coordinate("city", ndarray_from_numpy(np.array(["Bonn", "Paris", "Köln"])))
            ],
            data=[
                DataVariable(
                    "obs", ndarray_from_numpy(np.arange(6.0).reshape(2, 3)), ["two", "city"], True
                ),
                DataVariable(
                    "x", ndarray_from_numpy(np.array([1, 2, 3], dtype="int16")), ["city"], False
                ),
            ],
            attributes={"sampler": mcb.ExtendedValue(string_value="NUTS")},
        )
        run, _ = self.fill(backend, meta, 3)
        run = self.reopen(backend, run)
        assert bytes(run.meta) == bytes(meta)
        np.testing.assert_array_equal(run.coords["city"], ["Bonn", "Paris", "Köln"])
        assert run.dims == {"theta": ["city"], "obs": ["two", "city"], "x": ["city"]}
        assert run.constant_data["x"].dtype == np.int16
        np.testing.assert_array_equal(run.observed_data["obs"], np.arange(6.0).reshape(2, 3))

    # ---- append and read back -----------------------------------------------------------

    @pytest.mark.parametrize("with_stats", [False, True])
    def test_append_get_at(self, backend, with_stats):
        variables = [Variable("scalar", "float64", []), Variable("vec", "int32", [2, 3])]
        stats = [Variable("accepted", "bool", []), Variable("energy", "float32", [])]
        meta = make_meta(variables, stats if with_stats else [])
        run, written = self.fill(backend, meta, 7)
        chain = self.chain_of(self.reopen(backend, run), 0)
        draws, stat_values = written[0]
        assert len(chain) == 7
        for idx in (0, 3, 6, -1, -7):
            got = chain.get_draws_at(idx, ["scalar", "vec"])
            assert set(got) == {"scalar", "vec"}
            np.testing.assert_array_equal(got["vec"], draws[idx]["vec"])
            assert got["vec"].dtype == np.int32 and got["vec"].shape == (2, 3)
            assert got["scalar"] == draws[idx]["scalar"]
            if with_stats:
                sgot = chain.get_stats_at(idx, ["accepted", "energy"])
                assert sgot["accepted"] == stat_values[idx]["accepted"]
                assert sgot["energy"].dtype == np.float32
        for var in variables:
            assert_values_equal(chain.get_draws(var.name), [d[var.name] for d in draws], var)
        for var in meta.sample_stats:
            assert_values_equal(chain.get_stats(var.name), [s[var.name] for s in stat_values], var)

    def test_scalars_and_lists_accepted(self, backend):
        meta = make_meta(
            [Variable("a", "float64", []), Variable("b", "int64", [2]), Variable("c", "str", [])],
            [Variable("in_warmup", "bool", []), Variable("n", "int64", [])],
        )
        run = backend.init_run(meta)
        chain = run.init_chain(0)
        chain.append({"a": 1.5, "b": [1, 2], "c": "x"}, {"in_warmup": True, "n": 2**62})
        chain.append({"a": 2**53, "b": [3, 4], "c": "ÿz"}, {"in_warmup": False, "n": -7})
        self.finish(run)
        chain = self.chain_of(self.reopen(backend, run), 0)
        np.testing.assert_array_equal(chain.get_draws("a"), [1.5, 2.0**53])
        np.testing.assert_array_equal(chain.get_draws("b"), [[1, 2], [3, 4]])
        assert [str(c) for c in chain.get_draws("c")] == ["x", "ÿz"]
        assert chain.get_stats("in_warmup").dtype == bool
        np.testing.assert_array_equal(chain.get_stats("n"), [2**62, -7])
        assert chain.get_stats("n").dtype == np.int64

    @pytest.mark.parametrize("dtype", [*NUMERIC_DTYPES, "str", *BIG_ENDIAN_DTYPES])
    def test_dtypes_exact(self, backend, dtype):
        variables = [Variable("scalar", dtype, []), Variable("mat", dtype, [2, 2])]
        meta = make_meta(variables, [Variable("stat", dtype, [3])])
        run, written = self.fill(backend, meta, 5)
        chain = self.chain_of(self.reopen(backend, run), 0)
        draws, stats = written[0]
        for var in variables:
            assert_values_equal(chain.get_draws(var.name), [d[var.name] for d in draws], var)
        assert_values_equal(
            chain.get_stats("stat"), [s["stat"] for s in stats], meta.sample_stats[0]
        )

    def test_dtypes_exact_after_growth(self, backend):
        variables = [Variable(f"v_{dt}", dt, [2]) for dt in NUMERIC_DTYPES]
        meta = make_meta(variables)
        run, written = self.fill(backend, meta, self.many_draws)
        chain = self.chain_of(self.reopen(backend, run), 0)
        for var in variables:
            assert_values_equal(
                chain.get_draws(var.name), [d[var.name] for d in written[0][0]], var
            )

    def test_append_many_equals_appending_one_by_one(self, backend):
        variables = [
            Variable("a", "float32", [3]),
            Variable("i", "int16", []),
            Variable("s", "str", []),
            Variable("r", "float64", [-1]),
        ]
        stat_vars = [Variable("in_warmup", "bool", []), Variable("n", "int64", [])]
        meta = make_meta(variables, stat_vars)
        n = self.many_draws
        draws = random_draws(variables, n)
        stats = random_draws(stat_vars, n, seed=1)
        run = backend.init_run(meta)
        chain = run.init_chain(0)
        chain.append(draws[0], stats[0])
        # Per variable an array with a draw axis ("a"), or a list of draws (the others).
        columns: dict[str, list[np.ndarray] | np.ndarray]
        columns = {v.name: [d[v.name] for d in draws[1:]] for v in variables}
        columns["a"] = np.stack([d["a"] for d in draws[1:]])
        stat_columns = {
            "in_warmup": np.array([s["in_warmup"] for s in stats[1:]]),
            "n": [int(s["n"]) for s in stats[1:]],  # Python ints
        }
        chain.append_many(columns, stat_columns)
        assert len(chain) == n
        chain.append_many({v.name: [] for v in variables}, {v.name: [] for v in stat_vars})
        self.finish(run)
        chain = self.chain_of(self.reopen(backend, run), 0)
        for var in variables:
            assert_values_equal(chain.get_draws(var.name), [d[var.name] for d in draws], var)
        for var in stat_vars:
            assert_values_equal(chain.get_stats(var.name), [s[var.name] for s in stats], var)

    @pytest.mark.parametrize(
        ("draws", "stats", "error", "match"),
        [
            ({"a": [[1.0, 2.0]] * 2, "i": [1, 2, 3]}, [True] * 2, ValueError, "'i' has 3 values"),
            ({"a": [[1.0, 2.0]] * 2, "i": [1, 2.5]}, [True] * 2, TypeError, "'i' has dtype"),
            ({"a": [[1.0, 2.0, 3.0]] * 2, "i": [1, 2]}, [True] * 2, ValueError, "'a' have shape"),
            ({"a": [[1.0, 2.0]] * 2, "i": [1, 2**40]}, [True] * 2, ValueError, "out of range"),
            ({"a": [[1.0, 2.0]] * 2}, [True] * 2, ValueError, "lack values for \\['i'\\]"),
            ({"a": [[1.0, 2.0]] * 2, "i": [1, 2], "x": [1, 2]}, [True] * 2, KeyError, "'x'"),
            ({"a": [[1.0, 2.0]] * 2, "i": [1, 2]}, ["yes", "no"], TypeError, "'s' has dtype"),
        ],
    )
    def test_bad_batch_refused_and_nothing_lost(self, backend, draws, stats, error, match):
        meta, run, chain, before = self._run_with_data(backend)
        with pytest.raises(error, match=match):
            chain.append_many(draws, {"s": stats})
        assert len(chain) == 3
        chain.append_many({"a": [[5.0, 6.0]], "i": [7]}, {"s": [False]})
        self.finish(run)
        chain = self.chain_of(self.reopen(backend, run), 0)
        assert len(chain) == 4
        np.testing.assert_array_equal(chain.get_draws("i"), [d["i"] for d in before] + [7])
        np.testing.assert_array_equal(chain.get_stats("s"), [True, True, True, False])

    def test_stats_left_out_are_stored_as_missing(self, backend):
        """Samplers skip stats in some draws (PyMC's NUTS in a CompoundStep: model_logp)."""
        stat_vars = [
            Variable("f", "float32", [2]),
            Variable("i", "int64", []),
            Variable("b", "bool", []),
            Variable("s", "str", []),
            Variable("r", "float64", [-1]),
        ]
        meta = make_meta([Variable("a", "float64", [])], stat_vars)
        run = backend.init_run(meta)
        chain = run.init_chain(0)
        full = {"f": [1.0, 2.0], "i": 3, "b": True, "s": "x", "r": [1.0]}
        chain.append({"a": 0.0}, full)
        chain.append({"a": 1.0}, {"i": 4})
        chain.append({"a": 2.0})
        chain.append_many({"a": [3.0, 4.0]}, {"b": [True, False]})
        self.finish(run)
        chain = self.chain_of(self.reopen(backend, run), 0)
        f = chain.get_stats("f")
        np.testing.assert_array_equal(f[0], [1.0, 2.0])
        assert f.dtype == np.float32 and np.isnan(f[1:]).all()
        np.testing.assert_array_equal(chain.get_stats("i"), [3, 4, 0, 0, 0])
        np.testing.assert_array_equal(chain.get_stats("b"), [True, False, False, True, False])
        assert [str(s) for s in chain.get_stats("s")] == ["x", "", "", "", ""]
        assert [len(r) for r in chain.get_stats("r")] == [1, 0, 0, 0, 0]
        with pytest.raises(ValueError, match="lacks values for \\['a'\\]"):
            chain.append({}, full)  # draws are never filled in

    def test_values_are_copied_on_append(self, backend):
        """Samplers reuse their arrays: a stored draw never changes with the caller's array."""
        meta = make_meta([Variable("a", "float64", [2]), Variable("r", "int32", [-1])])
        run = backend.init_run(meta)
        chain = run.init_chain(0)
        a, r = np.zeros(2), np.zeros(3, dtype="int32")
        for i in range(3):
            a[:], r[:] = i, i
            chain.append({"a": a, "r": r})
        block = np.full((2, 2), 7.0)
        chain.append_many({"a": block, "r": [r, r]})
        block[:], r[:] = -1, -1
        self.finish(run)
        chain = self.chain_of(self.reopen(backend, run), 0)
        np.testing.assert_array_equal(
            chain.get_draws("a"), [[0, 0], [1, 1], [2, 2], [7, 7], [7, 7]]
        )
        assert [list(v) for v in chain.get_draws("r")] == [
            [0] * 3,
            [1] * 3,
            [2] * 3,
            [2] * 3,
            [2] * 3,
        ]

    @pytest.mark.parametrize("slc", [slice(None), slice(1, 4), slice(None, None, 2)])
    def test_values_read_are_copies(self, backend, slc):
        """Changing an array read never changes the stored draws (nor the next read)."""
        run = backend.init_run(make_meta([Variable("a", "float64", [2])]))
        chain = run.init_chain(0)
        values = np.arange(10.0).reshape(5, 2)
        chain.append_many({"a": values})
        chain.get_draws("a", slc)[:] = -1  # while the run is open (buffers held in memory)
        np.testing.assert_array_equal(chain.get_draws("a", slc), values[slc])
        self.finish(run)
        chain = self.chain_of(self.reopen(backend, run), 0)
        chain.get_draws("a", slc)[:] = -1
        np.testing.assert_array_equal(chain.get_draws("a", slc), values[slc])

    def test_dynamic_shapes_and_str(self, backend):
        variables = [
            Variable("ragged", "float64", [2, -1]),
            Variable("anydim", "int32", undefined_ndim=True),
            Variable("word", "str", []),
            Variable("words", "str", [-1]),
        ]
        meta = make_meta(variables, [Variable("warning", "str", [])])
        run, written = self.fill(backend, meta, 12)
        chain = self.chain_of(self.reopen(backend, run), 0)
        draws, stats = written[0]
        for var in variables:
            assert_values_equal(chain.get_draws(var.name), [d[var.name] for d in draws], var)
            for s in SLICES:
                assert_values_equal(
                    chain.get_draws(var.name, s), [d[var.name] for d in draws][s], var
                )
        got = chain.get_draws_at(4, ["ragged", "word"])
        np.testing.assert_array_equal(got["ragged"], draws[4]["ragged"])
        assert str(got["word"]) == str(draws[4]["word"])
        assert_values_equal(
            chain.get_stats("warning"), [s["warning"] for s in stats], meta.sample_stats[0]
        )

    @pytest.mark.parametrize("slc", SLICES, ids=str)
    def test_slicing(self, backend, slc):
        variables = [Variable("a", "float32", []), Variable("b", "uint16", [3])]
        meta = make_meta(variables, [Variable("s", "int64", [])])
        run, written = self.fill(backend, meta, 20)
        chain = self.chain_of(self.reopen(backend, run), 0)
        draws, stats = written[0]
        for var in variables:
            assert_values_equal(
                chain.get_draws(var.name, slc), [d[var.name] for d in draws][slc], var
            )
        assert_values_equal(
            chain.get_stats("s", slc), [s["s"] for s in stats][slc], meta.sample_stats[0]
        )

    def test_get_chains_and_len(self, backend):
        meta = make_meta([Variable("a", "float64", [])])
        run = backend.init_run(meta)
        for c, n in enumerate([3, 5]):
            chain = run.init_chain(c)
            for d in random_draws(meta.variables, n):
                chain.append(d)
        self.finish(run)
        reopened = self.reopen(backend, run)
        assert [len(c) for c in reopened.get_chains()] == [3, 5]
        assert [c.cmeta.chain_number for c in reopened.get_chains()] == [0, 1]

    # ---- ArviZ --------------------------------------------------------------------------

    @pytest.mark.parametrize(
        "warmup_stat", ["in_warmup", "sampler_0__in_warmup", "tune", "sampler_0__tune", None]
    )
    def test_to_inferencedata(self, backend, warmup_stat):
        stats = [Variable("energy", "float64", [])]
        if warmup_stat:
            stats.append(Variable(warmup_stat, "bool", []))
        meta = make_meta(
            [Variable("mu", "float64", [2], dims=["city"]), Variable("n", "int64", [])],
            stats,
            coordinates=[Coordinate("city", ndarray_from_numpy(np.array(["A", "B"])))],
            data=[DataVariable("y", ndarray_from_numpy(np.arange(3.0)), [], True)],
        )
        run = backend.init_run(meta)
        n_tune, n_draws = 4, 6
        expected = []
        for c in range(2):
            chain = run.init_chain(c)
            draws = random_draws(meta.variables, n_tune + n_draws, seed=c)
            for i, d in enumerate(draws):
                s = {"energy": float(i)}
                if warmup_stat:
                    s[warmup_stat] = i < n_tune
                chain.append(d, s)
            expected.append(draws)
        self.finish(run)
        run = self.reopen(backend, run)
        if warmup_stat is None:
            with pytest.warns(UserWarning, match="treating all draws as posterior"):
                dt = run.to_inferencedata()
            split = 0
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                dt = run.to_inferencedata()
            split = n_tune
        posterior = dt["posterior"].to_dataset()
        assert posterior["mu"].dims == ("chain", "draw", "city")
        assert list(posterior["city"].values) == ["A", "B"]
        assert posterior.sizes["draw"] == n_tune + n_draws - split
        # No empty groups: warm-up groups only with warm-up draws, no constant_data here.
        assert ("warmup_posterior" in dt.children) == bool(split)
        assert ("warmup_sample_stats" in dt.children) == bool(split)
        assert "constant_data" not in dt.children
        for c in range(2):
            want = np.stack([d["mu"] for d in expected[c]])
            np.testing.assert_array_equal(posterior["mu"].values[c], want[split:])
            if split:
                warmup = dt["warmup_posterior"].to_dataset()["mu"].values[c]
                np.testing.assert_array_equal(warmup, want[:split])
        assert posterior["n"].dtype == np.int64
        energy = dt["sample_stats"].to_dataset()["energy"]
        np.testing.assert_array_equal(energy.values[0], np.arange(split, 10))
        observed = dt["observed_data"].to_dataset()["y"]
        np.testing.assert_array_equal(observed.values, np.arange(3.0))
        assert dt.attrs["run_id"] == meta.rid

    def test_to_inferencedata_uneven_chains(self, backend):
        meta = make_meta([Variable("a", "float64", [])], [Variable("in_warmup", "bool", [])])
        run = backend.init_run(meta)
        for c, n in enumerate([5, 8]):
            chain = run.init_chain(c)
            for i, d in enumerate(random_draws(meta.variables, n, seed=c)):
                chain.append(d, {"in_warmup": i < 2})
        self.finish(run)
        run = self.reopen(backend, run)
        dt = run.to_inferencedata()
        assert dt["posterior"].sizes == {"chain": 2, "draw": 3}
        with pytest.raises(ValueError, match="vary in length"):
            run.to_inferencedata(equalize_chain_lengths=False)

    # ---- bad input ----------------------------------------------------------------------

    def _run_with_data(self, backend):
        meta = make_meta(
            [Variable("a", "float64", [2]), Variable("i", "int32", [])],
            [Variable("s", "bool", [])],
        )
        run = backend.init_run(meta)
        chain = run.init_chain(0)
        draws = random_draws(meta.variables, 3)
        for d in draws:
            chain.append(d, {"s": True})
        return meta, run, chain, draws

    @pytest.mark.parametrize(
        ("draw", "stats", "error", "match"),
        [
            ({"a": [1.0, 2.0], "i": 1, "zzz": 1.0}, {"s": True}, KeyError, "unknown names.*zzz"),
            ({"a": [1.0, 2.0]}, {"s": True}, ValueError, "lacks values.*'i'"),
            ({"a": [1.0, 2.0, 3.0], "i": 1}, {"s": True}, ValueError, "'a' has shape \\(3,\\)"),
            ({"a": [1.0, 2.0], "i": 1.5}, {"s": True}, TypeError, "'i' has dtype float64"),
            ({"a": [1.0, 2.0], "i": 2**40}, {"s": True}, ValueError, "out of range.*int32"),
            ({"a": ["x", "y"], "i": 1}, {"s": True}, TypeError, "'a' has dtype <U1"),
            ({"a": [1.0, 2.0], "i": 1}, {"s": "yes"}, TypeError, "'s' has dtype"),
            ({"a": [1.0, 2.0], "i": 1}, {"s": True, "t": 1}, KeyError, "stats has unknown.*'t'"),
        ],
    )
    def test_bad_draw_refused_and_nothing_lost(self, backend, draw, stats, error, match):
        meta, run, chain, draws = self._run_with_data(backend)
        with pytest.raises(error, match=match):
            chain.append(draw, stats)
        chain.append(draws[0], {"s": False})
        self.finish(run)
        chain = self.chain_of(self.reopen(backend, run), 0)
        assert len(chain) == 4
        assert_values_equal(
            chain.get_draws("a"), [d["a"] for d in [*draws, draws[0]]], meta.variables[0]
        )
        np.testing.assert_array_equal(chain.get_stats("s"), [True, True, True, False])

    def test_refused_draw_leaves_no_trace_in_any_column(self, backend):
        """A draw refused after some of its values passed (a later variable, or its stats)
        stores none of them: in fixed-shape, dynamic-shape and str columns alike, now or with
        the next draw appended."""
        variables = [
            Variable("a", "float32", [2]),
            Variable("r", "int32", [-1]),
            Variable("w", "str", []),
            Variable("i", "int64", []),
        ]
        stat_vars = [Variable("s", "float64", []), Variable("q", "int32", [-1])]
        meta = make_meta(variables, stat_vars)
        run = backend.init_run(meta)
        chain = run.init_chain(0)
        draws, stats = random_draws(variables, 2, seed=1), random_draws(stat_vars, 2, seed=2)
        chain.append(draws[0], stats[0])
        passing = {"a": np.full(2, 99, "float32"), "r": np.full(5, 99, "int32"), "w": "refused"}
        with pytest.raises(TypeError, match="'i' has dtype float64"):
            chain.append({**passing, "i": 1.5}, stats[1])
        with pytest.raises(TypeError, match="'q' has dtype <U1"):
            chain.append({**passing, "i": 7}, {"s": 1.0, "q": np.array(["x"])})
        chain.append(draws[1], stats[1])
        self.finish(run)
        chain = self.chain_of(self.reopen(backend, run), 0)
        assert len(chain) == 2
        for var in variables:
            assert_values_equal(chain.get_draws(var.name), [d[var.name] for d in draws], var)
        for var in stat_vars:
            assert_values_equal(chain.get_stats(var.name), [s[var.name] for s in stats], var)

    def test_bad_reads_refused(self, backend):
        _, run, chain, _ = self._run_with_data(backend)
        with pytest.raises(KeyError, match="Unknown variable 'nope'"):
            chain.get_draws("nope")
        with pytest.raises(KeyError, match="Unknown sample stat 'a'"):
            chain.get_stats("a")
        with pytest.raises(IndexError, match="out of range"):
            chain.get_draws_at(3, ["a"])
        with pytest.raises(KeyError, match="Unknown variable 's'"):
            chain.get_draws_at(0, ["s"])

    def test_chain_number_reused(self, backend):
        _, run, chain, _ = self._run_with_data(backend)
        with pytest.raises(ValueError, match="Chain 0 already exists"):
            run.init_chain(0)
        self.finish(run)
        assert len(self.chain_of(self.reopen(backend, run), 0)) == 3

    def test_rid_reused(self, backend):
        meta = make_meta([Variable("a", "float64", [])])
        backend.init_run(meta)
        with pytest.raises(ValueError, match="already exists"):
            backend.init_run(meta)

    @pytest.mark.parametrize(
        ("meta", "match"),
        [
            (RunMeta(rid="", variables=[Variable("a", "float64", [])]), "rid is empty"),
            (
                RunMeta(
                    rid="r", variables=[Variable("a", "float64", []), Variable("a", "int8", [])]
                ),
                "Duplicate variable name 'a'",
            ),
            (
                RunMeta(rid="r", variables=[Variable("a", "object", [])]),
                "Unsupported dtype 'object'",
            ),
            (
                RunMeta(rid="r", variables=[Variable("a", "float64", [2], dims=["x", "y"])]),
                "2 dims",
            ),
            (RunMeta(rid="r", variables=[Variable("", "float64", [])]), "empty name"),
            (
                RunMeta(
                    rid="r", variables=[Variable("a", "float64", [])], data=[DataVariable("x")]
                ),
                "data variable 'x' has no value",
            ),
        ],
    )
    def test_bad_meta_refused(self, backend, meta, match):
        with pytest.raises((ValueError, TypeError), match=match):
            backend.init_run(meta)

    # ---- hostile names and text ---------------------------------------------------------

    @pytest.mark.parametrize("name", HOSTILE_NAMES)
    @pytest.mark.parametrize("role", ["variable", "sample stat"])
    def test_hostile_names_refused_at_init_run_or_stored(self, backend, name, role):
        """A name is refused at ``init_run`` (a ValueError naming it) or stored and read back;
        never accepted and then failing every flush."""
        hostile = [Variable(name, "float64", [2]), Variable("ok", "int8", [])]
        plain = [Variable("plain", "float32", [])]
        meta = make_meta(*((hostile, plain) if role == "variable" else (plain, hostile)))
        try:
            run = backend.init_run(meta)
        except ValueError as ex:
            assert repr(name) in str(ex), ex
            assert meta.rid not in set(backend.get_runs().rid)
            return
        chain = run.init_chain(0)
        values = [np.array([i, -i / 3]) for i in range(3)]
        for i, value in enumerate(values):
            group = {name: value, "ok": i}
            chain.append(
                *((group, {"plain": 1.0}) if role == "variable" else ({"plain": 1.0}, group))
            )
        self.finish(run)
        chain = self.chain_of(self.reopen(backend, run), 0)
        read = chain.get_draws if role == "variable" else chain.get_stats
        np.testing.assert_array_equal(read(name), values)
        np.testing.assert_array_equal(read("ok"), [0, 1, 2])

    def test_lone_surrogates_refused_at_append(self, backend):
        """Text without a UTF-8 encoding (a lone surrogate) is refused at ``append`` and
        ``append_many``, in every kind of str value; the chain goes on."""
        meta = make_meta(
            [Variable("s", "str", []), Variable("g", "str", [2]), Variable("w", "str", [-1])],
            [Variable("t", "str", []), Variable("in_warmup", "bool", [])],
        )
        run = backend.init_run(meta)
        chain = run.init_chain(0)
        good = {"s": "ok", "g": ["x", "y"], "w": ["a"]}
        chain.append(good, {"t": "first", "in_warmup": False})
        bad = "a\ud800"
        cases: list[tuple[dict, dict, str]] = [
            ({**good, "s": bad}, {}, "s"),
            ({**good, "s": np.str_(bad)}, {}, "s"),
            ({**good, "g": np.array(["x", bad])}, {}, "g"),
            ({**good, "w": ["b", bad]}, {}, "w"),
            (good, {"t": bad}, "t"),
        ]
        for draw, stats, name in cases:
            with pytest.raises(ValueError, match=f"'{name}'.*surrogate"):
                chain.append(draw, stats)
            with pytest.raises(ValueError, match=f"'{name}'.*surrogate"):
                chain.append_many(
                    {k: [v, v] for k, v in draw.items()}, {k: [v, v] for k, v in stats.items()}
                )
        assert len(chain) == 1
        chain.append(good, {"t": "last", "in_warmup": False})
        self.finish(run)
        chain = self.chain_of(self.reopen(backend, run), 0)
        assert chain.get_stats("t").tolist() == ["first", "last"]
        assert chain.get_draws("s").tolist() == ["ok", "ok"]

    @pytest.mark.parametrize(
        "where", ["rid", "variable", "stat", "dims", "coordinate", "attribute", "data"]
    )
    def test_text_without_utf8_refused_at_init_run(self, backend, where):
        """Run ids, names, dims, labels and attributes that have no UTF-8 encoding (a lone
        surrogate) are refused at ``init_run``, before anything is stored."""
        bad = "x\udc80"

        def text(place: str, ok: str) -> str:
            return bad if where == place else ok

        meta = make_meta(
            [Variable(text("variable", "a"), "float64", [2], dims=[text("dims", "city")])],
            [Variable(text("stat", "s"), "bool", [])],
            coordinates=[
                Coordinate("city", ndarray_from_numpy(np.array(["A", text("coordinate", "B")])))
            ],
            data=[DataVariable(text("data", "y"), ndarray_from_numpy(np.ones(2)), [], True)],
            attributes={"sampler": mcb.ExtendedValue(string_value=text("attribute", "x"))},
        )
        meta.rid = text("rid", meta.rid)
        before = len(backend.get_runs())
        with pytest.raises(ValueError, match="surrogate"):
            backend.init_run(meta)
        assert len(backend.get_runs()) == before

    @pytest.mark.parametrize(
        "batch", ["abc", np.str_("abc"), b"abc"], ids=["str", "np.str_", "bytes"]
    )
    def test_bare_string_as_batch_refused(self, backend, batch):
        """A batch is a sequence of draws: ``append_many({"s": "abc"})`` is not three draws."""
        meta = make_meta([Variable("s", "str", [])], [Variable("t", "str", [])])
        run = backend.init_run(meta)
        chain = run.init_chain(0)
        with pytest.raises(TypeError, match="'s'.*sequence of draws"):
            chain.append_many({"s": batch}, {"t": ["x"] * 3})
        with pytest.raises(TypeError, match="'t'.*sequence of draws"):
            chain.append_many({"s": ["x"] * 3}, {"t": batch})
        assert len(chain) == 0
        chain.append_many({"s": ["abc"]}, {"t": ["t"]})
        self.finish(run)
        chain = self.chain_of(self.reopen(backend, run), 0)
        assert chain.get_draws("s").tolist() == ["abc"]

    def test_float_overflow_refused_like_int_overflow(self, backend):
        """A finite value that would become infinite in the declared float (or complex) dtype is
        refused, as an int that would wrap around is; inf and nan themselves are stored."""
        meta = make_meta(
            [Variable("h", "float16", []), Variable("f", "float32", [2])],
            [Variable("c", "complex64", [])],
        )
        run = backend.init_run(meta)
        chain = run.init_chain(0)
        good, stats = {"h": 1.0, "f": [1.0, 2.0]}, {"c": 1j}
        chain.append(good, stats)
        for draw, stat, name in [
            ({**good, "h": 1e6}, stats, "h"),
            ({**good, "h": 70000}, stats, "h"),
            ({**good, "h": np.float64(-1e5)}, stats, "h"),
            ({**good, "f": [1e39, 0.0]}, stats, "f"),
            ({**good, "f": np.array([0.0, -1e300])}, stats, "f"),
            (good, {"c": complex(0, 1e39)}, "c"),
        ]:
            with pytest.raises(ValueError, match=f"'{name}' is out of range"):
                chain.append(draw, stat)
            with pytest.raises(ValueError, match=f"'{name}' is out of range"):
                chain.append_many(
                    {k: [v, v] for k, v in draw.items()}, {k: [v, v] for k, v in stat.items()}
                )
        assert len(chain) == 1
        chain.append({"h": np.inf, "f": [np.nan, -np.inf]}, {"c": complex(np.inf, np.nan)})
        chain.append_many({"h": [65504.0, -np.inf], "f": [[3.4e38, np.nan]] * 2}, {"c": [0j, 1]})
        self.finish(run)
        chain = self.chain_of(self.reopen(backend, run), 0)
        np.testing.assert_array_equal(chain.get_draws("h"), [1.0, np.inf, 65504.0, -np.inf])
        np.testing.assert_array_equal(
            chain.get_draws("f"),
            np.array([[1, 2], [np.nan, -np.inf], [3.4e38, np.nan], [3.4e38, np.nan]], "float32"),
        )
        assert np.isinf(chain.get_stats("c")[1].real)

    # ---- coordinates of any kind --------------------------------------------------------

    def test_coordinates_of_any_kind(self, backend):
        """Coordinate labels of every kind PyMC models use come back equal, typed as xarray
        types them (PyMC keeps dates as a tuple of ``pd.Timestamp``)."""
        dates = pd.date_range("2024-01-01", periods=3)
        labels = {
            "date": np.array(tuple(dates), dtype=object),
            "datetime": np.array(["2024-01-01T12:00", "2024-02-01", "2025-01-01"], "M8[s]"),
            "name": np.array(["a", "β", ""]),
            "number": np.array([30, 10, 20]),
            "mixed": np.array(["a", 1, 2.5], dtype=object),
        }
        expected = {**labels, "date": dates.values}
        variables = [Variable(f"{name}_values", "float64", [3], dims=[name]) for name in labels]
        meta = make_meta(
            variables,
            [Variable("in_warmup", "bool", [])],
            coordinates=[Coordinate(n, ndarray_from_numpy(v)) for n, v in labels.items()],
        )
        run = backend.init_run(meta)
        chain = run.init_chain(0)
        for i in range(3):
            values = {f"{name}_values": np.full(3, float(i)) for name in labels}
            chain.append(values, {"in_warmup": i < 1})
        self.finish(run)
        run = self.reopen(backend, run)
        posterior = run.to_inferencedata()["posterior"].to_dataset()
        for name, want in expected.items():
            for got in (run.coords[name], posterior[name].values):
                assert got.dtype == want.dtype, (name, got.dtype, want.dtype)
                assert got.tolist() == want.tolist(), name
                assert [type(v) for v in got.tolist()] == [type(v) for v in want.tolist()]

    # ---- dtypes -------------------------------------------------------------------------

    @pytest.mark.parametrize("dtype", ["uint8", "uint16", "uint32", "uint64"])
    def test_unsigned_ints_accept_python_ints_lists_and_signed_arrays(self, backend, dtype):
        top = int(np.iinfo(dtype).max)
        meta = make_meta(
            [Variable("s", dtype, []), Variable("v", dtype, [3])], [Variable("n", dtype, [])]
        )
        run = backend.init_run(meta)
        chain = run.init_chain(0)
        chain.append({"s": 7, "v": [0, 1, top]}, {"n": top})
        chain.append({"s": np.int64(5), "v": np.array([1, 2, 3], dtype=np.int64)}, {"n": 0})
        chain.append_many(
            {"s": [1, 2], "v": np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int32)}, {"n": [3, 4]}
        )
        for draw, stats in [
            ({"s": -1, "v": [0, 0, 0]}, {"n": 0}),
            ({"s": 0, "v": np.array([-1, 0, 0])}, {"n": 0}),
            ({"s": 0, "v": [0, 0, 0]}, {"n": top + 1}),
        ]:
            with pytest.raises(ValueError, match="out of range"):
                chain.append(draw, stats)
        with pytest.raises(ValueError, match="out of range"):
            chain.append_many({"s": np.array([1, -2]), "v": np.zeros((2, 3), int)}, {"n": [0, 0]})
        self.finish(run)
        chain = self.chain_of(self.reopen(backend, run), 0)
        assert chain.get_draws("s").dtype == chain.get_stats("n").dtype == np.dtype(dtype)
        assert chain.get_draws("s").tolist() == [7, 5, 1, 2]
        assert chain.get_draws("v").tolist() == [[0, 1, top], [1, 2, 3], [1, 2, 3], [4, 5, 6]]
        assert chain.get_stats("n").tolist() == [top, 0, 3, 4]

    def test_fixed_shape_str_reads_as_unicode_arrays(self, backend):
        """As published mcbackend returns them: ``<U`` arrays of the declared shape."""
        meta = make_meta(
            [Variable("word", "str", []), Variable("grid", "str", [2, 2])],
            [Variable("label", "str", []), Variable("in_warmup", "bool", [])],
        )
        run = backend.init_run(meta)
        chain = run.init_chain(0)
        grids = [np.array([["a", "bb"], ["", "δ"]]), np.array([["x", "y"], ["z", "long word"]])]
        chain.append({"word": "one", "grid": grids[0]}, {"label": "α", "in_warmup": False})
        chain.append({"word": "two", "grid": grids[1].tolist()}, {"label": "", "in_warmup": False})
        self.finish(run)
        run = self.reopen(backend, run)
        chain = self.chain_of(run, 0)
        words, grid, labels = (
            chain.get_draws("word"),
            chain.get_draws("grid"),
            chain.get_stats("label"),
        )
        assert (words.dtype.kind, words.shape, words.tolist()) == ("U", (2,), ["one", "two"])
        assert (grid.dtype.kind, grid.shape) == ("U", (2, 2, 2))
        np.testing.assert_array_equal(grid, np.stack(grids))
        assert (labels.dtype.kind, labels.tolist()) == ("U", ["α", ""])
        at = chain.get_draws_at(1, ["grid", "word"])
        assert at["grid"].dtype.kind == "U" and at["grid"].shape == (2, 2)
        assert at["word"].dtype.kind == "U" and at["word"].shape == () and at["word"] == "two"
        assert chain.get_draws("grid", slice(5, 9)).shape == (0, 2, 2)
        posterior = run.to_inferencedata()["posterior"]
        assert posterior["grid"].dtype.kind == "U"
        assert posterior["grid"].dims == ("chain", "draw", "grid_dim_0", "grid_dim_1")
        np.testing.assert_array_equal(posterior["grid"].values[0], np.stack(grids))

    @pytest.mark.parametrize(
        "dtype",
        ["datetime64[ns]", "timedelta64[s]", np.dtype("longdouble").name, "object", "S5", "V8"],
    )
    @pytest.mark.parametrize("role", ["variable", "sample stat"])
    def test_unstorable_dtypes_refused_at_init_run(self, backend, dtype, role):
        bad = [Variable("bad", dtype, [])]
        ok = [Variable("ok", "float64", [])]
        meta = make_meta(*((bad, ok) if role == "variable" else (ok, bad)))
        with pytest.raises(TypeError, match=f"Unsupported dtype '{re.escape(dtype)}'"):
            backend.init_run(meta)
        assert meta.rid not in set(backend.get_runs().rid)

    # ---- listing and opening runs -------------------------------------------------------

    def test_get_runs_is_a_dataframe_indexed_by_rid(self, backend):
        metas = [make_meta([Variable("a", "float64", [])]) for _ in range(2)]
        for meta in metas:
            backend.init_run(meta)
        runs = backend.get_runs()
        assert isinstance(runs, pd.DataFrame)
        assert {"rid", "created_at", "meta", "proto"} <= set(runs.columns)
        for meta in metas:
            assert runs.loc[meta.rid, "rid"] == meta.rid
            assert runs.loc[meta.rid, "meta"].variables == meta.variables

    def test_get_run_of_unknown_rid_raises_run_not_found(self, backend):
        with pytest.raises(mcb.RunNotFoundError):
            backend.get_run("no_such_run_42")
