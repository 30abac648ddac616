"""Opening a run does not import pydantic (betterproto2 would, for ~0.1 s), and betterproto2
still validates pydantic messages of other packages in the same process."""

import subprocess
import sys

import pytest


def run_python(code: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_open_run_and_metadata_round_trip_do_not_import_pydantic(tmp_path):
    pytest.importorskip("pydantic")  # installed with the dev tools: the case that costs
    pytest.importorskip("zarr")
    write = """
import sys, mcbackend as mcb
from mcbackend.meta import RunMeta, Variable
run = mcb.ZarrBackend(sys.argv[1]).init_run(RunMeta(rid="r", variables=[Variable("a", "float32", [3])]))
run.init_chain(0).append({"a": [1, 2, 3]}, {})
run.close()
"""
    run_python(write, str(tmp_path))
    read = """
import sys, mcbackend
from mcbackend.meta import RunMeta
run = mcbackend.open_run(sys.argv[1])
assert RunMeta().parse(bytes(run.meta)) == run.meta
assert run.get_chains()[0].get_draws("a").tolist() == [[1, 2, 3]]
print(sorted(m for m in sys.modules if m.split(".")[0] in ("pydantic", "pydantic_core")))
"""
    assert run_python(read, str(tmp_path / "r")) == "[]"


def test_pydantic_messages_of_other_packages_still_validate():
    pytest.importorskip("pydantic")
    code = """
import mcbackend, betterproto2, pydantic
from pydantic.dataclasses import dataclass
from mcbackend.meta import RunMeta

@dataclass(eq=False, repr=False)
class Other(betterproto2.Message):
    x: int = betterproto2.field(1, betterproto2.TYPE_INT32)

message = Other(x=1)
assert message._is_pydantic() and bytes(message) == b"\\x08\\x01"
message.x = "not a number"
try:
    bytes(message)
except pydantic.ValidationError:
    print("validated")
assert not RunMeta(rid="r")._is_pydantic()
"""
    assert run_python(code) == "validated"


def test_pydantic_imported_first_is_left_alone():
    pytest.importorskip("pydantic")
    code = """
import pydantic, betterproto2, mcbackend
print(betterproto2.pydantic is pydantic)
"""
    assert run_python(code) == "True"
