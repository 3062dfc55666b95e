"""`benchmarks/gpu_check.py --smoke` runs every row's code path at toy size on the CPU and prints the table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # torch.compile of the toy networks on the CPU dominates (about a minute)

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


def test_smoke_prints_every_row_without_errors():
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke"], capture_output=True, text=True, env=env, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    table = [line for line in done.stdout.splitlines() if line.startswith("| (")]
    rows = [line.split("|")[1].strip() for line in table]
    assert rows == [
        "(a) engine RSLAD fp32",
        "(a) engine RSLAD bf16",
        "(a) engine RSLAD bf16 + channels_last",
        "(b) official-style loop RSLAD fp32",
        "(d) eval batch size: student cnn-tiny",
        "(d) eval batch size: teacher cnn-small",
        "(c) AutoAttack standard: our plugin",
        "(c) AutoAttack standard: pyautoattack direct",
        "(a) engine RSLAD bf16 + channels_last + compile",
    ], done.stdout
    assert not [line for line in table if "error:" in line or "skipped:" in line], done.stdout
    assert "engine fp32 / official = " in done.stdout and "250 (CPU default)" in done.stdout
    assert done.stdout.startswith("machine: ")
