"""The `rkdbench` command line (click). Every bad input ends with one line on stderr and exit code 2;
a suite with failed cells exits 1 after its summary.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from pathlib import Path

import click

from .errors import ConfigError, UserError

__all__ = ["cli", "main"]

RESULTS_HELP = "Results folder: holds mlflow.db, artifacts and cell checkpoints."
MODEL_DIR_HELP = "Teacher checkpoints in RobustBench's layout (default: $RKDBENCH_MODEL_DIR or ~/.cache/rkdbench/models)."
DATA_DIR_HELP = ("Dataset files in torchvision's layout, e.g. cifar-10-batches-py/ (default: $RKDBENCH_DATA_DIR or "
                 "~/.cache/rkdbench/data; a protocol's data_root wins).")


# one worker: on 2 cores the demo meets its time goals serially (README); `--workers 2` was measured 1.21x
# faster on a short digits-quick, not worth two more processes importing torch on a first contact
DEMO_WORKERS = 1
LOG_WIDTH = 100  # tables printed to a log or pipe are laid out for this many columns


def _console(quiet: bool = False):
    """A rich Console; when stdout is not a terminal (a log, a pipe, CI) every message is one unwrapped line
    (greppable) and tables are laid out for LOG_WIDTH columns instead of rich's default 80."""
    from rich.console import Console

    if quiet:
        return None
    console = Console(highlight=False)
    return console if console.is_terminal else Console(highlight=False, soft_wrap=True, width=LOG_WIDTH)


def _model_dir(value: str | None) -> Path:
    from .teachers import default_model_dir

    return Path(value) if value else default_model_dir()


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="rkdbench")
@click.option("--plugins-dir", multiple=True, type=click.Path(file_okay=False),
              help="Load every *.py file in this folder as a plugin (repeatable).")
def cli(plugins_dir: tuple[str, ...]) -> None:
    """rkdbench: train students from robust teachers with any robust-KD method, attack them with
    AutoAttack under one protocol, track every run in MLflow, and read the leaderboard.

    Start with `rkdbench demo`; `rkdbench run SUITE --dry-run` shows what a suite would train.
    """
    from .plugins import load_plugins_dir

    for folder in plugins_dir:
        load_plugins_dir(folder)


