"""`rkdbench tune`: options to a `TuneRequest`, run by rkdbench.app.tune. It takes what `rkdbench run` takes (the
common run options, `--set`, `--dry-run`, `--executor` and each executor's options) plus the study's."""

from __future__ import annotations

import sys

import click

from .executors import ExecutorCommand, given_executor_options
from .options import COMMON_RUN_OPTIONS, with_options
from .run import run_options

__all__ = ["tune"]


@click.command(cls=ExecutorCommand)
@click.argument("suite", required=False)
@click.option(
    "--budget",
    type=int,
    default=None,
    help="Finished trials per method (every method gets exactly this many; default: the protocol's [tune] budget).",
)
@click.option(
    "--sampler",
    default=None,
    metavar="qmc|random|tpe",
    help="How trials are drawn, seeded (default: the protocol's [tune] sampler, qmc: the same Sobol points for "
    "every method).",
)
@click.option(
    "--seed", type=int, default=None, help="The sampler's seed and the trials' training seed (default: [tune] seed, 0)."
)
@click.option(
    "--objective",
    default=None,
    metavar="METRIC",
    help="The validation metric a trial maximizes at its last epoch: val.pgd_acc (default) or val.clean_acc; never "
    "a test-split metric.",
)
@click.option(
    "--pruner",
    default=None,
    metavar="none|asha",
    help="asha: stop unpromising trials early on their per-epoch objective (the budget is then also reported in "
    "epochs and GPU-hours).",
)
@click.option(
    "--study-storage",
    default=None,
    metavar="URL",
    help="Where the studies live: a PostgreSQL URL for workers on several machines (default: "
    "$RKDBENCH_STUDY_STORAGE, else RESULTS/optuna.db).",
)
@with_options(COMMON_RUN_OPTIONS)
@click.option("--build-teachers", is_flag=True, help="Build missing harness teachers (e.g. the digits teacher) first.")
@click.option(
    "--dry-run",
    is_flag=True,
    help="List the studies (spaces, trial 0, trials left, predicted time) and the selected cells to run, and exit.",
)
@click.option(
    "--gpu-tflops", type=float, default=None, help="Sustained GPU throughput for --dry-run's FLOP-based estimate."
)
@click.option(
    "--dashboard",
    is_flag=True,
    help="Serve optuna-dashboard on the study storage at http://127.0.0.1:PORT (loopback only); no SUITE needed.",
)
@click.option("--port", type=int, default=8080, show_default=True, help="The dashboard's port.")
def tune(
    suite,
    budget,
    sampler,
    seed,
    objective,
    pruner,
    study_storage,
    sets,
    results,
    model_dir,
    data_dir,
    device,
    quiet,
    as_json,
    build_teachers,
    dry_run,
    gpu_tflops,
    dashboard,
    port,
    executor,
    executor_config,
    **executor_values,
) -> None:
    """Tune every method of SUITE with the same budget on the validation split, then run each method's selected
    configuration with the suite's seeds and the full evaluation. Trial 0 of every study is the official recipe;
    trials run as cells through the executor (killed and restarted, tune continues the same studies)."""
    from ..app.tune import TuneRequest, tune_suite_request

    sys.exit(
        tune_suite_request(
            TuneRequest(
                suite,
                tuple(sets),
                run_options(results, model_dir, data_dir, device, build_teachers),
                executor=executor,
                executor_options=given_executor_options(click.get_current_context(), executor_values),
                executor_config=executor_config,
                budget=budget,
                sampler=sampler,
                seed=seed,
                objective=objective,
                pruner=pruner,
                study_storage=study_storage,
                quiet=quiet,
                as_json=as_json,
                dry_run=dry_run,
                gpu_tflops=gpu_tflops,
                dashboard=dashboard,
                port=port,
            )
        )
    )
