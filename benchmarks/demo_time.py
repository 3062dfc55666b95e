"""Where the time of `rkdbench demo` goes: a cold demo (empty model dir, so the teacher is built; fresh results)
and a cached one (the teacher from the cold run; fresh results), each split into phases.

Run:  OMP_NUM_THREADS=1 python benchmarks/demo_time.py [--runs cold,cached] [--suite digits-quick] [--set K=V ...]

The demo runs in this process through the real CLI (`rkdbench demo`), with the harness's functions wrapped by
timers: teacher training, teacher validation (the per-epoch PGD-10 on the held-out split), teacher evaluation
per attack, and for every cell the same plus the specialization diagnostics and MLflow logging. Each phase is
timed exclusively (a nested phase's time is not counted twice) in wall seconds and in CPU seconds (user+sys of
this process). With one thread (torch.set_num_threads(1), set here) CPU time approximates the wall time of a
quiet machine; on a shared machine wall time is inflated by the others, CPU time much less so.

It also prints the cells' CPU seconds one by one and what the demo would take with W local workers running
cells side by side (one thread each, cells dealt longest-first onto the least loaded worker), a prediction from
the measured CPU seconds, not a measurement.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import tempfile
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import torch  # noqa: E402

import rkdbench.app.leaderboard as leaderboard_pipeline  # noqa: E402
import rkdbench.cli as cli  # noqa: E402
import rkdbench.evaluation.evaluate as evaluation  # noqa: E402
import rkdbench.run.loop as loop  # noqa: E402
import rkdbench.run.prepare as prepare  # noqa: E402
import rkdbench.run.selections as selections  # noqa: E402
import rkdbench.run.train as train  # noqa: E402
import rkdbench.tracking as tracking  # noqa: E402
import rkdbench.training.engine as engine  # noqa: E402


class PhaseClock:
    """Exclusive wall and CPU seconds per (context, phase); the innermost open phase gets the time."""

    def __init__(self) -> None:
        self.totals: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
        self.context = "setup"
        self._stack: list[list[float]] = []  # per open phase: [wall spent in children, cpu spent in children]

    @contextlib.contextmanager
    def phase(self, name: str):
        wall, cpu = time.perf_counter(), time.process_time()
        self._stack.append([0.0, 0.0])
        context = self.context
        try:
            yield
        finally:
            child_wall, child_cpu = self._stack.pop()
            spent_wall, spent_cpu = time.perf_counter() - wall, time.process_time() - cpu
            total = self.totals[(context, name)]
            total[0] += spent_wall - child_wall
            total[1] += spent_cpu - child_cpu
            if self._stack:
                self._stack[-1][0] += spent_wall
                self._stack[-1][1] += spent_cpu

    def wrap(self, owner, attribute: str, name, context: str | None = None) -> None:
        """Time every call of `owner.attribute` as phase `name` (a string, or a function of the call's args)."""
        original = getattr(owner, attribute)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            previous = self.context
            if context is not None:
                self.context = context(*args, **kwargs) if callable(context) else context
            try:
                with self.phase(name(*args, **kwargs) if callable(name) else name):
                    return original(*args, **kwargs)
            finally:
                self.context = previous

        setattr(owner, attribute, timed)


def instrument(clock: PhaseClock) -> None:
    clock.wrap(prepare, "build_teacher", "train", context="teacher")
    clock.wrap(loop, "run_cell", "train", context=lambda cell, *a, **k: f"cell {cell.variant}")
    clock.wrap(engine, "robust_accuracy", "validation (PGD-10 per epoch)")
    clock.wrap(evaluation, "attack_result", lambda model, protocol, spec, *a, **k: f"evaluation: {spec['attack']}")
    clock.wrap(evaluation, "predict", "evaluation: clean")
    clock.wrap(train, "specialization", "specialization diagnostics")
    clock.wrap(train, "load_splits", "data and models")
    clock.wrap(train, "load_teacher", "data and models")
    clock.wrap(selections, "load_teacher", "data and models")
    for method in (
        "create_run",
        "log_params",
        "log_metrics",
        "set_tags",
        "log_artifact",
        "finish",
        "find_run",
        "experiment_id",
        "mark_running",
        "check_reachable",
    ):
        clock.wrap(tracking.Tracker, method, "MLflow logging")
    clock.wrap(leaderboard_pipeline, "print_leaderboards", "leaderboard", context="leaderboard")


def one_demo(clock: PhaseClock, results: Path, model_dir: Path, suite: str, sets: list[str]) -> dict:
    clock.totals.clear()
    # `mlflow.set_tracking_uri` (the leaderboard calls it) exports MLFLOW_TRACKING_URI, which rkdbench honours: a
    # second demo in this process would otherwise record into the first one's store and skip every cell
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    args = ["demo", "--suite", suite, "--results", str(results), "--model-dir", str(model_dir)]
    args += [part for s in sets for part in ("--set", s)]
    wall, cpu = time.perf_counter(), time.process_time()
    with clock.phase("total"):
        try:
            cli.main(args)
        except SystemExit as exc:
            if exc.code not in (0, None):
                raise SystemExit(f"demo exited with {exc.code}") from None
    total_wall, total_cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "wall": total_wall,
        "cpu": total_cpu,
        "phases": {f"{c} | {p}": v for (c, p), v in clock.totals.items() if p != "total"}
        | {"other (CLI, setup, summary)": clock.totals[("setup", "total")]},
    }


def cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def schedule(seconds: list[float], workers: int) -> float:
    """Makespan of cells dealt longest-first onto the least loaded of `workers` single-thread workers."""
    loads = [0.0] * workers
    for s in sorted(seconds, reverse=True):
        loads[loads.index(min(loads))] += s
    return max(loads)


def report(name: str, run: dict) -> None:
    print(f"\n== {name} demo: {run['wall']:.0f}s wall, {run['cpu']:.0f}s CPU (user+sys, 1 thread) ==")
    print(f"{'context | phase':<64}{'CPU s':>9}{'wall s':>9}{'CPU %':>7}")
    for key, (wall, cpu) in sorted(run["phases"].items(), key=lambda kv: -kv[1][1]):
        if cpu >= 0.05 or wall >= 0.05:
            print(f"{key:<64}{cpu:>9.1f}{wall:>9.1f}{100 * cpu / run['cpu']:>6.0f}%")
    cells: dict[str, float] = defaultdict(float)
    for key, (_, cpu) in run["phases"].items():
        if key.startswith("cell "):
            cells[key.split(" | ")[0]] += cpu
    if cells:
        rest = run["cpu"] - sum(cells.values())
        print(
            "cells (CPU s): "
            + ", ".join(f"{c[5:]} {s:.0f}" for c, s in cells.items())
            + f"; everything else {rest:.0f}"
        )
        for workers in (1, 2, 3):
            predicted = rest + schedule(list(cells.values()), workers)
            print(
                f"  predicted with {workers} worker(s) side by side: ~{predicted:.0f}s"
                f" (from CPU seconds, assuming {workers} free cores)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="cold,cached", help="cold (build the teacher), cached, or both in order")
    parser.add_argument("--suite", default="digits-quick")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="protocol override, as in the CLI")
    parser.add_argument("--model-dir", default=None, help="teacher cache for the runs (default: a fresh temp dir)")
    parser.add_argument("--json", default=None, help="also write the measurements to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(
        f"machine: {cpu_model()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start; "
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)"
    )
    clock = PhaseClock()
    instrument(clock)
    measured = {}
    with tempfile.TemporaryDirectory(prefix="rkdbench-demo-time-") as tmp:
        model_dir = Path(args.model_dir) if args.model_dir else Path(tmp) / "models"
        for i, name in enumerate(args.runs.split(",")):
            if name == "cold" and any(model_dir.rglob("*.pt")):
                raise SystemExit(f"a cold run needs an empty model dir; {model_dir} holds checkpoints")
            measured[name] = one_demo(clock, Path(tmp) / f"results-{i}-{name}", model_dir, args.suite, args.sets)
            report(name, measured[name])  # each run's report as soon as it is measured
            if args.json:
                Path(args.json).write_text(json.dumps(measured, indent=2))
    print(
        f"\nload average {os.getloadavg()[0]:.2f} at the end (a value above 1 per core: a shared machine, wall "
        f"times inflated; compare CPU seconds)"
    )


if __name__ == "__main__":
    main()
