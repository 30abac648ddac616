import numpy as np
import pandas as pd
import pytest

import mcbackend as mcb
from mcbackend.meta import Variable
from mcbackend.testing import BackendConformance, make_meta, random_draws


class TestNumPyBackend(BackendConformance):
    @pytest.fixture
    def backend(self):
        return mcb.NumPyBackend(preallocate=7)

    def test_get_run(self, backend):
        run = backend.init_run(make_meta([Variable("a", "float64", [])]))
        assert backend.get_run(run.meta.rid) is run
        with pytest.raises(KeyError, match="No run with id 'missing'"):
            backend.get_run("missing")

    def test_growth_from_zero_keeps_dtype(self):
        backend = mcb.NumPyBackend(preallocate=0)
        meta = make_meta([Variable("i", "int64", []), Variable("b", "bool", [3])])
        chain = backend.init_run(meta).init_chain(0)
        draws = random_draws(meta.variables, 50)
        for d in draws:
            chain.append(d)
        assert chain.get_draws("i").dtype == np.int64
        assert chain.get_draws("b").dtype == bool
        np.testing.assert_array_equal(chain.get_draws("i"), [d["i"] for d in draws])

    def test_returned_arrays_are_copies(self, backend):
        meta = make_meta([Variable("a", "float64", [2])])
        chain = backend.init_run(meta).init_chain(0)
        chain.append({"a": np.array([1.0, 2.0])})
        chain.get_draws("a")[0, 0] = 99
        chain.get_draws_at(0, ["a"])["a"][1] = 99
        np.testing.assert_array_equal(chain.get_draws("a"), [[1.0, 2.0]])

    def test_pymc_slicing_constructor(self):
        """PyMC builds ``mcb.backends.numpy.NumPyChain(cmeta, rmeta, preallocate=n)``."""
        meta = make_meta([Variable("a", "float64", [])])
        chain = mcb.backends.numpy.NumPyChain(mcb.ChainMeta(meta.rid, 0), meta, preallocate=3)
        chain.append({"a": 1.0})
        assert len(chain) == 1


class TestNullBackend:
    def test_keeps_stats_refuses_draws(self):
        backend = mcb.NullBackend()
        meta = make_meta([Variable("a", "float64", [2])], [Variable("energy", "float32", [])])
        run = backend.init_run(meta)
        chain = run.init_chain(0)
        for i in range(5):
            chain.append({"a": np.ones(2)}, {"energy": float(i)})
        assert len(chain) == 5
        np.testing.assert_array_equal(chain.get_stats("energy", slice(1, 3)), [1.0, 2.0])
        assert chain.get_stats("energy").dtype == np.float32
        with pytest.raises(RuntimeError, match="does not store draws"):
            chain.get_draws("a")
        with pytest.raises(RuntimeError, match="does not store draws"):
            chain.get_draws_at(0, ["a"])
        with pytest.raises(RuntimeError, match="no draws"):
            run.to_inferencedata()

    def test_validates_draws(self):
        chain = mcb.NullBackend().init_run(make_meta([Variable("a", "float64", [2])])).init_chain(0)
        with pytest.raises(ValueError, match="shape"):
            chain.append({"a": np.ones(3)})
        assert len(chain) == 0

    def test_refuses_what_no_backend_could_store(self):
        """The checks every backend makes at append: lone surrogates, float overflow, a bare
        string as a batch; at init_run: text without UTF-8."""
        meta = make_meta([Variable("h", "float16", [])], [Variable("t", "str", [])])
        chain = mcb.NullBackend().init_run(meta).init_chain(0)
        with pytest.raises(ValueError, match="'t'.*surrogate"):
            chain.append({"h": 1.0}, {"t": "\ud800"})
        with pytest.raises(ValueError, match="'h' is out of range"):
            chain.append({"h": 1e6}, {"t": "x"})
        with pytest.raises(TypeError, match="'t'.*sequence of draws"):
            chain.append_many({"h": [1.0, 2.0, 3.0]}, {"t": "abc"})
        assert len(chain) == 0
        with pytest.raises(ValueError, match="surrogate"):
            mcb.NullBackend().init_run(make_meta([Variable("\udc80", "float64", [])]))

    def test_get_runs_and_unknown_rid_as_every_backend(self):
        """``get_runs`` returns the DataFrame every backend returns; unknown ids raise."""
        backend = mcb.NullBackend()
        meta = make_meta([Variable("a", "float64", [])])
        backend.init_run(meta)
        runs = backend.get_runs()
        assert isinstance(runs, pd.DataFrame) and list(runs.index) == [meta.rid]
        assert runs.loc[meta.rid, "meta"] is not None and "created_at" in runs.columns
        with pytest.raises(mcb.RunNotFoundError):
            backend.get_run("nope")
