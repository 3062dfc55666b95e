#!/usr/bin/env bash
# Set up (see setup.sh) and run the CPU test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="$(RKDBENCH_EXTRAS="${RKDBENCH_EXTRAS:-test,ray,server,slurm,dashboard}" bash scripts/setup.sh | tail -n 1)"
exec "$VENV/bin/python" -m pytest -q tests "$@"
