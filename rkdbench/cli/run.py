"""`rkdbench run` and `rkdbench demo`: options to a `SuiteRequest`, run by rkdbench.app.run."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .executors import ExecutorCommand, given_executor_options
from .options import COMMON_RUN_OPTIONS, with_options

__all__ = ["run", "demo", "DEMO_WORKERS", "run_options"]

# one worker: on 2 cores the demo meets its time goals serially (README); `--workers 2` was measured 1.21x
# faster on a short digits-quick, not worth two more processes importing torch on a first contact
DEMO_WORKERS = 1


@click.command(cls=ExecutorCommand)
@click.argument("suite")
@with_options(COMMON_RUN_OPTIONS)
@click.option("--build-teachers", is_flag=True, help="Build missing harness teachers (e.g. the digits teacher) first.")
@click.option(
    "--dry-run",
    is_flag=True,
    help="List the cells (keys, estimated passes, FLOPs, GPU-hours) and missing teachers, and exit.",
)
@click.option(
    "--shard",
    default="1/1",
    show_default=True,
    metavar="I/N",
    help="Deprecated: only every N-th cell starting at the I-th. N plain `rkdbench run` processes on one "
    "store now share the cells by themselves.",
)
@click.option(
    "--gpu-tflops",
    type=float,
    default=None,
    help="Sustained GPU throughput for --dry-run's GPU-hour estimate (default 40).",
)
def run(
    suite: str,
    sets,
    results,
    model_dir,
    data_dir,
    device,
    quiet,
    as_json,
    build_teachers,
    dry_run,
    shard,
    gpu_tflops,
    executor,
    executor_config,
    **executor_values,
) -> None:
    """Run SUITE (a built-in name such as digits-quick, or a path to a suite .toml). Finished cells are
    skipped, interrupted ones resume from their last checkpoint in the same MLflow run. --dry-run lists the
    cells with their estimated cost and the teacher files that are missing."""
    from ..app.run import SuiteRequest, parse_shard, run_suite_request

    sys.exit(
        run_suite_request(
            SuiteRequest(
                suite,
                tuple(sets),
                run_options(results, model_dir, data_dir, device, build_teachers, parse_shard(shard)),
                executor=executor,
                executor_options=given_executor_options(click.get_current_context(), executor_values),
                executor_config=executor_config,
                quiet=quiet,
                as_json=as_json,
                dry_run=dry_run,
                gpu_tflops=gpu_tflops,
            )
        )
    )


@click.command()
@with_options(COMMON_RUN_OPTIONS)
@click.option("--suite", default="digits-quick", show_default=True, help="The suite the demo runs.")
@click.option(
    "--leaderboards",
    "leaderboard_dir",
    default=None,
    help="Folder the leaderboard files are written to  [default: RESULTS/leaderboards; the clone's "
    "committed leaderboards/ only when named here]",
)
def demo(sets, results, model_dir, data_dir, device, quiet, as_json, suite, leaderboard_dir) -> None:
    """The embedded digits suite end to end, offline: build the teacher (once), train PGD-AT, ARD and RSLAD
    students, evaluate with PGD-20 and AutoAttack on the suite's test points, record in MLflow, and print a
    compact leaderboard (the full one is written under the results folder)."""
    from ..app.run import SuiteRequest, run_suite_request

    sys.exit(
        run_suite_request(
            SuiteRequest(
                suite,
                tuple(sets),
                run_options(results, model_dir, data_dir, device, build_teachers=True),
                executor_options={"workers": DEMO_WORKERS},
                quiet=quiet,
                as_json=as_json,
                leaderboard_dir=leaderboard_dir if leaderboard_dir is not None else str(Path(results) / "leaderboards"),
            )
        )
    )


def run_options(
    results: str,
    model_dir: str | None,
    data_dir: str | None,
    device: str | None,
    build_teachers: bool,
    shard: tuple[int, int] = (0, 1),
):
    """The `RunOptions` of the common run options (`--model-dir` absent: $RKDBENCH_MODEL_DIR or the default)."""
    from ..run.options import RunOptions
    from ..teachers.card import model_dir_path

    return RunOptions(
        results=Path(results),
        model_dir=model_dir_path(model_dir),
        data_dir=Path(data_dir) if data_dir else None,
        device=device,
        build_teachers=build_teachers,
        shard=shard,
    )
