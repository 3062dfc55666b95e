"""Per-cell overhead of the Slurm executor against the local loop, on the Slurm this machine submits to.

The same suite of trivial cells (digits, cnn-tiny, pgd-at, 1 epoch, PGD-2 on 8 test points: seconds each) runs
through the CLI with `--executor local` and with `--executor slurm --array-parallelism 1`, so both run the cells
one after another with one torch thread each; the difference of the two wall times divided by the number of cells
is the per-cell overhead of the Slurm path (the held submission and its release, Slurm starting each task, each
task's Python importing torch, MLflow and rkdbench, the driver noticing the end at its next squeue poll).
`rkdbench.benchmarking.interleave` runs A then B, B then A, ... on fresh results folders and reports the median of
the pair ratios with min and max; every pair is printed with its per-cell difference. On the CI's single-node
Slurm (scripts/services.sh: scheduler passes every 2 s) scheduling waits are short; a busy cluster's queue adds
its own wait, which no executor can remove.

Run:  source scripts/services.sh && slurm_start      (or any Slurm whose sbatch is on PATH)
      python benchmarks/slurm_overhead.py [--cells 3] [--pairs 3] [--poll 2]      (needs the `slurm` extra)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from itertools import count
from pathlib import Path

from rkdbench.benchmarking import interleave, machine_line

TINY = [
    "--set",
    "train.epochs=1",
    "--set",
    "eval.n_examples=8",
    "--set",
    "train.val_pgd_steps=2",
    "--set",
    'eval.attacks={pgd={attack="pgd",steps=2,step_size=0.25}}',
    "--set",
    'eval.selections=["last"]',
]


def run_suite(suite: Path, results: Path, extra: list[str], poll: float) -> None:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "RKDBENCH_SLURM_POLL_SECONDS": str(poll),
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run(
        [sys.executable, "-m", "rkdbench.cli", "run", str(suite), *TINY, "--results", str(results), "--json", *extra],
        capture_output=True,
        text=True,
        env=env,
    )
    if done.returncode != 0:
        raise SystemExit(f"run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    statuses = [c["status"] for c in json.loads(done.stdout)["cells"]]
    assert set(statuses) == {"finished"}, statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=0, help="untimed runs of each before the pairs")
    parser.add_argument("--poll", type=float, default=2.0, help="the driver's squeue poll, seconds (default 10)")
    args = parser.parse_args()
    sinfo = subprocess.run(["sinfo", "-h", "-o", "%P %D %t"], capture_output=True, text=True)
    if sinfo.returncode != 0:
        raise SystemExit(f"no Slurm answers (sinfo: {sinfo.stderr.strip()}); start one: slurm_start")
    print(machine_line())
    print(f"slurm: {' / '.join(sinfo.stdout.split())}; load average {os.getloadavg()[0]:.2f} at start")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        suite = folder / "trivial.toml"
        suite.write_text(
            f'[suite]\nname = "trivial"\nprotocol = "digits-linf"\nmethods = ["pgd-at"]\n'
            f'students = ["cnn-tiny"]\nseeds = {list(range(args.cells))}\n'
        )
        runs = count()
        slurm = ["--executor", "slurm", "--array-parallelism", "1", "--time-limit", "30"]
        comparison = interleave(
            lambda: run_suite(suite, folder / f"slurm-{next(runs)}", slurm, args.poll),
            lambda: run_suite(suite, folder / f"local-{next(runs)}", ["--executor", "local"], args.poll),
            pairs=args.pairs,
            warmup=args.warmup,
            names=("slurm", "local"),
        )
    diffs = [(s.wall - b.wall) / args.cells for s, b in zip(comparison.a, comparison.b)]
    for i, (s, b, d) in enumerate(zip(comparison.a, comparison.b, diffs), 1):
        print(f"pair {i}: slurm {s.wall:.1f} s, local {b.wall:.1f} s for {args.cells} cells: {d:+.2f} s per cell")
    print(
        f"slurm - local per cell: median {statistics.median(diffs):+.2f} s (min {min(diffs):+.2f}, max "
        f"{max(diffs):+.2f}) over {args.pairs} pairs; driver poll {args.poll:g} s"
    )
    print(f"ratio slurm / local (wall, {args.cells} cells): {comparison.wall}")
    print(f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
