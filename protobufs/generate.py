"""Compile the protobuf schemas into ``mcbackend/pb`` with betterproto2.

Run from anywhere: ``python protobufs/generate.py``; ``--check`` only reports whether the
committed code is up to date (exit code 1 if not). Needs ``betterproto2-compiler`` and
``grpcio-tools`` (the ``dev`` extra). The generated code is committed.
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGET = HERE.parent / "mcbackend" / "pb"
SCHEMAS = ["meta.proto", "npproto/ndarray.proto"]


def compile_schemas(out: Path) -> None:
    """Run protoc with the betterproto2 plugin that sits beside this interpreter."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    protoc = [sys.executable, "-m", "grpc_tools.protoc", f"-I{HERE}"]
    command = [*protoc, f"--python_betterproto2_out={out}", *SCHEMAS]
    subprocess.run(command, cwd=HERE, env=env, check=True)


def differences(generated: Path) -> list[str]:
    """Files that differ between a fresh compilation and the committed ``mcbackend/pb``."""
    fresh = {p.relative_to(generated): p.read_bytes() for p in generated.rglob("*") if p.is_file()}
    committed = {p.relative_to(TARGET): p.read_bytes() for p in TARGET.rglob("*.py")}
    committed |= {p.relative_to(TARGET): p.read_bytes() for p in TARGET.rglob("py.typed")}
    names = sorted(set(fresh) | set(committed))
    return [str(n) for n in names if fresh.get(n) != committed.get(n)]


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        compile_schemas(Path(tmp))
        if "--check" in sys.argv:
            stale = differences(Path(tmp))
            print(f"out of date: {stale}" if stale else "mcbackend/pb is up to date")
            return 1 if stale else 0
        shutil.rmtree(TARGET, ignore_errors=True)
        shutil.copytree(tmp, TARGET)
    print(f"Generated {sorted(str(p.relative_to(TARGET)) for p in TARGET.rglob('*.py'))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
