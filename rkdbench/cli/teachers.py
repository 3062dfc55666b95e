"""`rkdbench teachers`: list, show, verify, fetch and build teacher checkpoints (rkdbench.app.teachers acts)."""

from __future__ import annotations

import click

from ..teachers.card import model_dir_path
from .options import DATA_DIR_HELP, MODEL_DIR_HELP

__all__ = ["teachers"]

MODEL_DIR_OPTION = click.option("--model-dir", default=None, help=MODEL_DIR_HELP)


@click.group()
def teachers() -> None:
    """Teacher checkpoints: list, show, verify, fetch (zoo teachers, network), build (harness teachers)."""


@teachers.command("list")
@MODEL_DIR_OPTION
def teachers_list(model_dir) -> None:
    """Every registered teacher with its availability in the model dir."""
    from ..app.teachers import TeacherRequest, list_teachers

    list_teachers(TeacherRequest(model_dir_path(model_dir)))


@teachers.command("show")
@click.argument("teacher")
@MODEL_DIR_OPTION
def teachers_show(teacher, model_dir) -> None:
    """The model card, and the measured card if the teacher was built or evaluated here."""
    from ..app.teachers import TeacherRequest, show_teacher

    show_teacher(TeacherRequest(model_dir_path(model_dir), teacher))


@teachers.command("verify")
@click.argument("teacher")
@MODEL_DIR_OPTION
def teachers_verify(teacher, model_dir) -> None:
    """Load the checkpoint (sha256, strict keys) and count its parameters."""
    from ..app.teachers import TeacherRequest, verify_teacher

    verify_teacher(TeacherRequest(model_dir_path(model_dir), teacher))


@teachers.command("fetch")
@click.argument("teacher")
@MODEL_DIR_OPTION
def teachers_fetch(teacher, model_dir) -> None:
    """Download a zoo teacher into the model dir with the optional robustbench package (needs a network),
    then load it once: strict keys, and its sha256 recorded for every later load."""
    from ..app.teachers import TeacherRequest, fetch_teacher

    fetch_teacher(TeacherRequest(model_dir_path(model_dir), teacher))


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
    from ..app.teachers import TeacherRequest, build_teacher

    build_teacher(TeacherRequest(model_dir_path(model_dir), teacher, n_examples, device, data_dir))
