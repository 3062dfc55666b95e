"""The `rkdbench` command line (click). Every bad input ends with one line on stderr and exit code 2;
a suite with failed cells exits 1 after its summary.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import click

from .errors import UserError

__all__ = ["cli", "main"]

RESULTS_HELP = "Results folder: holds mlflow.db, artifacts and cell checkpoints."
MODEL_DIR_HELP = "Teacher checkpoints in RobustBench's layout (default: $RKDBENCH_MODEL_DIR or ~/.cache/rkdbench/models)."


def _console(quiet: bool = False):
    from rich.console import Console

    return None if quiet else Console(highlight=False)


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


def _run_suite(suite_name: str, sets: tuple[str, ...], results: str, model_dir: str | None, build_teachers: bool,
               dry_run: bool, device: str | None, quiet: bool, leaderboard_dir: str | None) -> int:
    from .config import load_suite, parse_set
    from .runner import RunOptions, expand_cells, run_suite

    suite = load_suite(suite_name, parse_set(list(sets)))
    console = _console(quiet)
    if dry_run:
        cells = expand_cells(suite)
        click.echo(f"suite {suite.name}: {len(cells)} cells under protocol {suite.protocol.experiment_name} "
                   f"(hash {suite.protocol.hash})")
        for cell in cells:
            click.echo(f"  {cell.key}  {cell.label}")
        return 0
    options = RunOptions(results=Path(results), model_dir=_model_dir(model_dir), build_teachers=build_teachers,
                         device=device, console=console)
    started = time.perf_counter()
    outcomes = run_suite(suite, options)
    elapsed = time.perf_counter() - started
    failed = [o for o in outcomes if o.status == "failed"]
    if console is not None:
        from rich.table import Table

        summary = Table(title=f"suite {suite.name}: {len(outcomes)} cells in {elapsed:.0f}s")
        for column in ("cell", "status", "run", "clean", "AutoAttack"):
            summary.add_column(column)
        for o in outcomes:
            summary.add_row(o.cell.label, o.status, o.run_id[:12],
                            f"{o.metrics['test.clean_acc']:.1%}" if "test.clean_acc" in o.metrics else "",
                            f"{o.metrics['test.aa_acc']:.1%}" if "test.aa_acc" in o.metrics else "")
        console.print(summary)
        if suite.protocol.section("eval")["n_examples"]:
            console.print(f"Evaluated on the first {suite.protocol.section('eval')['n_examples']} test points "
                          f"(a fixed subset, set by suite {suite.name}).")
    if leaderboard_dir is not None:
        _print_leaderboard(results, suite.protocol.name, "md", leaderboard_dir, "last",
                           only_hash=suite.protocol.hash)
    for o in failed:
        click.echo(f"rkdbench: cell failed: {o.cell.label}: {o.error} (traceback in run {o.run_id})", err=True)
    return 1 if failed else 0


COMMON_RUN_OPTIONS = [
    click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                 help="Override a protocol field (train.epochs=1, eval.n_examples=50, threat.eps=0.1) or a method "
                      "parameter (method.ard.temperature=1). Part of the cell key. Repeatable."),
    click.option("--results", default="rkdbench-results", show_default=True, help=RESULTS_HELP),
    click.option("--model-dir", default=None, help=MODEL_DIR_HELP),
    click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None,
                 help="Override the protocol's device (default: CUDA when present)."),
    click.option("--quiet", is_flag=True, help="Print only errors and the leaderboard."),
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
@click.option("--dry-run", is_flag=True, help="List the cells (with their keys) and exit.")
def run(suite: str, sets, results, model_dir, device, quiet, build_teachers, dry_run) -> None:
    """Run SUITE (a built-in name such as digits-quick, or a path to a suite .toml). Finished cells are
    skipped, interrupted ones resume from their last checkpoint in the same MLflow run."""
    sys.exit(_run_suite(suite, sets, results, model_dir, build_teachers, dry_run, device, quiet, None))


@cli.command()
@_with_options(COMMON_RUN_OPTIONS)
@click.option("--suite", default="digits-quick", show_default=True, help="The suite the demo runs.")
@click.option("--leaderboards", "leaderboard_dir", default="leaderboards", show_default=True,
              help="Folder the leaderboard files are written to.")
def demo(sets, results, model_dir, device, quiet, suite, leaderboard_dir) -> None:
    """The embedded digits suite end to end, offline: build the teacher (once), train PGD-AT, ARD and RSLAD
    students, evaluate with PGD-20 and AutoAttack, record in MLflow, and print the leaderboard."""
    sys.exit(_run_suite(suite, sets, results, model_dir, True, False, device, quiet, leaderboard_dir))


def _print_leaderboard(results: str, protocol: str | None, fmt: str, out: str | None, selection: str,
                       only_hash: str | None = None) -> None:
    from .leaderboard import build_tables, collect_runs, per_example_loader, render, write_tables
    from .tracking import Tracker

    tracker = Tracker(results)
    tables = build_tables(collect_runs(tracker, protocol), selection, per_example_loader(tracker))
    if only_hash is not None:
        tables = [t for t in tables if t.protocol_hash == only_hash]
    if not tables:
        raise UserError(f"no finished runs{' for protocol ' + repr(protocol) if protocol else ''} in {results}; "
                        f"run a suite first (rkdbench demo)")
    for table in tables:
        click.echo(render(table, fmt))
    if out is not None:
        for path in write_tables(tables, Path(out), fmt):
            click.echo(f"wrote {path}", err=True)


@cli.command()
@click.option("--results", default="rkdbench-results", show_default=True, help=RESULTS_HELP)
@click.option("--protocol", default=None, help="Only this protocol (name); default: every protocol with runs.")
@click.option("--format", "fmt", type=click.Choice(["md", "csv"]), default="md", show_default=True)
@click.option("--selection", type=click.Choice(["last", "best-val"]), default="last", show_default=True,
              help="Which checkpoint's numbers: the last epoch, or the best validation PGD epoch.")
@click.option("--out", default=None, help="Also write one file per table into this folder.")
def leaderboard(results, protocol, fmt, selection, out) -> None:
    """Leaderboards from the MLflow store: method x student x teacher, mean ± std over seeds, by AutoAttack."""
    _print_leaderboard(results, protocol, fmt, out, selection)


@cli.command()
@click.argument("run_a")
@click.argument("run_b")
@click.option("--results", default="rkdbench-results", show_default=True, help=RESULTS_HELP)
@click.option("--attack", default="aa", show_default=True,
              help="The per-example column compared: an attack label of the protocol (aa, pgd20), clean or worst.")
@click.option("--selection", type=click.Choice(["last", "best-val"]), default="last", show_default=True,
              help="Which checkpoint's results: the last epoch, or the best validation PGD epoch.")
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
def evaluate_command(model, protocol, results, model_dir, n_examples, architecture, device) -> None:
    """Evaluate MODEL (a teacher id, or a checkpoint file with --architecture) under a protocol's evaluation only:
    clean and every protocol attack on its first n test points, logged as an MLflow run of kind `evaluation`
    (never on the leaderboard); a teacher's measured card records the numbers. A killed evaluation resumes."""
    from .evaluate_cmd import evaluate_model

    report = evaluate_model(model, protocol, Path(results), _model_dir(model_dir), n_examples=n_examples,
                            architecture=architecture, device=device)
    click.echo(report.summary())


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
    """Teacher checkpoints: list, show, verify, build."""


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


