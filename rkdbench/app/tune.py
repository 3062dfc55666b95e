"""`rkdbench tune SUITE --budget N`: every (method, student, teacher) of the suite tuned with the same budget on the
validation split, then the selected configurations run as ordinary cells with the suite's seeds and the full
evaluation (`rkdbench.tuning.trials`). Checks every option and plans every study before anything is created (bad
input: one line, exit 2); `--dry-run` prints the studies, their spaces, the trials left to run and the predicted wall
time (calibrated where this device is, `cost.planning`); `--dashboard` serves optuna-dashboard on the study storage
on 127.0.0.1. Returns the exit code: 1 when a study was given up or a selected cell failed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import click

from ..errors import UserError
from ..run.options import CellOutcome, RunOptions

__all__ = ["TuneRequest", "tune_suite_request", "DASHBOARD_PORT"]

DASHBOARD_PORT = 8080


@dataclass(frozen=True)
class TuneRequest:
    """Everything `rkdbench tune` was asked: what `rkdbench run` takes (suite, `--set`, run options, executor and its
    options given on the command line, output, `--dry-run`), the study options (None: the protocol's `[tune]`), the
    study storage (None: `$RKDBENCH_STUDY_STORAGE`, else `<results>/optuna.db`) and the dashboard's."""

    suite: str | None
    sets: tuple[str, ...] = ()
    options: RunOptions = field(default_factory=RunOptions)
    executor: str = "local"
    executor_options: Mapping[str, Any] = field(default_factory=dict)
    executor_config: str | None = None
    budget: int | None = None
    sampler: str | None = None
    seed: int | None = None
    objective: str | None = None
    pruner: str | None = None
    study_storage: str | None = None
    quiet: bool = False
    as_json: bool = False
    dry_run: bool = False
    gpu_tflops: float | None = None
    dashboard: bool = False
    port: int = DASHBOARD_PORT


def tune_suite_request(request: TuneRequest) -> int:
    """Tune the suite (or with `dry_run`, plan it; with `dashboard`, serve its studies); returns the exit code."""
    from ..config import load_suite, parse_set
    from ..console import make_console
    from ..run.cells import expand_cells
    from ..run.executor import build_executor
    from ..tracking import Tracker
    from ..tuning.storage import Heartbeat, open_storage, shown_url, study_storage_url
    from ..tuning.trials import plan_studies, record_study, run_studies

    url = study_storage_url(request.options.results, request.study_storage)
    if request.dashboard:
        return _dashboard(url, request.port)
    if request.suite is None:
        raise UserError(
            "rkdbench tune: SUITE is required (a built-in suite name or a suite .toml), except with --dashboard"
        )
    executor = build_executor(request.executor, request.executor_options, request.executor_config)
    suite = load_suite(request.suite, parse_set(list(request.sets)))
    cells = expand_cells(suite)
    studies = plan_studies(
        suite,
        cells,
        budget=request.budget,
        sampler=request.sampler,
        seed=request.seed,
        objective=request.objective,
        pruner=request.pruner,
    )
    executor.check(cells, request.options)
    if request.dry_run:
        _print_plan(request, suite, studies, cells, url, executor.parallelism(cells, request.options))
        return 0
    import optuna

    optuna.logging.set_verbosity(
        optuna.logging.WARNING
    )  # its INFO lines (a study created, a trial told) are noise here
    heartbeat = Heartbeat.from_env()
    storage = open_storage(url, heartbeat)  # unreachable: one line, before the results store is touched
    console = make_console(request.quiet or request.as_json)
    options = replace(request.options, console=console)
    tracker = Tracker(options.results)
    plan = studies[0].plan
    if console is not None:
        console.print(
            f"suite {suite.name}: tuning {len(studies)} stud{'ies' if len(studies) != 1 else 'y'} under protocol "
            f"{suite.protocol.experiment_name}, {plan.budget} finished trials each on the validation split "
            f"(sampler {plan.identity.sampler}, seed {plan.identity.seed}, objective {plan.objective.metric}, "
            f"pruner {plan.identity.pruner}); studies in {shown_url(url)}"
        )
    started = time.perf_counter()
    results = run_studies(studies, executor, tracker, options, storage, url, heartbeat)
    opened = {result.study.name: _load(storage, result.study.name) for result in results if not result.error}
    for result in results:
        if result.error:
            continue
        record_study(result, opened[result.study.name], tracker, options)
        if console is not None:
            console.print(_selection_line(result))
    selected = [cell for result in results for cell in result.selected]
    outcomes = _run_selected(selected, executor, tracker, options)
    elapsed = time.perf_counter() - started
    from .run import print_summary, report_failures

    if console is not None and outcomes:
        print_summary(console, suite, outcomes, elapsed)
    if request.as_json:
        _echo_json(suite, results, outcomes, elapsed)
    for result in results:
        if result.error:
            click.echo(f"rkdbench: {result.error}", err=True)
    failed = report_failures(outcomes)
    return 1 if failed or any(result.error for result in results) else 0


def _load(storage: Any, name: str) -> Any:
    import optuna

    return optuna.load_study(study_name=name, storage=storage)


def _selection_line(result: Any) -> str:
    from ..tuning.study import split_params

    study, best = result.study, result.best
    protocol_set, method_set = split_params(best.params, study.plan.defaults)
    changed = {**protocol_set, **method_set}
    values = ", ".join(f"{k}={_short(v)}" for k, v in sorted(changed.items())) or "the official recipe (trial 0)"
    return (
        f"[bold]selected[/] {study.base.variant} / {study.base.student} / {study.base.teacher}: trial {best.number} "
        f"(Optuna's number), the best of {result.finished} finished ({study.plan.objective.metric} {best.value:.1%}): "
        f"{values}"
    )


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _run_selected(cells: list, executor: Any, tracker: Any, options: RunOptions) -> list[CellOutcome]:
    """The selected cells: those already FINISHED (a rerun, or trial 0 selected after `rkdbench run`) are reported as
    skipped without starting the executor; the others run through it."""
    from ..run.prepare import prepare
    from ..run.remote import cell_run

    outcomes: dict[int, CellOutcome] = {}
    pending = []
    for i, cell in enumerate(cells):
        run = cell_run(tracker, cell)
        if run is not None and run.info.status == "FINISHED":
            outcomes[i] = CellOutcome(cell, "skipped", run.info.run_id, dict(run.data.metrics))
        else:
            pending.append(i)
    if pending:
        for i, outcome in zip(pending, executor.run([cells[i] for i in pending], tracker, options, prepare)):
            outcomes[i] = outcome
    return [outcomes[i] for i in range(len(cells))]


def _echo_json(suite: Any, results: list, outcomes: list[CellOutcome], elapsed: float) -> None:
    from .run import suite_summary

    studies = [
        {
            "study": r.study.name,
            "budget": r.study.plan.budget,
            "finished": r.finished,
            "selected_trial": None if r.best is None else r.best.number,
            "selected_values": None if r.best is None else r.best.params,
            "best_value": None if r.best is None else r.best.value,
            "error": r.error,
        }
        for r in results
    ]
    summary = suite_summary(suite, outcomes, elapsed, studies=studies)
    click.echo(json.dumps(summary, indent=2, sort_keys=True, default=str))


def _finished_so_far(url: str, studies: list) -> dict[str, int]:
    """Finished trials per study in an existing storage, read without creating anything (a dry run)."""
    import optuna

    from ..tracking.store import sqlite_path
    from ..tuning.storage import open_storage
    from ..tuning.study import tally

    database = sqlite_path(url)
    if database is not None and not database.exists():
        return {}
    storage = open_storage(url)
    names = set(optuna.get_all_study_names(storage))
    return {
        s.name: tally(optuna.load_study(study_name=s.name, storage=storage).get_trials(deepcopy=False)).finished
        for s in studies
        if s.name in names
    }


def _print_plan(request: TuneRequest, suite: Any, studies: list, cells: list, url: str, parallelism: int) -> None:
    """The dry run: each study with its space, trial 0, the trials left and their predicted time, then the selected
    cells' predicted time and the total wall time over the executor's parallelism."""
    from ..cost.estimate import estimate_cell
    from ..cost.planning import format_seconds, plan_cells
    from ..tuning.storage import shown_url
    from .dry_run import echo_teacher_status, pricing

    protocol = suite.protocol
    priced = pricing(protocol, cells, request.gpu_tflops, request.options.device)
    dataset, sizes, tflops, architectures = priced.dataset, priced.sizes, priced.tflops, priced.architectures
    cards, target = priced.cards, priced.target
    bases = [s.base for s in studies]
    plans, calibration = plan_cells([*bases, *cells], request.options.model_dir, sizes, target) if sizes else ([], None)

    def seconds(i: int, cell: Any, train_only: bool) -> tuple[float | None, str]:
        """Predicted seconds of a cell (training only for a trial) and where the number comes from."""
        if not plans:
            return None, "none"
        if plans[i].prediction is not None:
            prediction = plans[i].prediction
            return (prediction.train if train_only else prediction.total), "calibration"
        cost = estimate_cell(cell, architectures, tuple(dataset.input_shape), dataset.num_classes, sizes, tflops)
        share = cost.train_tflop / (cost.train_tflop + cost.eval_tflop) if train_only else 1.0
        return cost.gpu_hours * 3600 * share, f"flops at {tflops:g} TFLOP/s"

    done = _finished_so_far(url, studies)
    echo = (lambda line: None) if request.as_json else click.echo
    echo(
        f"suite {suite.name}: {len(studies)} studies under protocol {protocol.experiment_name} (hash {protocol.hash}); "
        f"study storage {shown_url(url)}"
    )
    rows, trial_total, cell_total = [], 0.0, 0.0
    for i, study in enumerate(studies):
        plan = study.plan
        finished = min(done.get(study.name, 0), plan.budget)
        per_trial, source = seconds(i, study.base, train_only=True)
        left = plan.budget - finished
        trial_total += (per_trial or 0.0) * left
        space = ", ".join(f"{name} {plan.space[name]}" for name in sorted(plan.space)) or "(empty)"
        echo(f"  study {study.name}")
        echo(
            f"    {plan.identity.sampler} (seed {plan.identity.seed}), objective {plan.objective.metric}, pruner "
            f"{plan.identity.pruner}; {finished} of {plan.budget} trials finished, {left} to run"
            + (f", ~{format_seconds(per_trial)} each ({source})" if per_trial is not None else "")
        )
        echo(f"    space: {space}")
        echo(f"    trial 0 (official): {', '.join(f'{k}={_short(v)}' for k, v in sorted(plan.defaults.items()))}")
        rows.append(
            {
                "study": study.name,
                "method": study.base.method,
                "student": study.base.student,
                "teacher": study.base.teacher,
                "space": {name: dist.to_toml() for name, dist in plan.space.items()},
                "trial0": plan.defaults,
                "sampler": plan.identity.sampler,
                "seed": plan.identity.seed,
                "objective": plan.objective.metric,
                "pruner": plan.identity.pruner,
                "budget": plan.budget,
                "finished": finished,
                "to_run": left,
                "seconds_per_trial": per_trial,
                "source": source,
            }
        )
    for j, cell in enumerate(cells):
        cell_seconds, _ = seconds(len(bases) + j, cell, train_only=False)
        cell_total += cell_seconds or 0.0
    wall = (trial_total + cell_total) / max(parallelism, 1)
    echo(
        f"then the selected configurations: {len(cells)} cells (the suite's seeds, full evaluation), "
        f"~{format_seconds(cell_total)} at the official configurations' cost"
    )
    echo(
        f"predicted: trials {format_seconds(trial_total)} + cells {format_seconds(cell_total)}, wall time "
        f"~{format_seconds(wall)} with {parallelism} at once"
        + (f" on {calibration.identity['device']}" if calibration is not None and not calibration.empty else "")
        + ("; with --pruner asha, an upper bound (pruned trials stop early)" if plan.identity.pruner != "none" else "")
    )
    uncalibrated = sum(plan.prediction is None for plan in plans)
    if uncalibrated:
        echo(
            f"no calibration on {target.type} for {uncalibrated} of {len(plans)} cells: priced from FLOPs at "
            f"{tflops:g} sustained TFLOP/s (--gpu-tflops); `rkdbench calibrate {suite.name}` here measures them"
        )
    missing = echo_teacher_status(cards, request.options.model_dir, echo)
    if request.as_json:
        click.echo(
            json.dumps(
                {
                    "suite": suite.name,
                    "protocol": protocol.experiment_name,
                    "protocol_hash": protocol.hash,
                    "study_storage": shown_url(url),
                    "studies": rows,
                    "cells": len(cells),
                    "predicted_seconds": {"trials": trial_total, "cells": cell_total, "wall": wall},
                    "parallelism": parallelism,
                    "missing_teachers": missing,
                },
                indent=2,
                default=str,
            )
        )


def _dashboard(url: str, port: int) -> int:
    """Serve optuna-dashboard on the study storage, bound to 127.0.0.1 (loopback only), until Ctrl-C."""
    from ..tuning.storage import open_storage, shown_url

    try:
        import optuna_dashboard
    except ImportError:
        raise UserError(
            "--dashboard needs optuna-dashboard, which is not importable; pip install 'rkdbench[dashboard]'"
        ) from None
    storage = open_storage(url)
    click.echo(f"optuna-dashboard on http://127.0.0.1:{port} for {shown_url(url)} (Ctrl-C stops it)")
    optuna_dashboard.run_server(storage, host="127.0.0.1", port=port)
    return 0
