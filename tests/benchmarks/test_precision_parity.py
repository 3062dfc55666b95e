"""`benchmarks/precision_parity.py --smoke` runs end to end on the CPU and prints its one table: a row per precision
with a positive median epoch time and accuracies in [0, 100], and the bf16 - fp32 row whose differences are the
rows' differences."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "precision_parity.py"


def test_precision_parity_smoke_prints_one_consistent_table():
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke"], capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("|")]
    assert lines[0] == "| precision | train s/epoch (median of runs) | clean | PGD-20 | AutoAttack |"
    rows = {cells[0]: cells[1:] for cells in ([c.strip() for c in line.strip("|").split("|")] for line in lines[2:])}
    assert list(rows) == ["fp32", "bf16", "bf16 - fp32"]
    accuracy = {}
    for precision in ("fp32", "bf16"):
        seconds, *accs = rows[precision]
        assert float(seconds) > 0
        accuracy[precision] = [float(a) for a in accs]
        assert all(0.0 <= a <= 100.0 for a in accuracy[precision])
    speed = re.fullmatch(r"speed-up x([\d.]+) \(min ([\d.]+), max ([\d.]+)\)", rows["bf16 - fp32"][0])
    assert speed and float(speed[2]) <= float(speed[1]) <= float(speed[3])
    deltas = [float(d) for d in rows["bf16 - fp32"][1:]]
    assert all(abs(d - (b - f)) <= 0.11 for d, b, f in zip(deltas, accuracy["bf16"], accuracy["fp32"]))  # rounding
    assert "2 alternated pairs" in done.stdout and "cpu" in done.stdout


def test_precision_parity_needs_a_gpu_without_smoke():
    if __import__("torch").cuda.is_available():
        pytest.skip("a CUDA device is present")
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "no CUDA device" in done.stderr