def _print_dry_run(suite, cells, model_dir: Path, gpu_tflops: float | None, device: str | None = None,
                   as_json: bool = False) -> None:
    """The cells with their keys and estimated cost (measured wall time when this device is calibrated, else
    FLOPs at an assumed throughput), the total, and the teacher files that are missing."""
    from . import create
    from .cost import DEFAULT_GPU_TFLOPS, estimate_cell
    from .engine import pick_device
    from .planning import format_seconds, plan_cells, plan_json
    from .plugins import get_registry
    from .teachers import member_paths, missing_teacher_message, teacher_status

    protocol = suite.protocol
    dataset = get_registry().get("dataset", protocol.section("protocol")["dataset"]).obj
    sizes = getattr(dataset, "split_sizes", None)
    tflops = gpu_tflops or DEFAULT_GPU_TFLOPS
    teacher_ids = sorted({t for c in cells for t in [c.teacher, *c.extra_teachers.values()] if t != "none"})
    cards = {t: create("teacher", t) for t in teacher_ids}
    arch = {t: (card.architecture, tuple(sorted((k, tuple(v) if isinstance(v, list) else v)
                                                for k, v in card.arch_kwargs.items()))) for t, card in cards.items()}
    target = pick_device(device or protocol.section("train").get("device", "auto"))
    plans, calibration = plan_cells(cells, model_dir, sizes, target) if sizes is not None else ([], None)
    echo = (lambda line: None) if as_json else click.echo
    echo(f"suite {suite.name}: {len(cells)} cells under protocol {protocol.experiment_name} (hash {protocol.hash})")
    total, predicted, rows = 0.0, 0.0, []
    for i, cell in enumerate(cells):
        line, row = f"  {cell.key}  {cell.label}", {"key": cell.key, "label": cell.label}
        if sizes is not None:
            cost = estimate_cell(cell, arch, tuple(dataset.input_shape), dataset.num_classes, sizes, tflops)
            total += cost.gpu_hours
            line += (f"  [passes/example: student {cost.student_forward:g}f+{cost.student_backward:g}b, teacher "
                     f"{cost.teacher_forward:g}f+{cost.teacher_backward:g}b; {cost.train_tflop + cost.eval_tflop:,.0f} "
                     f"TFLOP; ~{cost.gpu_hours:.2f} GPU-h]")
            prediction = plans[i].prediction
            if prediction is not None:
                predicted += prediction.total
                line += (f"  predicted {format_seconds(prediction.total)} (train {format_seconds(prediction.train)}, "
                         f"eval {format_seconds(prediction.eval)})")
            row.update(gpu_hours=cost.gpu_hours, predicted_seconds=plan_json(plans[i], cost.gpu_hours),
                       passes={"student_forward": cost.student_forward, "student_backward": cost.student_backward,
                               "teacher_forward": cost.teacher_forward, "teacher_backward": cost.teacher_backward})
        echo(line)
        rows.append(row)
    calibrated = [p for p in plans if p.prediction is not None]
    if sizes is not None:
        echo(f"estimated total: ~{total:.1f} GPU-hours at {tflops:g} sustained TFLOP/s (--gpu-tflops; an order "
             f"of magnitude: AutoAttack priced for half the points staying robust)")
        if calibrated:
            assumed = sorted({f"{p.accuracy[0]:.0%} clean / {p.accuracy[1]:.0%} robust from {p.accuracy_from}"
                              for p in calibrated})
            echo(f"predicted wall time on {calibration.identity['device']} ({calibration.identity['threads']} threads, "
                 f"calibration {calibration.path}): {format_seconds(predicted)} for {len(calibrated)} of {len(cells)} "
                 f"cells; AutoAttack priced for {'; '.join(assumed)}; best-val counted as evaluated apart")
        if len(calibrated) < len(cells):
            echo(f"no calibration on {target.type} ({calibration.identity['device']}) for {len(cells) - len(calibrated)} "
                 f"cells: they fall back to the FLOP-based assumption; run `rkdbench calibrate {suite.name}` "
                 f"on this device to measure them")
    statuses = {t: teacher_status(cards[t], model_dir) for t in teacher_ids}  # hashes every file: once each
    missing = [t for t, status in statuses.items() if status != "present"]
    for t in missing:
        echo(f"teacher {statuses[t]}: " + (missing_teacher_message(cards[t], member_paths(cards[t], model_dir)[0])
                                           if statuses[t] == "missing" else f"{t}: {member_paths(cards[t], model_dir)}"))
    if not missing:
        echo(f"teachers: all {len(teacher_ids)} present in {model_dir}")
    if as_json:
        click.echo(json.dumps({"suite": suite.name, "protocol": protocol.experiment_name, "protocol_hash": protocol.hash,
                               "device": calibration.identity if calibration is not None else None,
                               "cells": rows, "total_gpu_hours": total,
                               "total_predicted_seconds": predicted if len(calibrated) == len(cells) else None,
                               "missing_teachers": missing}, indent=2))


def _evaluation_line(suite) -> str:
    """What the suite's numbers are measured on, said before anything runs."""
    def described(spec: dict) -> str:
        return " ".join([spec["attack"], *([str(spec["version"])] if "version" in spec else []),
                         *([f"{spec['steps']} steps"] if "steps" in spec else [])])

    cfg = suite.protocol.section("eval")
    attacks = ", ".join(f"{label} ({described(spec)})" for label, spec in cfg["attacks"].items())
    points = f"the first {cfg['n_examples']} test points (a fixed subset)" if cfg["n_examples"] else "every test point"
    return (f"suite {suite.name} under protocol {suite.protocol.experiment_name}: evaluated with clean, {attacks} on "
            f"{points}; checkpoints: {', '.join(cfg['selections'])}")


