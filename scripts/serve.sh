#!/usr/bin/env bash
# Install if needed, then serve the embedded default fleet on http://127.0.0.1:8000/v1.
# Arguments go to `smallfleet serve` (e.g. --config fleet.yaml --port 9000).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
exec .venv/bin/smallfleet serve "$@"