@teachers.command("build")
@click.argument("teacher")
@click.option("--model-dir", default=None, help=MODEL_DIR_HELP)
@click.option("--n-examples", type=int, default=None, help="Evaluate on the first N test points (default: the protocol's).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None)
def teachers_build(teacher, model_dir, n_examples, device) -> None:
    """Train a harness teacher from its recipe, evaluate it, and cache it with its measured card."""
    from . import create
    from .engine import pick_device
    from .runner import RunOptions, epoch_progress
    from .teachers import build_teacher

    options = RunOptions(console=_console())
    measured = build_teacher(create("teacher", teacher), _model_dir(model_dir), pick_device(device or "auto"),
                             n_examples=n_examples, progress=epoch_progress(options, teacher))
    click.echo(json.dumps(measured, indent=2, default=str))


@cli.command()
@click.option("--results", default="rkdbench-results", show_default=True, help=RESULTS_HELP)
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address (keep it local unless you mean it).")
@click.option("--port", default=5000, show_default=True, type=int)
def ui(results, host, port) -> None:
    """The MLflow UI on the results store, bound to 127.0.0.1 by default."""
    import subprocess

    from .tracking import Tracker

    tracker = Tracker(results)
    tracker.check_reachable()
    click.echo(f"MLflow UI for {tracker.uri} at http://{host}:{port}  (Ctrl-C stops it)")
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", tracker.uri,
               "--host", host, "--port", str(port)]
    sys.exit(subprocess.call(command, env={**os.environ}))


def _register_plugin_commands() -> None:
    from .plugins import get_registry, pm

    get_registry()
    pm.hook.register_commands(cli=cli)


def main(argv: list[str] | None = None) -> None:
    """Entry point: plugin commands are added, and user errors become one line and exit code 2."""
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
