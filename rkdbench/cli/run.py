"""`rkdbench run` and `rkdbench demo`: options to a `SuiteRequest`, run by rkdbench.run.pipeline."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .options import COMMON_RUN_OPTIONS, with_options

__all__ = ["run", "demo", "DEMO_WORKERS", "SLURM_OPTIONS"]


# The Slurm executor's options (rkdbench.run.executors.slurm_options.SlurmOptions, whose help they repeat in
# short), declared here by hand so that `rkdbench --help` imports no torch; None: not given (the settings file
# decides). Temporary wiring until executors register their options themselves.
SLURM_OPTIONS = [
    click.option("--partition", default=None, help="Slurm partition (default: the cluster's default)."),
    click.option("--time-limit", type=int, default=None, help="Minutes per Slurm task; at it a task requeues."),
    click.option("--account", default=None, help="Slurm account (sbatch --account)."),
    click.option("--qos", default=None, help="Slurm QOS (sbatch --qos)."),
    click.option("--mem-gb", type=float, default=None, help="Memory per Slurm task in GB."),
    click.option("--array-parallelism", type=int, default=None, help="At most this many Slurm tasks at once."),
    click.option("--signal-delay-s", type=int, default=None, help="Seconds before the time limit a task stops."),
    click.option("--requeues", type=int, default=None, help="Time-limit requeues per Slurm task (default 3)."),
    click.option("--sbatch", multiple=True, metavar="KEY=VALUE", help="Extra sbatch parameter; repeatable."),
    click.option("--setup", multiple=True, metavar="LINE", help="Shell line run before each Slurm task."),
    click.option("--detach", is_flag=True, default=None, help="Return once the Slurm array is submitted."),
]


# one worker: on 2 cores the demo meets its time goals serially (README); `--workers 2` was measured 1.21x
# faster on a short digits-quick, not worth two more processes importing torch on a first contact
DEMO_WORKERS = 1


@click.command()
@click.argument("suite")
@with_options(COMMON_RUN_OPTIONS)
@click.option("--build-teachers", is_flag=True, help="Build missing harness teachers (e.g. the digits teacher) first.")
@click.option(
    "--dry-run",
    is_flag=True,
    help="List the cells (keys, estimated passes, FLOPs, GPU-hours) and missing teachers, and exit.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Worker processes on this machine sharing the cells (each with cpu_count/N torch threads unless "
    "OMP_NUM_THREADS is set). Separate `rkdbench run` processes on one store share them as well.",
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
@click.option(
    "--executor",
    type=click.Choice(["local", "ray", "slurm"]),
    default="local",
    show_default=True,
    help="local: this process (or --workers N processes on this machine); ray: one Ray task per cell, "
    "with the protocol's [resources] (extra rkdbench[ray]); slurm: the unfinished cells as one Slurm job "
    "array (extra rkdbench[slurm]); see docs/scale.md.",
)
@click.option(
    "--address",
    default=None,
    metavar="auto|HOST:PORT",
    help="With --executor ray: the Ray cluster to join (default: start a local one sized to this machine).",
)
@with_options(SLURM_OPTIONS)
@click.option(
    "--executor-config",
    default=None,
    metavar="FILE",
    help="With --executor slurm: the TOML file whose [executor.slurm] table holds your Slurm settings "
    "(default: $RKDBENCH_CONFIG, else ~/.config/rkdbench/config.toml when it exists); options given here win.",
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
    workers,
    shard,
    gpu_tflops,
    executor,
    address,
    executor_config,
    **executor_options,
) -> None:
    """Run SUITE (a built-in name such as digits-quick, or a path to a suite .toml). Finished cells are
    skipped, interrupted ones resume from their last checkpoint in the same MLflow run. --dry-run lists the
    cells with their estimated cost and the teacher files that are missing."""
    from ..run.pipeline import SuiteRequest, run_suite_request

    sys.exit(
        run_suite_request(
            SuiteRequest(
                suite,
                tuple(sets),
                results,
                model_dir=model_dir,
                data_dir=data_dir,
                device=device,
                quiet=quiet,
                as_json=as_json,
                build_teachers=build_teachers,
                dry_run=dry_run,
                workers=workers,
                shard=shard,
                gpu_tflops=gpu_tflops,
                executor=executor,
                address=address,
                executor_options=tuple(executor_options.items()),
                executor_config=executor_config,
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
    from ..run.pipeline import SuiteRequest, run_suite_request

    sys.exit(
        run_suite_request(
            SuiteRequest(
                suite,
                tuple(sets),
                results,
                model_dir=model_dir,
                data_dir=data_dir,
                device=device,
                quiet=quiet,
                as_json=as_json,
                build_teachers=True,
                workers=DEMO_WORKERS,
                leaderboard_dir=leaderboard_dir if leaderboard_dir is not None else str(Path(results) / "leaderboards"),
            )
        )
    )