def _parse_shard(value: str) -> tuple[int, int]:
    """`I/N` (1-based I) -> (I-1, N); cells are dealt round-robin so shards get a similar mix of methods."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", value)
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise ConfigError(f"--shard {value!r}: expected I/N with 1 <= I <= N, e.g. 1/2 and 2/2 on two machines")
    return int(match[1]) - 1, int(match[2])


def _run_suite(suite_name: str, sets: tuple[str, ...], results: str, model_dir: str | None, build_teachers: bool,
               dry_run: bool, device: str | None, quiet: bool, leaderboard_dir: str | None,
               shard: str = "1/1", gpu_tflops: float | None = None, data_dir: str | None = None,
               as_json: bool = False, workers: int = 1, executor: str = "local", address: str | None = None) -> int:
    from .config import load_suite, parse_set
    from .run.cells import expand_cells
    from .run.executor import run_suite
    from .run.options import RunOptions

    if workers > 1 and executor != "local":
        raise ConfigError(f"--workers {workers} starts local worker processes; with --executor {executor} the "
                          f"protocol's [resources] (cpus_per_cell, gpus_per_cell) set how many cells run at once")
    suite = load_suite(suite_name, parse_set(list(sets)))
    index, count = _parse_shard(shard)
    if count > 1:
        click.echo("rkdbench: note: --shard is deprecated: N plain `rkdbench run SUITE` processes on one --results "
                   "store share the cells (or use --workers N)", err=True)
    console = _console(quiet or as_json)
    if dry_run:
        _print_dry_run(suite, expand_cells(suite)[index::count], _model_dir(model_dir), gpu_tflops, device, as_json)
        return 0
    options = RunOptions(results=Path(results), model_dir=_model_dir(model_dir), build_teachers=build_teachers,
                         device=device, console=console, shard=(index, count), workers=workers,
                         data_dir=Path(data_dir) if data_dir else None, executor=executor, address=address)
    if console is not None:
        console.print(_evaluation_line(suite))
    started = time.perf_counter()
    outcomes = run_suite(suite, options)
    elapsed = time.perf_counter() - started
    failed = [o for o in outcomes if o.status in ("failed", "undelivered")]
    if console is not None:
        from rich.table import Table

        summary = Table(title=f"suite {suite.name}: {len(outcomes)} cells in {elapsed:.0f}s")
        for column in ("method / student / seed", "teacher", "status", "clean", "AutoAttack", "run"):
            summary.add_column(column, no_wrap=column == "run")
        for o in outcomes:  # the teacher's dataset/threat prefix is the protocol's: its name is enough here
            summary.add_row(f"{o.cell.variant} / {o.cell.student} / seed {o.cell.seed}",
                            " + ".join(t.rsplit("/", 1)[-1] for t in [o.cell.teacher, *o.cell.extra_teachers.values()]),
                            o.status, f"{o.metrics['test.clean_acc']:.1%}" if "test.clean_acc" in o.metrics else "",
                            f"{o.metrics['test.aa_acc']:.1%}" if "test.aa_acc" in o.metrics else "", o.run_id[:8])
        console.print(summary)
        if suite.protocol.section("eval")["n_examples"]:
            console.print(f"Evaluated on the first {suite.protocol.section('eval')['n_examples']} test points "
                          f"(a fixed subset, set by suite {suite.name}).")
    if as_json:
        from .counting import ignored_duplicates
        from .tracking import Tracker

        click.echo(json.dumps({"suite": suite.name, "protocol": suite.protocol.experiment_name,
                               "protocol_hash": suite.protocol.hash, "seconds": round(elapsed, 1),
                               "ignored_runs": ignored_duplicates(Tracker(results), suite.protocol.hash),
                               "cells": [{"key": o.cell.key, "label": o.cell.label, "status": o.status,
                                          "run_id": o.run_id, "metrics": o.metrics, "error": o.error}
                                         for o in outcomes]}, indent=2, sort_keys=True))
    if leaderboard_dir is not None:
        _print_leaderboard(results, suite.protocol.name, "terminal", leaderboard_dir, "last",
                           only_hash=suite.protocol.hash, model_dir=model_dir,
                           n_points=int(suite.protocol.section("eval")["n_examples"]) or None)
    for o in failed:
        if o.status == "undelivered":
            click.echo(f"rkdbench: cell not logged: {o.cell.label}: {o.error}", err=True)
        else:
            click.echo(f"rkdbench: cell failed: {o.cell.label}: {o.error}"
                       + (f" (traceback in run {o.run_id})" if o.run_id else ""), err=True)
    return 1 if failed else 0


COMMON_RUN_OPTIONS = [
    click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                 help="Override a protocol field (train.epochs=1, eval.n_examples=50, threat.eps=0.1) or a method "
                      "parameter (method.ard.temperature=1). Part of the cell key. Repeatable."),
    click.option("--results", default="rkdbench-results", show_default=True, help=RESULTS_HELP),
    click.option("--model-dir", default=None, help=MODEL_DIR_HELP),
    click.option("--data-dir", default=None, help=DATA_DIR_HELP),
    click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None,
                 help="Override the protocol's device (default: CUDA when present)."),
    click.option("--quiet", is_flag=True, help="Print only errors and the leaderboard."),
    click.option("--json", "as_json", is_flag=True,
                 help="No progress; print a JSON summary of the cells (status, run id, metrics) for scripts."),
]


def _with_options(options):
    def wrap(fn):
        for option in reversed(options):
            fn = option(fn)
        return fn
    return wrap


@cli.command()
@click.argument("suite")
@_with_options(COMMON_RUN_OPTIONS)
@click.option("--build-teachers", is_flag=True, help="Build missing harness teachers (e.g. the digits teacher) first.")
@click.option("--dry-run", is_flag=True, help="List the cells (keys, estimated passes, FLOPs, GPU-hours) and missing "
                                              "teachers, and exit.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes on this machine sharing the cells (each with cpu_count/N torch threads unless "
                   "OMP_NUM_THREADS is set). Separate `rkdbench run` processes on one store share them as well.")
@click.option("--shard", default="1/1", show_default=True, metavar="I/N",
              help="Deprecated: only every N-th cell starting at the I-th. N plain `rkdbench run` processes on one "
                   "store now share the cells by themselves.")
@click.option("--gpu-tflops", type=float, default=None,
              help="Sustained GPU throughput for --dry-run's GPU-hour estimate (default 40).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: this process (or --workers N processes on this machine); ray: one Ray task per cell, "
                   "with the protocol's [resources] (extra rkdbench[ray]; see docs/scale.md).")
@click.option("--address", default=None, metavar="auto|HOST:PORT",
              help="With --executor ray: the Ray cluster to join (default: start a local one sized to this machine).")
def run(suite: str, sets, results, model_dir, data_dir, device, quiet, as_json, build_teachers, dry_run, workers,
        shard, gpu_tflops, executor, address) -> None:
    """Run SUITE (a built-in name such as digits-quick, or a path to a suite .toml). Finished cells are
    skipped, interrupted ones resume from their last checkpoint in the same MLflow run. --dry-run lists the
    cells with their estimated cost and the teacher files that are missing."""
    if address is not None and executor != "ray":
        raise UserError(f"--address {address} is for --executor ray (the default executor, local, runs cells here)")
    sys.exit(_run_suite(suite, sets, results, model_dir, build_teachers, dry_run, device, quiet, None, shard,
                        gpu_tflops, data_dir, as_json, workers, executor, address))


@cli.command()
@_with_options(COMMON_RUN_OPTIONS)
@click.option("--suite", default="digits-quick", show_default=True, help="The suite the demo runs.")
@click.option("--leaderboards", "leaderboard_dir", default=None,
              help="Folder the leaderboard files are written to  [default: RESULTS/leaderboards; the clone's "
                   "committed leaderboards/ only when named here]")
def demo(sets, results, model_dir, data_dir, device, quiet, as_json, suite, leaderboard_dir) -> None:
    """The embedded digits suite end to end, offline: build the teacher (once), train PGD-AT, ARD and RSLAD
    students, evaluate with PGD-20 and AutoAttack on the suite's test points, record in MLflow, and print a
    compact leaderboard (the full one is written under the results folder)."""
    sys.exit(_run_suite(suite, sets, results, model_dir, True, False, device, quiet,
                        leaderboard_dir if leaderboard_dir is not None else str(Path(results) / "leaderboards"),
                        data_dir=data_dir, as_json=as_json, workers=DEMO_WORKERS))


@cli.command()
@click.argument("suite")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Protocol or method overrides, as for `run`.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None,
              help="Override the protocol's device (default: CUDA when present).")
@click.option("--steps", type=click.IntRange(min=1), default=5, show_default=True,
              help="Training steps per timed epoch (three epochs: one warm-up, the median of two).")
@click.option("--points", type=click.IntRange(min=2), default=16, show_default=True,
              help="Points per timed attack batch (at most the evaluation batch size; on a GPU, the batch size "
                   "gives the most faithful numbers).")
@click.option("--redo", is_flag=True, help="Measure again what is already cached.")
def calibrate(suite, sets, device, steps, points, redo) -> None:
    """Time a few training steps of every (method, student, teacher) combination of SUITE and a few batches of every
    evaluation attack on this device; cached per device, torch version and thread count in
    $RKDBENCH_CALIBRATION_DIR (default ~/.cache/rkdbench/calibration). `rkdbench run SUITE --dry-run` then
    predicts each cell's wall time from it."""
    from .calibration import Calibration, calibrate_cells
    from .config import load_suite, parse_set
    from .engine import pick_device
    from .run.cells import expand_cells

    loaded = load_suite(suite, parse_set(list(sets)))
    cells = expand_cells(loaded)
    target = pick_device(device or loaded.protocol.section("train").get("device", "auto"))
    calibration = Calibration.load(target)
    click.echo(f"calibrating {loaded.name} on {calibration.identity['device']} ({calibration.identity['threads']} "
               f"threads, torch {calibration.identity['torch']})")
    started = time.perf_counter()
    calibrate_cells(cells, target, calibration, steps=steps, points=points, redo=redo, say=lambda m: click.echo(f"  {m}"))
    click.echo(f"calibration saved to {calibration.save()} ({time.perf_counter() - started:.0f}s); "
               f"`rkdbench run {suite} --dry-run` predicts wall times from it")


