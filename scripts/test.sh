#!/usr/bin/env bash
# Run the whole test suite: set up .venv, type-check mcbackend/ (mypy, config in pyproject.toml:
# a type error fails the run), start ClickHouse, install Chromium, run pytest (the S3 server,
# moto's, is started by the tests on loopback). ClickHouse tests must run: a missing server
# fails them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m mypy
bash scripts/clickhouse.sh
bash scripts/browser.sh
export MCB_REQUIRE_CLICKHOUSE=1
export MCB_REQUIRE_BROWSER=1
exec .venv/bin/python -m pytest -n 2 "$@"
