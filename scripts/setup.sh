#!/usr/bin/env bash
# Create ./.venv with Python >= 3.12 and install mcbackend with every extra and the dev tools,
# pinned by scripts/constraints.txt (a known-good set; it also spares pip a long resolution).
# Idempotent: reinstalls only when pyproject.toml or the constraints changed.
set -euo pipefail
cd "$(dirname "$0")/.."

find_python() {
    for candidate in python3.12 python3.13 python3 /root/.pyenv/versions/3.12*/bin/python /root/.pyenv/versions/3.13*/bin/python /usr/bin/python3; do
        if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

if [ ! -x .venv/bin/python ]; then
    PY=$(find_python) || { echo "mcbackend needs Python >= 3.12; none found." >&2; exit 1; }
    echo "Creating .venv with $PY"
    "$PY" -m venv .venv
fi

stamp=.venv/.mcbackend-installed
want=$(cat pyproject.toml scripts/constraints.txt | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e ".[dev]" -c scripts/constraints.txt
    echo "$want" > "$stamp"
fi
