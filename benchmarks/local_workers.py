"""Local workers on a small CPU machine: `digits-quick` with 2 worker processes of 1 torch thread each
(`--workers 2`, OMP_NUM_THREADS=1) against 1 worker of 2 threads (`--workers 1`, OMP_NUM_THREADS=2).

Run:  python benchmarks/local_workers.py [--repeats 3] [--model-dir DIR] [--set train.epochs=3 --set ...]
Each measurement is one `rkdbench run` of the suite on a fresh results folder (the teacher is built once first,
outside the timing). The two configurations alternate (A B A B ...); the script prints every run's wall time,
CPU time (user+sys of the run and its workers) and cells per hour, then the median of the pair ratios
(A cells/h over B cells/h) with min and max, and the machine (CPU count, load average: on a shared machine the
wall times are inflated, the CPU times less so).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEACHER = "digits/Linf/rkdbench-cnn-large"
CONFIGS = {"A: 2 workers x 1 thread": (["--workers", "2"], "1"), "B: 1 worker x 2 threads": (["--workers", "1"], "2")}


def rkdbench(args: list[str], threads: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the children) of one `rkdbench` command."""
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "rkdbench.cli", *args], env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="digits-quick")
    parser.add_argument("--repeats", type=int, default=3, help="A B pairs")
    parser.add_argument("--model-dir", default=None, help="A model dir that already holds the digits teacher.")
    parser.add_argument("--set", dest="sets", action="append", default=None, metavar="KEY=VALUE")
    options = parser.parse_args()
    sets = options.sets or ["train.epochs=3", "eval.n_examples=50"]
    overrides = [arg for value in sets for arg in ("--set", value)]
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, load average {os.getloadavg()}, "
        f"python {platform.python_version()}"
    )
    with tempfile.TemporaryDirectory() as folder:
        models = Path(folder) / "models"
        run = ["run", options.suite, *overrides, "--model-dir", str(models), "--quiet"]
        if options.model_dir:
            models = Path(options.model_dir)
            run = ["run", options.suite, *overrides, "--model-dir", str(models), "--quiet"]
        else:  # the suite's teacher, built once outside the timing
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "rkdbench.cli",
                    "teachers",
                    "build",
                    TEACHER,
                    "--model-dir",
                    str(models),
                    "--n-examples",
                    "50",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        cells = sum(
            1
            for line in subprocess.run(
                [sys.executable, "-m", "rkdbench.cli", *run, "--dry-run"], capture_output=True, text=True, check=True
            ).stdout.splitlines()
            if line.startswith("  ")
        )
        print(f"suite {options.suite} with {' '.join(overrides)}: {cells} cells per measurement")
        per_hour: dict[str, list[float]] = {name: [] for name in CONFIGS}
        for repeat in range(options.repeats):
            for name, (extra, threads) in CONFIGS.items():
                results = Path(folder) / f"results-{repeat}-{name[0]}"
                wall, cpu = rkdbench([*run, *extra, "--results", str(results)], threads)
                per_hour[name].append(cells / wall * 3600)
                print(
                    f"  pair {repeat + 1} {name}: {wall:7.1f} s wall, {cpu:7.1f} s CPU, "
                    f"{per_hour[name][-1]:6.1f} cells/h, load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
    a, b = (per_hour[name] for name in CONFIGS)
    ratios = [x / y for x, y in zip(a, b)]
    print(
        f"cells/hour ratio A/B (2x1 over 1x2), {len(ratios)} pairs: median {statistics.median(ratios):.2f}, "
        f"min {min(ratios):.2f}, max {max(ratios):.2f}"
    )


if __name__ == "__main__":
    main()
