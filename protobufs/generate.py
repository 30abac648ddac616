"""Compile the protobuf schemas into ``mcbackend/pb`` with betterproto2.

Run from anywhere: ``python protobufs/generate.py``. Needs ``betterproto2-compiler`` and
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


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        compile_schemas(Path(tmp))
        shutil.rmtree(TARGET, ignore_errors=True)
        shutil.copytree(tmp, TARGET)
    print(f"Generated {sorted(str(p.relative_to(TARGET)) for p in TARGET.rglob('*.py'))}")


if __name__ == "__main__":
    main()
