#!/usr/bin/env bash
# Install if needed, then run every test, the slow real-model ones included.
# Arguments go to pytest (e.g. -m "not slow" for the quick ones only).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
# Real servers the tests start: PostgreSQL (request log), Prometheus (dashboards) and Redis
# (shared state across replicas), Debian packages.
./scripts/postgres_for_tests.sh
./scripts/prometheus_for_tests.sh >/dev/null
./scripts/redis_for_tests.sh >/dev/null
.venv/bin/ruff check .
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
