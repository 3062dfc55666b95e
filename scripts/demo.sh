#!/usr/bin/env bash
# Set up (see setup.sh) and run the embedded digits demo end to end.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="$(bash scripts/setup.sh | tail -n 1)"
exec "$VENV/bin/rkdbench" demo "$@"
