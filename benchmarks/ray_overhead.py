"""Per-cell scheduling overhead of the Ray executor against the local loop (goal: under 2 s per cell).

The same suite of trivial cells (digits, cnn-tiny, pgd-at, 1 epoch, PGD-2 on 8 test points: seconds each) runs
through the CLI with `--executor local` and with `--executor ray` on a Ray head of ONE CPU started here, so Ray
runs the cells one after another with one torch thread each, exactly like the local loop; the difference of
the two wall times divided by the number of cells is the per-cell overhead (task submission, worker processes
and their imports, the start/end bookkeeping; the driver's connection to Ray is included, spread over the cells).
Each pair runs A then B on fresh results folders (A B A B ...); printed: every pair, and the median with min and
max of the per-cell differences and of the ratios ray/local, with the machine and its load.

Run:  python benchmarks/ray_overhead.py [--cells 4] [--pairs 3]      (needs the `ray` extra)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_head(folder: Path) -> tuple[subprocess.Popen, str]:
    port, log = free_port(), folder / "head.log"
    # token authentication with this head's own token; the driver runs below inherit both variables
    (folder / "token").write_text(secrets.token_hex(32))
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(folder / "token"))
    with log.open("w") as out:
        head = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("ray")),
                "start",
                "--head",
                "--block",
                "--node-ip-address",
                "127.0.0.1",
                "--port",
                str(port),
                "--num-cpus",
                "1",
                "--disable-usage-stats",
                "--include-dashboard",
                "false",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    while "Ray runtime started" not in log.read_text():
        if head.poll() is not None:
            raise SystemExit(f"the Ray head did not start:\n{log.read_text()}")
        time.sleep(0.5)
    return head, f"127.0.0.1:{port}"


def run_suite(suite: Path, results: Path, extra: list[str]) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "rkdbench.cli", "run", str(suite), *TINY, "--results", str(results), "--json", *extra],
        capture_output=True,
        text=True,
        env=env,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    statuses = [c["status"] for c in json.loads(done.stdout)["cells"]]
    assert set(statuses) == {"finished"}, statuses
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=4)
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    print(
        f"machine: {platform.node()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f} at start; python {platform.python_version()}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        suite = folder / "trivial.toml"
        suite.write_text(
            f'[suite]\nname = "trivial"\nprotocol = "digits-linf"\nmethods = ["pgd-at"]\n'
            f'students = ["cnn-tiny"]\nseeds = {list(range(args.cells))}\n'
        )
        head, address = start_head(folder)
        try:
            diffs, ratios = [], []
            for pair in range(args.pairs):
                local = run_suite(suite, folder / f"local-{pair}", ["--executor", "local"])
                ray = run_suite(suite, folder / f"ray-{pair}", ["--executor", "ray", "--address", address])
                diffs.append((ray - local) / args.cells)
                ratios.append(ray / local)
                print(
                    f"pair {pair + 1}: local {local:.1f} s, ray {ray:.1f} s for {args.cells} cells: "
                    f"{diffs[-1]:+.2f} s per cell, ratio {ratios[-1]:.2f}",
                    flush=True,
                )
        finally:
            os.killpg(head.pid, signal.SIGTERM)
            head.wait(timeout=60)
    print(
        f"ray - local per cell: median {statistics.median(diffs):+.2f} s "
        f"(min {min(diffs):+.2f}, max {max(diffs):+.2f}) "
        f"over {args.pairs} pairs; goal < 2 s"
    )
    print(
        f"ratio ray / local (wall, {args.cells} cells): median {statistics.median(ratios):.2f} "
        f"(min {min(ratios):.2f}, max {max(ratios):.2f}); load average {os.getloadavg()[0]:.2f} at end"
    )


if __name__ == "__main__":
    main()
