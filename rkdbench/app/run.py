"""Running a suite for `rkdbench run` and `rkdbench demo`: check the options, load the suite, then either price it
(`--dry-run`, rkdbench.app.dry_run) or say what it is evaluated on, run its cells, print the summary table (or a JSON
summary), the leaderboard when asked, and one line per failed cell. Returns the exit code: 1 when a cell failed.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import click

from ..errors import ConfigError
from ..run.options import RunOptions

__all__ = [
    "SuiteRequest",
    "run_suite_request",
    "parse_shard",
    "evaluation_line",
    "print_summary",
    "report_failures",
    "suite_summary",
]


@dataclass(frozen=True)
class SuiteRequest:
    """Everything `rkdbench run`/`demo` were asked, built once by the command and passed down as is: the suite (name
    or path) and its `--set` overrides, the run's `RunOptions` (stores, device, teacher builds, shard), the executor
    and the options given for it on the command line (the rest come from the settings file or its defaults), what
    to print, and `leaderboard_dir` (None: no leaderboard)."""

    suite: str
    sets: tuple[str, ...] = ()
    options: RunOptions = field(default_factory=RunOptions)
    executor: str = "local"
    executor_options: Mapping[str, Any] = field(default_factory=dict)
    executor_config: str | None = None
    quiet: bool = False
    as_json: bool = False
    dry_run: bool = False
    gpu_tflops: float | None = None
    leaderboard_dir: str | None = None


def parse_shard(value: str) -> tuple[int, int]:
    """`I/N` (1-based I) -> (I-1, N); cells are dealt round-robin so shards get a similar mix of methods."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", value)
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise ConfigError(f"--shard {value!r}: expected I/N with 1 <= I <= N, e.g. 1/2 and 2/2 on two machines")
    return int(match[1]) - 1, int(match[2])


def evaluation_line(suite) -> str:
    """What the suite's numbers are measured on, said before anything runs."""

    def described(entry) -> str:
        options = entry.options
        return " ".join(
            [
                entry.attack,
                *([str(options["version"])] if "version" in options else []),
                *([f"{options['steps']} steps"] if "steps" in options else []),
            ]
        )

    cfg = suite.protocol.eval
    attacks = ", ".join(f"{label} ({described(entry)})" for label, entry in cfg.attacks.items())
    points = f"the first {cfg.n_examples} test points (a fixed subset)" if cfg.n_examples else "every test point"
    return (
        f"suite {suite.name} under protocol {suite.protocol.experiment_name}: evaluated with clean, {attacks} on "
        f"{points}; checkpoints: {', '.join(cfg.selections)}"
    )


def run_suite_request(request: SuiteRequest) -> int:
    """Run (or with `dry_run`, price) the suite; returns the exit code (1 when a cell failed or was not logged)."""
    from ..config import load_suite, parse_set
    from ..console import make_console
    from ..run.cells import expand_cells
    from ..run.executor import build_executor, run_suite

    executor = build_executor(request.executor, request.executor_options, request.executor_config)
    suite = load_suite(request.suite, parse_set(list(request.sets)))
    index, count = request.options.shard
    if count > 1:
        click.echo(
            "rkdbench: note: --shard is deprecated: N plain `rkdbench run SUITE` processes on one --results "
            "store share the cells (or use --workers N)",
            err=True,
        )
    console = make_console(request.quiet or request.as_json)
    if request.dry_run:
        from .dry_run import DryRunRequest, print_dry_run

        print_dry_run(
            DryRunRequest(
                suite,
                expand_cells(suite)[index::count],
                request.options.model_dir,
                gpu_tflops=request.gpu_tflops,
                device=request.options.device,
                as_json=request.as_json,
                results=request.options.results,
            )
        )
        return 0
    options = replace(request.options, console=console)
    if console is not None:
        console.print(evaluation_line(suite))
    started = time.perf_counter()
    outcomes = run_suite(suite, options, executor)
    elapsed = time.perf_counter() - started
    if console is not None:
        print_summary(console, suite, outcomes, elapsed)
    if request.as_json:
        _echo_json_summary(options.results, suite, outcomes, elapsed)
    if request.leaderboard_dir is not None:
        from . import leaderboard as leaderboard_pipeline

        leaderboard_pipeline.print_leaderboards(
            leaderboard_pipeline.LeaderboardRequest(
                str(options.results),
                "terminal",
                protocol=suite.protocol.name,
                out=request.leaderboard_dir,
                only_hash=suite.protocol.hash,
                model_dir=str(options.model_dir),
                n_points=suite.protocol.eval.n_examples or None,
            )
        )
    return report_failures(outcomes)


