#!/usr/bin/env bash
# Set up (see setup.sh) and run the CPU test suite on pytest-xdist workers, one per CPU up to 4
# (RKDBENCH_TEST_WORKERS sets the number; 0 runs every test in this process). Each test uses one torch thread, and
# the tests of the one Ray head or Slurm node run one after another on one worker (tests/conftest.py's groups).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="$(RKDBENCH_EXTRAS="${RKDBENCH_EXTRAS:-test,ray,server,slurm,dashboard}" bash scripts/setup.sh | tail -n 1)"
WORKERS="${RKDBENCH_TEST_WORKERS:-$("$VENV/bin/python" -c 'import os; print(min(4, len(os.sched_getaffinity(0))))')}"
exec "$VENV/bin/python" -m pytest -q -n "$WORKERS" --dist loadgroup tests "$@"
