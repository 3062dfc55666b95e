"""Option help texts and option sets shared by several commands."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import click

__all__ = ["RESULTS_HELP", "MODEL_DIR_HELP", "DATA_DIR_HELP", "DEVICE_OPTION", "COMMON_RUN_OPTIONS", "with_options"]

RESULTS_HELP = "Results folder: holds mlflow.db, artifacts and cell checkpoints."
MODEL_DIR_HELP = (
    "Teacher checkpoints in RobustBench's layout (default: $RKDBENCH_MODEL_DIR or ~/.cache/rkdbench/models)."
)
DATA_DIR_HELP = (
    "Dataset files in torchvision's layout, e.g. cifar-10-batches-py/ (default: $RKDBENCH_DATA_DIR or "
    "~/.cache/rkdbench/data; a protocol's data_root wins)."
)

DEVICE_OPTION = click.option(
    "--device",
    type=click.Choice(["cpu", "cuda"]),
    default=None,
    help="Override the protocol's device (default: CUDA when present).",
)

COMMON_RUN_OPTIONS = [
    click.option(
        "--set",
        "sets",
        multiple=True,
        metavar="KEY=VALUE",
        help="Override a protocol field (train.epochs=1, eval.n_examples=50, threat.eps=0.1) or a method "
        "parameter (method.ard.temperature=1). Part of the cell key. Repeatable.",
    ),
    click.option("--results", default="rkdbench-results", show_default=True, help=RESULTS_HELP),
    click.option("--model-dir", default=None, help=MODEL_DIR_HELP),
    click.option("--data-dir", default=None, help=DATA_DIR_HELP),
    DEVICE_OPTION,
    click.option("--quiet", is_flag=True, help="Print only errors and the leaderboard."),
    click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="No progress; print a JSON summary of the cells (status, run id, metrics) for scripts.",
    ),
]


def with_options(options: Sequence[Callable]) -> Callable:
    """Apply a list of click options in the order listed (the order `--help` shows them)."""

    def wrap(fn):
        for option in reversed(options):
            fn = option(fn)
        return fn

    return wrap
