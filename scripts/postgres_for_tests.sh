#!/usr/bin/env bash
# Make the PostgreSQL server binaries available for the request log's tests
# (tests/gateway/request_log starts its own throwaway server with them).
# Idempotent: does nothing when pg_ctl is already installed. Needs root (or sudo) for apt.
set -euo pipefail

if command -v pg_ctl >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null; then
    exit 0
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    SUDO=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -q
"${SUDO[@]}" apt-get install -y -q --no-install-recommends postgresql