def _print_leaderboard(results: str, protocol: str | None, fmt: str, out: str | None, selection: str,
                       only_hash: str | None = None, *, model_dir: str | None = None, log_to_mlflow: bool = True,
                       ui_url: str = "", references: str | None = None, n_points: int | None = None) -> None:
    """Print the tables (`terminal`: the compact table, after the files it names are written) and publish them."""
    from .leaderboard import (build_tables, collect_runs, config_loader, history_loader, per_example_loader,
                              render_many)
    from .leaderboard.publish import folder_names, publish
    from .leaderboard.terminal import to_terminal
    from .references import load_references
    from .teacher_accuracy import teacher_accuracies
    from .tracking import Tracker

    tracker = Tracker(results)
    runs = collect_runs(tracker, protocol)
    if only_hash is not None and not runs.empty:
        runs = runs[runs["protocol_hash"] == only_hash]
    teachers = teacher_accuracies(tracker, [] if runs.empty else runs["teacher"].unique(), _model_dir(model_dir))
    tables = build_tables(runs, selection, per_example_loader(tracker), config=config_loader(tracker),
                          references=load_references(references), teachers=teachers, ui_url=ui_url)
    if not tables:
        raise UserError(f"no finished runs{' for protocol ' + repr(protocol) if protocol else ''} with {selection} "
                        f"results in {results}; run a suite first (rkdbench demo)")
    terminal = fmt == "terminal"
    if not terminal:
        click.echo(render_many(tables, fmt), nl=False)
    from .counting import ignored_note

    note = ignored_note(sum(table.ignored_runs for table in tables))
    if note:
        click.echo(f"rkdbench: {note}", err=True)
    if out is None and not log_to_mlflow:
        if terminal:
            click.echo("\n".join(to_terminal(table, n_points=n_points) for table in tables), nl=False)
        return
    history = history_loader(tracker)
    folders = folder_names(tables)
    for i, table in enumerate(tables):
        published = publish(table, history, Path(out) / folders[i] if out is not None else None,
                            tracker if log_to_mlflow else None)
        if terminal:  # the table names its full versions itself
            click.echo(to_terminal(table, [p for p in published.paths if p.suffix in (".md", ".html")], n_points))
        for path in published.paths if not terminal else ():
            click.echo(f"wrote {path}", err=True)
        if published.run_id is not None:
            click.echo(f"{'logged' if published.new_run else 'unchanged since'} leaderboard run {published.run_id} "
                       f"({table.experiment}, {table.selection})", err=True)


