#!/usr/bin/env bash
# Make a Redis server binary available for the shared-state tests (tests/gateway/shared/),
# which start their own throwaway servers on loopback (a free port, no persistence, a temp dir),
# so that a test can stop one mid-traffic.
# Idempotent: installs Debian's `redis-server` package only when the binary is missing; no service
# is started. Prints the binary's path. Needs root (or sudo) for apt.
set -euo pipefail

find_redis() {
    command -v redis-server 2>/dev/null || { [ -x /usr/bin/redis-server ] && echo /usr/bin/redis-server; }
}

if ! find_redis >/dev/null; then
    SUDO=()
    if [ "$(id -u)" -ne 0 ]; then
        SUDO=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update -q >&2
    "${SUDO[@]}" apt-get install -y -q --no-install-recommends redis-server >&2
fi
find_redis