def print_summary(console, suite, outcomes: list, elapsed: float) -> None:
    """One row per cell: variant, student, seed, teachers, status, clean accuracy and the accuracy the protocol
    ranks by (headed by its attack's name: AutoAttack for the built-in protocols), run id."""
    from rich.table import Table

    from ..attacks.traits import CLEAN, plugins_of, ranked_accuracy, ranked_column
    from ..tracking.schema import metric_key, selection_split

    specs, rank_by = suite.protocol.eval.attacks, suite.protocol.eval.rank_by
    plugins = plugins_of(specs)
    split = selection_split("last")
    clean = metric_key(split, CLEAN)
    ranked_name = (ranked_column(specs, rank_by, plugins) or ("", ""))[1]
    summary = Table(title=f"suite {suite.name}: {len(outcomes)} cells in {elapsed:.0f}s")
    for column in ("method / student / seed", "teacher", "status", "clean", ranked_name, "run"):
        summary.add_column(column, no_wrap=column == "run")
    for o in outcomes:  # the teacher's dataset/threat prefix is the protocol's: its name is enough here
        ranked = ranked_accuracy(o.metrics, specs, split, rank_by, plugins)
        summary.add_row(
            f"{o.cell.variant} / {o.cell.student} / seed {o.cell.seed}",
            " + ".join(t.rsplit("/", 1)[-1] for t in [o.cell.teacher, *o.cell.extra_teachers.values()]),
            o.status,
            f"{o.metrics[clean]:.1%}" if clean in o.metrics else "",
            f"{ranked[1]:.1%}" if ranked else "",
            o.run_id[:8],
        )
    console.print(summary)
    if suite.protocol.eval.n_examples:
        console.print(
            f"Evaluated on the first {suite.protocol.eval.n_examples} test points "
            f"(a fixed subset, set by suite {suite.name})."
        )


def suite_summary(suite, outcomes: list, elapsed: float, **extra: Any) -> dict[str, Any]:
    """What a `--json` run prints about a suite: its protocol, the seconds it took and one entry per cell (key,
    label, status, run id, metrics, error), plus the command's `extra` entries."""
    cells = [
        {"key": o.cell.key, "label": o.cell.label, "status": o.status, "run_id": o.run_id}
        | {"metrics": o.metrics, "error": o.error}
        for o in outcomes
    ]
    return {
        "suite": suite.name,
        "protocol": suite.protocol.experiment_name,
        "protocol_hash": suite.protocol.hash,
        "seconds": round(elapsed, 1),
        **extra,
        "cells": cells,
    }


def _echo_json_summary(results: str, suite, outcomes: list, elapsed: float) -> None:
    from ..tracking import Tracker
    from ..tracking.counting import ignored_duplicates

    ignored = ignored_duplicates(Tracker(results), suite.protocol.hash)
    click.echo(json.dumps(suite_summary(suite, outcomes, elapsed, ignored_runs=ignored), indent=2, sort_keys=True))


def report_failures(outcomes: list) -> int:
    """One stderr line per cell that failed or was not logged; the exit code (1 when there was one)."""
    failed = [o for o in outcomes if o.status in ("failed", "undelivered")]
    for o in failed:
        if o.status == "undelivered":
            click.echo(f"rkdbench: cell not logged: {o.cell.label}: {o.error}", err=True)
        else:
            click.echo(
                f"rkdbench: cell failed: {o.cell.label}: {o.error}"
                + (f" (traceback in run {o.run_id})" if o.run_id else ""),
                err=True,
            )
    return 1 if failed else 0
