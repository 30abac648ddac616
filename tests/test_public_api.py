"""The public surface: what ``import mcbackend`` offers, and what type checkers see of it."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import mcbackend as mcb

PACKAGE = Path(mcb.__file__).parent
REPO = PACKAGE.parent


def test_every_exported_name_resolves():
    """``__all__`` and the lazily loaded names agree: every exported name can be used."""
    missing = [name for name in mcb.__all__ if getattr(mcb, name, None) is None]
    assert not missing
    with pytest.raises(AttributeError, match="has no attribute 'ZarBackend'"):
        mcb.ZarBackend  # noqa: B018


def test_type_checkers_are_told_about_every_lazy_name():
    """Each name loaded on first use is imported for type checkers, from the same module."""
    tree = ast.parse(Path(mcb.__file__).read_text())
    typed = {
        alias.name: f"mcbackend.{stmt.module}"
        for node in tree.body
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
        for stmt in node.body
        if isinstance(stmt, ast.ImportFrom) and stmt.level == 1
        for alias in stmt.names
    }
    assert typed == mcb._LAZY


def test_version_comes_from_package_metadata():
    """The version is written once, in pyproject.toml; run attributes use the same."""
    assert mcb.__version__ == importlib.metadata.version("mcbackend")
    literal = re.compile(rf"[\"']{re.escape(mcb.__version__)}[\"']")
    copies = [p for p in PACKAGE.rglob("*.py") if literal.search(p.read_text())]
    assert not copies, f"hard-coded version in {copies}"


def test_no_unused_loggers():
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        for name in re.findall(r"^(\w+) = logging\.getLogger", text, flags=re.MULTILINE):
            assert f"{name}." in text, f"{path} defines logger {name} and never uses it"


@pytest.mark.slow
def test_type_checkers_see_lazily_exported_names(tmp_path):
    """``mcbackend.ZarrBackend``, ``open_run``, ... load on first use, yet mypy knows their types
    and flags misuse and misspelled names (the project's mypy config, its cache)."""
    snippet = tmp_path / "uses_mcbackend.py"
    snippet.write_text(
        "import mcbackend as mcb\n"
        "reveal_type(mcb.ZarrBackend)\n"
        "reveal_type(mcb.open_run)\n"
        "reveal_type(mcb.copy_run)\n"
        "reveal_type(mcb.ParquetBackend('runs').init_run)\n"
        "mcb.open_run(42)\n"
        "mcb.ZarBackend\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary", str(snippet)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = result.stdout
    lines = {}
    for line in out.splitlines():
        # By file name: mypy replays a cached result with the path it was first checked at.
        match = re.match(r".*/uses_mcbackend\.py:(\d+): (.*)", line)
        if match:
            lines.setdefault(int(match[1]), []).append(match[2])
    assert 2 in lines, result.stdout + result.stderr
    assert "mcbackend.backends.zarr.ZarrBackend" in lines[2][0]
    assert "def (url: str" in lines[3][0] and "-> mcbackend.core.Run" in lines[3][0]
    assert "mcbackend.core.Run" in lines[4][0]
    assert "(meta: mcbackend.pb.meta.RunMeta) -> mcbackend.core.Run" in lines[5][0]
    assert any('incompatible type "int"' in m for m in lines[6]), lines.get(6)
    assert any('has no attribute "ZarBackend"' in m for m in lines[7]), lines.get(7)


@pytest.mark.slow
def test_wheel_ships_type_information_and_the_testing_module(tmp_path):
    """The py.typed markers (the package's and the generated pb package's) and
    mcbackend.testing are in the built wheel, so users' type checkers and test suites see them."""
    source = tmp_path / "src"
    shutil.copytree(PACKAGE, source / "mcbackend", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "dist"), str(source)],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("mcbackend-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"mcbackend/py.typed", "mcbackend/pb/py.typed", "mcbackend/testing.py"} <= names
