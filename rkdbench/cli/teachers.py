"""`rkdbench teachers`: list, show, verify, fetch and build teacher checkpoints (rkdbench.teachers does the
work)."""

from __future__ import annotations

import json

import click

from ..teachers.card import model_dir_path
from .options import DATA_DIR_HELP, MODEL_DIR_HELP

__all__ = ["teachers"]

MODEL_DIR_OPTION = click.option("--model-dir", default=None, help=MODEL_DIR_HELP)


def _parameter_count(model) -> str:
    return f"{sum(p.numel() for p in model.parameters()):,} parameters"


@click.group()
def teachers() -> None:
    """Teacher checkpoints: list, show, verify, fetch (zoo teachers, network), build (harness teachers)."""


@teachers.command("list")
@MODEL_DIR_OPTION
def teachers_list(model_dir) -> None:
    """Every registered teacher with its availability in the model dir."""
    from ..plugins import create, list_components
    from ..teachers.model_dir import teacher_status

    folder = model_dir_path(model_dir)
    for name in list_components("teacher"):
        card = create("teacher", name)
        click.echo(f"{name:<48}{card.architecture:<16}{teacher_status(card, folder)}")


@teachers.command("show")
@click.argument("teacher")
@MODEL_DIR_OPTION
def teachers_show(teacher, model_dir) -> None:
    """The model card, and the measured card if the teacher was built or evaluated here."""
    from dataclasses import asdict

    from ..plugins import create
    from ..teachers.model_dir import read_measured_card, teacher_path, teacher_status

    card = create("teacher", teacher)
    folder = model_dir_path(model_dir)
    click.echo(
        json.dumps(
            {
                "card": asdict(card),
                "path": str(teacher_path(card, folder)),
                "status": teacher_status(card, folder),
                "measured": read_measured_card(card, folder),
            },
            indent=2,
            default=str,
        )
    )


@teachers.command("verify")
@click.argument("teacher")
@MODEL_DIR_OPTION
def teachers_verify(teacher, model_dir) -> None:
    """Load the checkpoint (sha256, strict keys) and count its parameters."""
    from ..plugins import create
    from ..teachers.load import load_teacher

    model = load_teacher(create("teacher", teacher), model_dir_path(model_dir))
    click.echo(f"{teacher}: ok, {_parameter_count(model)}")


@teachers.command("fetch")
@click.argument("teacher")
@MODEL_DIR_OPTION
def teachers_fetch(teacher, model_dir) -> None:
    """Download a zoo teacher into the model dir with the optional robustbench package (needs a network),
    then load it once: strict keys, and its sha256 recorded for every later load."""
    from ..plugins import create
    from ..teachers.load import load_teacher
    from ..teachers.robustbench_bridge import fetch_teacher

    card = create("teacher", teacher)
    folder = model_dir_path(model_dir)
    paths = fetch_teacher(card, folder)
    model = load_teacher(card, folder)
    click.echo(f"{teacher}: {', '.join(map(str, paths))} ok, {_parameter_count(model)}")


@teachers.command("build")
@click.argument("teacher")
@MODEL_DIR_OPTION
@click.option(
    "--n-examples", type=int, default=None, help="Evaluate on the first N test points (default: the protocol's)."
)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None)
@click.option("--data-dir", default=None, help=DATA_DIR_HELP)
def teachers_build(teacher, model_dir, n_examples, device, data_dir) -> None:
    """Train a harness teacher from its recipe, evaluate it, and cache it with its measured card."""
    from ..console import make_console
    from ..plugins import create
    from ..run.options import RunOptions
    from ..run.progress import epoch_progress
    from ..teachers.build import build_teacher
    from ..training.engine import pick_device

    options = RunOptions(console=make_console())
    measured = build_teacher(
        create("teacher", teacher),
        model_dir_path(model_dir),
        pick_device(device or "auto"),
        n_examples=n_examples,
        progress=epoch_progress(options, teacher),
        data_dir=data_dir,
    )
    click.echo(json.dumps(measured, indent=2, default=str))