@cli.command()
@click.option("--results", default="rkdbench-results", show_default=True, help=RESULTS_HELP)
@click.option("--protocol", default=None, help="Only this protocol (name); default: every protocol with runs.")
@click.option("--format", "fmt", type=click.Choice(["terminal", "md", "csv", "json", "html"]), default=None,
              help="What is printed: `terminal` is a compact table in 100 columns (the default on a terminal), `md` "
                   "the full Markdown table (the default otherwise); --out writes every format and the plots.")
@click.option("--selection", type=click.Choice(["last", "best-val", "swa"]), default="last", show_default=True,
              help="Which checkpoint's numbers: the last epoch, the best validation PGD epoch, or the "
                   "weight-averaged student (protocols with train.swa_start).")
@click.option("--out", default=None,
              help="Also write leaderboard.md/.csv/.json/.html and the PNG plots into OUT/<protocol experiment>/.")
@click.option("--log-to-mlflow/--no-log-to-mlflow", default=True, show_default=True,
              help="Log the leaderboard (table, plots, md, html) as a run of kind `leaderboard` in the protocol's "
                   "experiment; a build identical to the newest such run logs nothing new.")
@click.option("--model-dir", default=None, help=MODEL_DIR_HELP + " Measured teacher cards give `AA gap to teacher`.")
@click.option("--ui-url", default="", metavar="URL",
              help="Base URL of the MLflow UI for run links (e.g. http://127.0.0.1:5000 while `rkdbench ui` runs); "
                   "default: the UI's own #/experiments/... paths.")
@click.option("--references", default=None, type=click.Path(dir_okay=False),
              help="Published numbers to compare with (TOML; default: the packaged references).")
