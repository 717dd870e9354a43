#!/usr/bin/env bash
# Make a Prometheus server binary available for tests/deploy/test_dashboards.py, which
# starts its own throwaway server scraping a live gateway and runs every dashboard query.
# Idempotent: installs Debian's `prometheus` package only when the binary is missing.
# Prints the binary's path. Needs root (or sudo) for apt.
set -euo pipefail

find_prometheus() {
    command -v prometheus 2>/dev/null || { [ -x /usr/bin/prometheus ] && echo /usr/bin/prometheus; }
}

if ! find_prometheus >/dev/null; then
    SUDO=()
    if [ "$(id -u)" -ne 0 ]; then
        SUDO=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update -q >&2
    # Only the binary is wanted: no service is started, the tests run their own server.
    "${SUDO[@]}" apt-get install -y -q --no-install-recommends prometheus >&2
fi
find_prometheus
