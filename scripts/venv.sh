#!/usr/bin/env bash
# Make sure .venv exists with the package and its extras installed; print its python path.
# Finds a Python >= 3.12 on PATH or under pyenv, or says what to install.
set -euo pipefail
cd "$(dirname "$0")/.."

find_python() {
    local candidates=(python3.13 python3.12 python3)
    if command -v pyenv >/dev/null 2>&1; then
        local root; root=$(pyenv root)
        candidates+=("$root"/versions/3.1[2-9]*/bin/python3 "$root"/versions/3.[2-9][0-9]*/bin/python3)
    fi
    candidates+=(/usr/bin/python3.13 /usr/bin/python3.12 /usr/local/bin/python3.13 /usr/local/bin/python3.12)
    for py in "${candidates[@]}"; do
        if command -v "$py" >/dev/null 2>&1 || [ -x "$py" ]; then
            if "$py" -c 'import sys, venv; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then
                echo "$py"; return 0
            fi
        fi
    done
    return 1
}

if [ ! -x .venv/bin/python ]; then
    if ! py=$(find_python); then
        echo "error: amortized_rlddm needs Python >= 3.12 (BayesFlow 2.1 requires it) and none was found." >&2
        echo "Install one, e.g. 'pyenv install 3.12' or your system's python3.12 and python3.12-venv packages." >&2
        exit 1
    fi
    echo "creating .venv with $py ($("$py" --version))" >&2
    "$py" -m venv .venv
fi
stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "installing amortized_rlddm and its dependencies into .venv (first run takes a few minutes)" >&2
    .venv/bin/python -m pip install --quiet --upgrade pip >&2
    .venv/bin/python -m pip install --quiet -e ".[pymc,dev]" >&2
    touch "$stamp"
fi
echo "$PWD/.venv/bin/python"
