"""Every ```python snippet of README.md runs as written: each in its own process, in a fresh
directory, with what ``pip install mcbackend[...]`` installs."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).parents[1] / "README.md"


def python_snippets() -> list[tuple[int, str]]:
    """(line number, code) of each ```python block."""
    text = README.read_text(encoding="utf-8")
    return [
        (text.count("\n", 0, m.start()) + 1, m.group(1))
        for m in re.finditer(r"^```python\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    ]


SNIPPETS = python_snippets()


def test_readme_has_the_snippets_it_should():
    codes = [code for _, code in SNIPPETS]
    assert any("pm.sample(trace=trace)" in code for code in codes)  # the Quickstart
    assert any("NumPyBackend().init_run(meta)" in code for code in codes)


@pytest.mark.parametrize(("line", "code"), SNIPPETS, ids=[f"README.md:{n}" for n, _ in SNIPPETS])
def test_readme_snippet_runs_as_written(line, code, tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, f"README.md:{line} failed:\n{result.stderr[-4000:]}"


def test_pymc_extra_installs_what_the_default_progress_bar_imports():
    """PyMC 6.4's default progress bar (pm.sample with progressbar=True) imports matplotlib
    without declaring it; ``mcbackend[pymc]`` does, so the Quickstart works after
    ``pip install mcbackend[pymc]``."""
    progress = Path(importlib.util.find_spec("pymc").origin).parent / "progress_bar"
    imports_matplotlib = any("matplotlib" in f.read_text() for f in progress.glob("*.py"))
    requires = importlib.metadata.requires("mcbackend") or []
    pymc_extra = {
        re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].lower()
        for r in requires
        if re.search(r"""extra\s*==\s*["']pymc["']""", r)
    }
    assert "pymc" in pymc_extra
    if imports_matplotlib:
        assert "matplotlib" in pymc_extra
