"""The format registry: built-in formats, and a third-party backend found through a real
entry point (a ``*.dist-info`` with ``entry_points.txt`` on ``sys.path``)."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

import mcbackend as mcb
from mcbackend import registry
from mcbackend.backends.parquet import ParquetBackend
from mcbackend.backends.zarr import ZarrBackend
from mcbackend.meta import RunMeta

PLUGIN = '''
import mcbackend as mcb
from mcbackend.backends.zarr import ZarrBackend


class TinyBackend(ZarrBackend):
    """A file format of its own (runs marked "tinyfmt"), stored like Zarr."""

    format = "tinyfmt"


class MemoryUrlBackend(mcb.NumPyBackend):
    """A backend with URLs of its own: memurl://<name>[/<rid>]."""

    roots = {}

    @classmethod
    def open_root_url(cls, url, storage_options=None, **options):
        name = url.removeprefix("memurl://").split("/")[0]
        return cls.roots.setdefault(name, cls())

    @classmethod
    def open_run_url(cls, url, storage_options=None, **options):
        root, rid = url.removeprefix("memurl://").split("/")
        return cls.open_root_url(f"memurl://{root}").get_run(rid)
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """Installs package ``mcb_plugin`` with two entry points in group ``mcbackend.backends``."""
    (tmp_path / "mcb_plugin").mkdir()
    (tmp_path / "mcb_plugin" / "__init__.py").write_text(PLUGIN)
    info = tmp_path / "mcb_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mcb-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        textwrap.dedent("""
        [mcbackend.backends]
        tinyfmt = mcb_plugin:TinyBackend
        memurl = mcb_plugin:MemoryUrlBackend
        zarr = mcb_plugin:TinyBackend
        """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.refresh()
    yield
    registry.refresh()


def test_builtin_formats():
    assert registry.format_names()[:3] == ["zarr", "parquet", "clickhouse"]
    assert registry.backend_class("parquet") is ParquetBackend
    with pytest.raises(KeyError, match="no-such-format.*known formats: zarr, parquet"):
        registry.backend_class("no-such-format")


def test_open_backend_by_prefix(tmp_path):
    assert isinstance(mcb.open_backend(f"parquet+{tmp_path}"), ParquetBackend)
    assert isinstance(mcb.open_backend(f"zarr+{tmp_path}"), ZarrBackend)
    assert isinstance(mcb.open_backend(str(tmp_path / "a+b")), ZarrBackend)  # a path with '+'


def test_entry_point_backend_is_found(plugin, tmp_path):
    assert "tinyfmt" in registry.format_names()
    assert registry.backend_class("zarr") is ZarrBackend  # built-ins are not replaced

    backend = mcb.open_backend(f"tinyfmt+{tmp_path}")
    assert type(backend).__name__ == "TinyBackend"
    meta = RunMeta(rid="plug", variables=[mcb.Variable("x", "float64", [])])
    chain = backend.init_run(meta).init_chain(0)
    chain.append({"x": np.float64(1.5)})
    chain.close()

    run = mcb.open_run(str(tmp_path / "plug"))
    assert type(run).__name__ in ("ZarrRun", "ZarrV2Run")  # the layout its marker names
    assert type(run).__module__.startswith("mcbackend.backends.zarr.")
    assert run.get_chains()[0].get_draws("x").tolist() == [1.5]
    assert mcb.open_backend(f"tinyfmt+{tmp_path}").get_runs().index.tolist() == ["plug"]
    assert mcb.open_backend(f"zarr+{tmp_path}").get_runs().empty  # marked tinyfmt, not zarr


def test_entry_point_backend_with_its_own_urls(plugin):
    backend = mcb.open_backend("memurl://space")
    assert type(backend).__name__ == "MemoryUrlBackend"
    chain = backend.init_run(
        RunMeta(rid="r1", variables=[mcb.Variable("y", "int32", [])])
    ).init_chain(0)
    chain.append({"y": np.int32(7)})
    run = mcb.open_run("memurl://space/r1")
    assert run.get_chains()[0].get_draws("y").tolist() == [7]


def test_unknown_format_in_marker(tmp_path):
    backend = ZarrBackend(str(tmp_path))
    backend.init_run(RunMeta(rid="odd", variables=[mcb.Variable("x", "float64", [])]))
    marker = tmp_path / "odd" / "mcbackend.json"
    marker.write_text(marker.read_text().replace('"zarr"', '"nosuch"'))
    with pytest.raises(mcb.RunNotFoundError, match="unknown format 'nosuch'"):
        mcb.open_run(str(tmp_path / "odd"))


def test_batching_knob_is_flush_every_everywhere(tmp_path):
    """``flush_every``/``flush_seconds`` name the batching knob of every backend; the old
    ClickHouse and TraceBackend names still work, with a DeprecationWarning."""
    import inspect

    from mcbackend.backends.clickhouse import ClickHouseBackend
    from mcbackend.deprecation import renamed

    for cls in (ZarrBackend, ParquetBackend, ClickHouseBackend):
        assert {"flush_every", "flush_seconds"} <= set(inspect.signature(cls).parameters)
    with pytest.warns(DeprecationWarning, match="'insert_every' is deprecated; use 'flush_every'"):
        assert renamed("insert_every", "flush_every", 8, 100, 100) == 8
    with pytest.raises(TypeError, match="Pass 'flush_every' only"):
        renamed("insert_every", "flush_every", 8, 50, 100)
    assert renamed("insert_every", "flush_every", None, 50, 100) == 50