def leaderboard(results, protocol, fmt, selection, out, log_to_mlflow, model_dir, ui_url, references) -> None:
    """Leaderboards from the MLflow store, one per protocol hash: method x student x teacher, mean ± std over seeds,
    ranked by AutoAttack, with paired ties, the teacher gap, reported numbers, cost, flags and run links."""
    fmt = fmt or ("terminal" if sys.stdout.isatty() else "md")
    _print_leaderboard(results, protocol, fmt, out, selection, model_dir=model_dir, log_to_mlflow=log_to_mlflow,
                       ui_url=ui_url, references=references)


@cli.command()
@click.argument("run_a")
@click.argument("run_b")
@click.option("--results", default="rkdbench-results", show_default=True, help=RESULTS_HELP)
@click.option("--attack", default="aa", show_default=True,
              help="The per-example column compared: an attack label of the protocol (aa, pgd20), clean or worst.")
@click.option("--selection", type=click.Choice(["last", "best-val", "swa"]), default="last", show_default=True,
              help="Which checkpoint's results: the last epoch, the best validation PGD epoch, or the "
                   "weight-averaged student.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def compare(run_a, run_b, results, attack, selection, as_json) -> None:
    """Compare two finished cells (MLflow run ids) on the same test points: both accuracies, the paired difference
    with a 95% Wald CI, and an exact McNemar test. Runs under different protocols are refused."""
    from .compare import compare_runs

    comparison = compare_runs(results, run_a, run_b, attack=attack, selection=selection)
    click.echo(json.dumps(comparison.to_dict(), indent=2) if as_json else comparison.render())


@cli.command("evaluate")
@click.argument("model")
@click.option("--protocol", required=True, help="A built-in protocol name or a path to a protocol .toml.")
@click.option("--results", default="rkdbench-results", show_default=True, help=RESULTS_HELP)
@click.option("--model-dir", default=None, help=MODEL_DIR_HELP)
@click.option("--n-examples", type=click.IntRange(min=0), default=None,
              help="Evaluate on the first N test points (a different protocol hash; default: the protocol's).")
@click.option("--architecture", default=None, help="The architecture of a checkpoint file (required for one).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None,
              help="Override the protocol's device (default: CUDA when present).")
@click.option("--data-dir", default=None, help=DATA_DIR_HELP)
def evaluate_command(model, protocol, results, model_dir, n_examples, architecture, device, data_dir) -> None:
    """Evaluate MODEL (a teacher id, or a checkpoint file with --architecture) under a protocol's evaluation only:
    clean and every protocol attack on its first n test points, logged as an MLflow run of kind `evaluation`
    (never on the leaderboard); a teacher's measured card records the numbers. A killed evaluation resumes."""
    from .evaluate_cmd import evaluate_model

    report = evaluate_model(model, protocol, Path(results), _model_dir(model_dir), n_examples=n_examples,
                            architecture=architecture, device=device, data_dir=Path(data_dir) if data_dir else None)
    click.echo(report.summary())


@cli.group()
def store() -> None:
    """The results store: `upgrade` migrates it to the installed MLflow's schema."""


@store.command("upgrade")
@click.option("--results", default="rkdbench-results", show_default=True, help=RESULTS_HELP)
def store_upgrade(results) -> None:
    """Create or migrate the sqlite store in RESULTS once, under the store lock (workers may be running). With
    MLFLOW_TRACKING_URI=http://... the server migrates its own database: this says so and exits 2."""
    from .store import upgrade_store
    from .tracking import tracking_uri

    click.echo(upgrade_store(tracking_uri(results)))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(as_json: bool) -> None:
    """Every registered component (kind, name, plugin, distribution, version, status) and broken plugins."""
    from .plugins import broken_plugins, get_registry

    rows = [{"kind": c.kind, "name": c.name, "plugin": c.plugin, "dist": c.dist, "version": c.version, "status": "ok"}
            for c in get_registry().all()]
    rows += [{"kind": "plugin", "name": b.plugin, "plugin": b.plugin, "dist": b.dist, "version": "",
              "status": f"broken: {b.error}"} for b in broken_plugins()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    width = max(len(r["name"]) for r in rows) if rows else 10
    for r in rows:
        click.echo(f"{r['kind']:<13}{r['name']:<{width + 2}}{r['plugin']:<22}{r['dist']} {r['version']}  {r['status']}")


@cli.command("method-docs")
@click.option("--out", default="docs/methods", show_default=True, help="Folder for one Markdown page per method.")
def method_docs(out) -> None:
    """Write each registered method's page (formula, source, defaults, attack) generated from its code."""
    from .method_docs import write_method_pages

    for path in write_method_pages(Path(out)):
        click.echo(f"wrote {path}")


@cli.command("new-plugin")
@click.argument("name")
@click.option("--dir", "parent", default=".", show_default=True, type=click.Path(file_okay=False),
              help="Folder the package folder NAME/ is created in.")
@click.option("--method", "method", default=None, help="The method's registry name (default: NAME).")
def new_plugin(name: str, parent: str, method: str | None) -> None:
    """Scaffold a pip-installable method plugin in DIR/NAME/: pyproject.toml with the entry point, a working
    RSLAD-like method to edit, its unit test, a README and a digits suite running it next to pgd-at."""
    from . import list_components
    from .scaffold import plugin_names, scaffold_plugin

    names = plugin_names(name, method)
    # A taken name would make the new plugin "broken" (duplicate) at its first load: refuse it now instead.
    if names.method in list_components("method"):
        raise UserError(f"method name {names.method!r} is already registered; choose another with --method")
    root = Path(parent) / names.name
    scaffold_plugin(Path(parent), names)
    click.echo(f"wrote {root}/ (method {names.method!r} in src/{names.module}/method.py)\n"
               f"next: cd {root} && pip install -e . && pytest && rkdbench run suite.toml --build-teachers")


@cli.group()
def teachers() -> None:
    """Teacher checkpoints: list, show, verify, fetch (zoo teachers, network), build (harness teachers)."""


@teachers.command("list")
@click.option("--model-dir", default=None, help=MODEL_DIR_HELP)
def teachers_list(model_dir) -> None:
    """Every registered teacher with its availability in the model dir."""
    from . import create, list_components
    from .teachers import teacher_status

    folder = _model_dir(model_dir)
    for name in list_components("teacher"):
        card = create("teacher", name)
        click.echo(f"{name:<48}{card.architecture:<16}{teacher_status(card, folder)}")


@teachers.command("show")
@click.argument("teacher")
@click.option("--model-dir", default=None, help=MODEL_DIR_HELP)
def teachers_show(teacher, model_dir) -> None:
    """The model card, and the measured card if the teacher was built or evaluated here."""
    from dataclasses import asdict

    from . import create
    from .teachers import read_measured_card, teacher_path, teacher_status

    card = create("teacher", teacher)
    folder = _model_dir(model_dir)
    click.echo(json.dumps({"card": asdict(card), "path": str(teacher_path(card, folder)),
                           "status": teacher_status(card, folder), "measured": read_measured_card(card, folder)},
                          indent=2, default=str))


@teachers.command("verify")
@click.argument("teacher")
@click.option("--model-dir", default=None, help=MODEL_DIR_HELP)
def teachers_verify(teacher, model_dir) -> None:
    """Load the checkpoint (sha256, strict keys) and count its parameters."""
    from . import create
    from .teachers import load_teacher

    model = load_teacher(create("teacher", teacher), _model_dir(model_dir))
    click.echo(f"{teacher}: ok, {sum(p.numel() for p in model.parameters()):,} parameters")


@teachers.command("fetch")
@click.argument("teacher")
@click.option("--model-dir", default=None, help=MODEL_DIR_HELP)
def teachers_fetch(teacher, model_dir) -> None:
    """Download a zoo teacher into the model dir with the optional robustbench package (needs a network),
    then load it once: strict keys, and its sha256 recorded for every later load."""
    from . import create
    from .robustbench_bridge import fetch_teacher
    from .teachers import load_teacher

    card = create("teacher", teacher)
    folder = _model_dir(model_dir)
    paths = fetch_teacher(card, folder)
    model = load_teacher(card, folder)
    click.echo(f"{teacher}: {', '.join(map(str, paths))} ok, {sum(p.numel() for p in model.parameters()):,} parameters")


@teachers.command("build")
@click.argument("teacher")
@click.option("--model-dir", default=None, help=MODEL_DIR_HELP)
@click.option("--n-examples", type=int, default=None, help="Evaluate on the first N test points (default: the protocol's).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None)
@click.option("--data-dir", default=None, help=DATA_DIR_HELP)
def teachers_build(teacher, model_dir, n_examples, device, data_dir) -> None:
    """Train a harness teacher from its recipe, evaluate it, and cache it with its measured card."""
    from . import create
    from .engine import pick_device
    from .run.options import RunOptions
    from .run.progress import epoch_progress
    from .teachers import build_teacher

    options = RunOptions(console=_console())
    measured = build_teacher(create("teacher", teacher), _model_dir(model_dir), pick_device(device or "auto"),
                             n_examples=n_examples, progress=epoch_progress(options, teacher), data_dir=data_dir)
    click.echo(json.dumps(measured, indent=2, default=str))


@cli.command()
@click.option("--results", default="rkdbench-results", show_default=True, help=RESULTS_HELP)
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address (keep it local unless you mean it).")
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="MLflow server worker processes (one is plenty for a local UI).")
def ui(results, host, port, workers) -> None:
    """The MLflow UI on the results store, bound to 127.0.0.1 by default; prints each protocol's URL (runs sorted
    by AutoAttack accuracy, headline metrics as columns: the saved view `rkdbench: headline metrics`). Against a
    tracking server (MLFLOW_TRACKING_URI=http://...) it prints that server's URLs and starts nothing."""
    import subprocess

    from .tracking import Tracker
    from .ui import experiment_url, install_views, sorted_url

    tracker = Tracker(results)
    tracker.check_reachable()
    shown = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(host, f"[{host}]" if ":" in host else host)
    remote = tracker.uri.startswith(("http://", "https://"))  # a tracking server (rkdbench server) is the UI
    base = tracker.uri.rstrip("/") if remote else f"http://{shown}:{port}"
    try:
        experiments, url = install_views(tracker), experiment_url
    except Exception as exc:  # a read-only or remote store: sorted, columns as last chosen in the browser
        click.echo(f"rkdbench: warning: saved view not written ({type(exc).__name__}: {exc})", err=True)
        url = sorted_url
        experiments = [(e.name, e.experiment_id) for e in tracker.client.search_experiments()
                       if e.experiment_id != "0"]
    click.echo(f"MLflow UI for {tracker.uri} at {base}" + ("  (served by the tracking server)" if remote
                                                           else "  (Ctrl-C stops it)"))
    for name, experiment_id in experiments:
        click.echo(f"  {name}: {url(base, experiment_id)}")
    from .counting import ignored_duplicates, ignored_note

    note = ignored_note(ignored_duplicates(tracker))
    if note:
        click.echo(f"rkdbench: {note}; MLflow's runs table still lists them", err=True)
    if remote:
        return
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", tracker.uri,
               "--host", host, "--port", str(port), "--workers", str(workers)]
    # MLflow's background job runner (GenAI judges, trace rollups: seven extra processes) is not needed to browse
    # runs; `MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true` turns it back on.
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}
    sys.exit(subprocess.call(command, env=env))


