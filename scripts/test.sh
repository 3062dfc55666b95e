#!/usr/bin/env bash
# Set up (see setup.sh) and run the CPU test suite on pytest-xdist workers, one per CPU up to 4
# (RKDBENCH_TEST_WORKERS sets the number; 0 runs every test in this process). Each test uses one torch thread.
# --dist loadfile: a test file runs on one worker, so the tests of the one Ray head (tests/run/test_scale.py) and of
# the one Slurm node (tests/run/test_slurm.py) never run side by side, and a module fixture is set up once
# (`--dist loadgroup` with xdist_group marks does not group under pytest 9.2: pytest-xdist issue #1386).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="$(RKDBENCH_EXTRAS="${RKDBENCH_EXTRAS:-test,ray,server,slurm,dashboard}" bash scripts/setup.sh | tail -n 1)"
WORKERS="${RKDBENCH_TEST_WORKERS:-$("$VENV/bin/python" -c 'import os; print(min(4, len(os.sched_getaffinity(0))))')}"
exec "$VENV/bin/python" -m pytest -q -n "$WORKERS" --dist loadfile tests "$@"
