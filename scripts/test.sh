#!/usr/bin/env bash
# Run the whole test suite: set up .venv, start ClickHouse, install Chromium, run pytest (the S3 server, moto's,
# is started by the tests on loopback). ClickHouse tests must run: a missing server fails them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/clickhouse.sh
bash scripts/browser.sh
export MCB_REQUIRE_CLICKHOUSE=1
export MCB_REQUIRE_BROWSER=1
exec .venv/bin/python -m pytest -n 2 "$@"
