"""``mcbackend.testing`` as a backend author outside this project uses it.

``DictBackend`` below is written the way a third party would: only the public API
(``mcbackend.core``, ``mcbackend.meta``), draws kept as Python lists of copied arrays. It passes
the whole conformance suite by subclassing it.
"""

from __future__ import annotations

import datetime
import subprocess
import sys

import numpy as np
import pandas
import pytest

from mcbackend.core import Backend, Chain, Run, Section, VariableSpec, runs_dataframe
from mcbackend.errors import RunExistsError, RunNotFoundError
from mcbackend.meta import ChainMeta, RunMeta
from mcbackend.testing import BackendConformance


class DictChain(Chain):
    def __init__(self, cmeta: ChainMeta, rmeta: RunMeta) -> None:
        super().__init__(cmeta, rmeta)
        self._values: dict[Section, dict[str, list[np.ndarray]]] = {
            Section.DRAWS: {name: [] for name in self._variable_specs},
            Section.STATS: {name: [] for name in self._stat_specs},
        }

    def _append(self, draw: dict[str, np.ndarray], stats: dict[str, np.ndarray]) -> None:
        for section, values in ((Section.DRAWS, draw), (Section.STATS, stats)):
            for name, value in values.items():
                self._values[section][name].append(np.array(value, copy=True))

    def _get_values(self, spec: VariableSpec, slc: slice, *, section: Section) -> np.ndarray:
        selected = self._values[section][spec.name][slc]
        if spec.is_rigid:
            return np.array(selected, dtype=spec.dtype).reshape(len(selected), *spec.shape)
        out = np.empty(len(selected), dtype=object)
        out[:] = [np.array(v) for v in selected] if selected else []
        return out

    def __len__(self) -> int:
        return len(next(iter(self._values[Section.DRAWS].values()), []))


class DictRun(Run):
    def __init__(self, meta: RunMeta) -> None:
        super().__init__(meta)
        self._chains: dict[int, DictChain] = {}

    def _init_chain(self, chain_number: int) -> Chain:
        chain = self._chains[chain_number] = DictChain(
            ChainMeta(rid=self.meta.rid, chain_number=chain_number), self.meta
        )
        return chain

    def get_chains(self) -> list[Chain]:
        return [self._chains[n] for n in sorted(self._chains)]


class DictBackend(Backend):
    def __init__(self) -> None:
        self._runs: dict[str, DictRun] = {}
        self._created: dict[str, datetime.datetime] = {}

    def _init_run(self, meta: RunMeta) -> Run:
        if meta.rid in self._runs:
            raise RunExistsError(f"Run {meta.rid!r} already exists.")
        run = self._runs[meta.rid] = DictRun(meta)
        self._created[meta.rid] = datetime.datetime.now(datetime.UTC)
        return run

    def get_run(self, rid: str) -> Run:
        if rid not in self._runs:
            raise RunNotFoundError(f"No run {rid!r}.")
        return self._runs[rid]

    def get_runs(self) -> pandas.DataFrame:
        return runs_dataframe(
            {"rid": rid, "created_at": self._created[rid], "meta": run.meta}
            for rid, run in self._runs.items()
        )


class TestDictBackend(BackendConformance):
    """A third-party backend subclasses the suite and passes it."""

    many_draws = 300

    @pytest.fixture
    def backend(self) -> Backend:
        return DictBackend()


class BrokenDictChain(DictChain):
    """Loses the dtype of what it stores, as a careless backend would."""

    def _get_values(self, spec: VariableSpec, slc: slice, *, section: Section) -> np.ndarray:
        values = super()._get_values(spec, slc, section=section)
        return values.astype(float) if spec.is_rigid and spec.dtype.kind == "i" else values


def test_suite_catches_a_broken_backend(monkeypatch):
    """The suite asserts real behaviour: a backend that changes dtypes fails it."""
    monkeypatch.setattr(DictRun, "_init_chain", _broken_init_chain)
    suite = TestDictBackend()
    with pytest.raises(AssertionError):
        suite.test_dtypes_exact(DictBackend(), "int32")


def _broken_init_chain(run: DictRun, chain_number: int) -> Chain:
    chain = run._chains[chain_number] = BrokenDictChain(
        ChainMeta(rid=run.meta.rid, chain_number=chain_number), run.meta
    )
    return chain


def test_mcbackend_imports_without_pytest():
    """``import mcbackend`` never needs pytest (nor the optional backends' libraries);
    ``mcbackend.testing`` says plainly that it does."""
    code = (
        "import sys; sys.modules['pytest'] = None  # as if not installed\n"
        "import mcbackend\n"
        "assert not {'zarr', 'pyarrow', 'clickhouse_driver'} & set(sys.modules)\n"
        "import mcbackend.core, mcbackend.emcee\n"
        "try:\n"
        "    import mcbackend.testing\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "mcbackend.testing needs pytest: pip install pytest"
