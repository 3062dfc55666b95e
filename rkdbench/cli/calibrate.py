"""`rkdbench calibrate`: options to a `CalibrateRequest`, measured by rkdbench.app.dry_run.calibrate_suite."""

from __future__ import annotations

import click

from ..cost.repeat import REPEATS, TOLERANCE
from .options import DEVICE_OPTION

__all__ = ["calibrate"]


@click.command()
@click.argument("suite")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Protocol or method overrides, as for `run`.")
@DEVICE_OPTION
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Training steps per timed epoch (one warm-up epoch, then one per --repeat).",
)
@click.option(
    "--points",
    type=click.IntRange(min=2),
    default=16,
    show_default=True,
    help="Points per timed attack batch (at most the evaluation batch size; on a GPU, the batch size "
    "gives the most faithful numbers).",
)
@click.option("--redo", is_flag=True, help="Measure again what is already cached.")
@click.option(
    "--repeat",
    "repeats",
    type=click.IntRange(min=1),
    default=REPEATS,
    show_default=True,
    help="Repetitions of each measurement; the median is cached with their spread.",
)
@click.option(
    "--tolerance",
    type=click.FloatRange(min=0.0, min_open=True),
    default=TOLERANCE,
    show_default=True,
    help="Largest (max - min) / median of the repetitions cached without doubt; a wider one (a busy machine) is "
    "said, cached as doubtful and measured again by the next calibrate.",
)
def calibrate(suite, sets, device, steps, points, redo, repeats, tolerance) -> None:
    """Time a few training steps of every (method, student, teacher) combination of SUITE and a few batches of every
    evaluation attack on this device; cached per device, torch version and thread count in
    $RKDBENCH_CALIBRATION_DIR (default ~/.cache/rkdbench/calibration). `rkdbench run SUITE --dry-run` then
    predicts each cell's wall time from it."""
    from ..app.dry_run import CalibrateRequest, calibrate_suite

    calibrate_suite(
        CalibrateRequest(
            suite,
            tuple(sets),
            device=device,
            steps=steps,
            points=points,
            redo=redo,
            repeats=repeats,
            tolerance=tolerance,
        )
    )