@cli.command()
@click.option("--results", default="rkdbench-results", show_default=True,
              help="Without --backend-store-uri: the sqlite store and artifacts of this folder are served.")
@click.option("--backend-store-uri", default=None, metavar="URI",
              help="postgresql+psycopg2://USER@HOST:PORT/DB (extra rkdbench[server]); default: sqlite in --results.")
@click.option("--artifacts-destination", default=None, metavar="DIR",
              help="Where the server keeps artifacts (checkpoints) it proxies for clients (default: RESULTS/artifacts).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Bind address; anything beyond loopback is reachable by anyone who can reach this machine.")
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--app-name", default=None, type=click.Choice(["basic-auth"]),
              help="MLflow's basic-auth app: users and passwords (clients set MLFLOW_TRACKING_USERNAME/PASSWORD).")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(min=1), help="Server worker processes.")
def server(results, backend_store_uri, artifacts_destination, host, port, app_name, workers) -> None:
    """The team tracking server: checks the store, creates or migrates its schema once (`mlflow db upgrade`), then
    runs `mlflow server` with proxied artifacts. Workers set MLFLOW_TRACKING_URI=http://HOST:PORT; every command
    (run, leaderboard, compare, evaluate, ui) then reads and writes through it (docs/scale.md)."""
    from .server import serve

    serve(Path(results), backend_store_uri, artifacts_destination, host, port, app_name, workers,
          lambda line: click.echo(line, err=True))


def _register_plugin_commands() -> None:
    from .plugins import get_registry, pm

    get_registry()
    pm.hook.register_commands(cli=cli)


def main(argv: list[str] | None = None) -> None:
    """Entry point: plugin commands are added, and user errors become one line and exit code 2."""
    # MLflow draws a progress bar for every artifact it reads back (per-example results, configs): noise in logs
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # nor is "Creating initial MLflow database tables..." when a results folder is first used
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    # and, against a tracking server, prints each run's URL to stdout when it ends: noise that breaks --json
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    try:
        _register_plugin_commands()
        returned = cli.main(args=argv, prog_name="rkdbench", standalone_mode=False)
    except UserError as exc:
        click.echo(f"rkdbench: error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("rkdbench: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    sys.exit(returned if isinstance(returned, int) else 0)


if __name__ == "__main__":
    main()
