#!/usr/bin/env bash
# The main job: sample a small PyMC model into ./demo-runs (Zarr) and print its summary.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python examples/sample_to_zarr.py "$@"
