"""`rkdbench teachers list|show|verify|fetch|build`: each subcommand's action on a `TeacherRequest` (the teacher, the
model dir, and for `build` the evaluation size, device and data folder), printing what it found or made."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import click

from ..plugins import create, list_components

__all__ = ["TeacherRequest", "list_teachers", "show_teacher", "verify_teacher", "fetch_teacher", "build_teacher"]


@dataclass(frozen=True)
class TeacherRequest:
    model_dir: Path
    teacher: str = ""
    n_examples: int | None = None
    device: str | None = None
    data_dir: str | None = None


def _parameter_count(model) -> str:
    return f"{sum(p.numel() for p in model.parameters()):,} parameters"


def list_teachers(request: TeacherRequest) -> None:
    from ..teachers.model_dir import teacher_status

    for name in list_components("teacher"):
        card = create("teacher", name)
        click.echo(f"{name:<48}{card.architecture:<16}{teacher_status(card, request.model_dir)}")


def show_teacher(request: TeacherRequest) -> None:
    from ..teachers.model_dir import read_measured_card, teacher_path, teacher_status

    card = create("teacher", request.teacher)
    folder = request.model_dir
    summary = {
        "card": asdict(card),
        "path": str(teacher_path(card, folder)),
        "status": teacher_status(card, folder),
        "measured": read_measured_card(card, folder),
    }
    click.echo(json.dumps(summary, indent=2, default=str))


def verify_teacher(request: TeacherRequest) -> None:
    from ..teachers.load import load_teacher

    model = load_teacher(create("teacher", request.teacher), request.model_dir)
    click.echo(f"{request.teacher}: ok, {_parameter_count(model)}")


def fetch_teacher(request: TeacherRequest) -> None:
    from ..teachers.load import load_teacher
    from ..teachers.robustbench_bridge import fetch_teacher as fetch

    card = create("teacher", request.teacher)
    paths = fetch(card, request.model_dir)
    model = load_teacher(card, request.model_dir)
    click.echo(f"{request.teacher}: {', '.join(map(str, paths))} ok, {_parameter_count(model)}")


def build_teacher(request: TeacherRequest) -> None:
    from ..console import make_console
    from ..run.options import RunOptions
    from ..run.progress import epoch_progress
    from ..teachers.build import build_teacher as build
    from ..training.engine import pick_device

    options = RunOptions(console=make_console())
    measured = build(
        create("teacher", request.teacher),
        request.model_dir,
        pick_device(request.device or "auto"),
        n_examples=request.n_examples,
        progress=epoch_progress(options, request.teacher),
        data_dir=request.data_dir,
    )
    click.echo(json.dumps(measured, indent=2, default=str))
