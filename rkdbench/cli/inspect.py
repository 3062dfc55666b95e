"""Reading results: `rkdbench compare` (two cells, paired), `rkdbench evaluate` (a model under a protocol's
evaluation only) and `rkdbench ui` (the MLflow UI)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..teachers.card import model_dir_path
from .options import DATA_DIR_HELP, DEVICE_OPTION, MODEL_DIR_HELP, RESULTS_HELP

__all__ = ["compare", "evaluate_command", "ui"]


@click.command()
@click.argument("run_a")
@click.argument("run_b")
@click.option("--results", default="rkdbench-results", show_default=True, help=RESULTS_HELP)
@click.option(
    "--attack",
    default=None,
    help="The per-example column compared: an attack label of the protocol (aa, pgd20), clean or worst. "
    "Default: the label the runs' leaderboard ranks by (the protocol's eval.rank_by, else its final "
    "attack: AutoAttack, `aa`, in the built-in protocols).",
)
@click.option(
    "--selection",
    type=click.Choice(["last", "best-val", "swa"]),
    default="last",
    show_default=True,
    help="Which checkpoint's results: the last epoch, the best validation PGD epoch, or the weight-averaged student.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def compare(run_a, run_b, results, attack, selection, as_json) -> None:
    """Compare two finished cells (MLflow run ids) on the same test points: both accuracies, the paired difference
    with a 95% Wald CI, and an exact McNemar test. Runs under different protocols are refused."""
    from ..leaderboard.compare import compare_runs

    comparison = compare_runs(results, run_a, run_b, attack=attack, selection=selection)
    click.echo(json.dumps(comparison.to_dict(), indent=2) if as_json else comparison.render())


@click.command("evaluate")
@click.argument("model")
@click.option("--protocol", required=True, help="A built-in protocol name or a path to a protocol .toml.")
@click.option("--results", default="rkdbench-results", show_default=True, help=RESULTS_HELP)
@click.option("--model-dir", default=None, help=MODEL_DIR_HELP)
@click.option(
    "--n-examples",
    type=click.IntRange(min=0),
    default=None,
    help="Evaluate on the first N test points (a different protocol hash; default: the protocol's).",
)
@click.option("--architecture", default=None, help="The architecture of a checkpoint file (required for one).")
@DEVICE_OPTION
@click.option("--data-dir", default=None, help=DATA_DIR_HELP)
def evaluate_command(model, protocol, results, model_dir, n_examples, architecture, device, data_dir) -> None:
    """Evaluate MODEL (a teacher id, or a checkpoint file with --architecture) under a protocol's evaluation only:
    clean and every protocol attack on its first n test points, logged as an MLflow run of kind `evaluation`
    (never on the leaderboard); a teacher's measured card records the numbers. A killed evaluation resumes."""
    from ..app.evaluate import evaluate_model

    report = evaluate_model(
        model,
        protocol,
        Path(results),
        model_dir_path(model_dir),
        n_examples=n_examples,
        architecture=architecture,
        device=device,
        data_dir=Path(data_dir) if data_dir else None,
    )
    click.echo(report.summary())


@click.command()
@click.option("--results", default="rkdbench-results", show_default=True, help=RESULTS_HELP)
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address (keep it local unless you mean it).")
@click.option("--port", default=5000, show_default=True, type=int)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="MLflow server worker processes (one is plenty for a local UI).",
)
def ui(results, host, port, workers) -> None:
    """The MLflow UI on the results store, bound to 127.0.0.1 by default; prints each protocol's URL (runs sorted
    by AutoAttack accuracy, headline metrics as columns: the saved view `rkdbench: headline metrics`). Against a
    tracking server (MLFLOW_TRACKING_URI=http://...) it prints that server's URLs and starts nothing."""
    from ..app.ui import UiRequest, launch_ui

    sys.exit(launch_ui(UiRequest(results, host, port, workers)))
