#!/usr/bin/env bash
# Create .venv at the repository root with Python 3.10 and install neurokd with its dev and ray
# extras, unless it is already there and up to date with pyproject.toml. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

stamp=.venv/.neurokd-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi

find_python() {
    for cand in "${PYTHON:-}" python3.10 "$HOME/.pyenv/versions/3.10.13/bin/python3.10" python3 python; do
        [ -n "$cand" ] || continue
        if command -v "$cand" >/dev/null 2>&1 &&
           "$cand" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' 2>/dev/null; then
            echo "$cand"; return 0
        fi
    done
    return 1
}

if [ ! -x .venv/bin/python ]; then
    py=$(find_python) || {
        echo "setup: Python 3.10 not found (lava-nc 0.10 and lava-dl 0.6 need it); set PYTHON=/path/to/python3.10" >&2
        exit 1
    }
    echo "setup: creating .venv with $py" >&2
    "$py" -m venv .venv
fi
echo "setup: installing neurokd and its dependencies into .venv (first time: a few minutes)" >&2
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev,ray]"
echo "$want" > "$stamp"
