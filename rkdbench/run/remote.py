"""What executors whose cells run in other processes or on other machines (local workers, Ray tasks, Slurm array
tasks) share, so each of them is only its scheduler's glue. On the driver, `remote_setup` writes a marker file into
the results folder and gathers what a worker needs to act like the driver (the `MLFLOW_*`/`RKDBENCH_*` environment,
the `--plugins-dir` folders, absolute paths); in the worker, `run_remote_cell` applies it, checks that the worker sees
the driver's results folder (a cluster needs a shared filesystem), loads the plugins, rebuilds the cell's method
object (cells travel without it) and runs the cell through the exactly-once `run_cell`. `check_store_for_cluster`
refuses a sqlite store on a multi-node cluster with the command of the store to use instead; `CellResources` is
what one cell asks a scheduler for, from the protocol's `[resources]`; `end_line` is the line printed as a cell ends.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..attacks.traits import CLEAN, ranked_accuracy
from ..config import Cell, ResourcesConfig
from ..contracts.build import method_of
from ..errors import UserError
from ..plugins import load_plugins_dir, loaded_plugin_dirs
from ..tracking import Tracker
from ..tracking.schema import metric_key, selection_split
from .cell import protocol_experiment, run_cell
from .lease import CellLease
from .options import CellOutcome, RunOptions
from .progress import say

__all__ = [
    "SERVER_HINT",
    "MARKER_PREFIX",
    "CellResources",
    "RemoteSetup",
    "check_store_for_cluster",
    "ensure_experiments",
    "remote_setup",
    "worker_environment",
    "worker_options",
    "cell_run",
    "prepare_worker",
    "run_remote_cell",
    "wait_for_cancelled",
    "end_line",
]

MARKER_PREFIX = ".rkdbench-driver-"
ENV_PREFIXES = ("MLFLOW_", "RKDBENCH_")  # tracking URI and credentials, plugin filters, model/data dirs
SERVER_HINT = (
    "start a team tracking server on a machine every node reaches (`rkdbench server --host 0.0.0.0 "
    "--backend-store-uri postgresql+psycopg2://USER@HOST:PORT/DB`) and set "
    "MLFLOW_TRACKING_URI=http://SERVER:5000 for the driver"
)


@dataclass(frozen=True)
class CellResources:
    """What one cell asks the scheduler for; `cpus` is also torch's intra-op thread count in the worker."""

    gpus: float
    cpus: int

    @classmethod
    def of(cls, protocol_resources: ResourcesConfig, cluster_gpus: float) -> CellResources:
        gpus = protocol_resources.gpus_per_cell
        return cls(
            gpus=(1.0 if cluster_gpus >= 1 else 0.0) if gpus is None else gpus, cpus=protocol_resources.cpus_per_cell
        )


@dataclass(frozen=True)
class RemoteSetup:
    """What a worker needs to act like the driver: its environment, plugin folders and the results marker's name."""

    env: dict[str, str]
    plugin_dirs: list[str]
    marker: str


def check_store_for_cluster(tracking_uri: str, alive_nodes: int, cluster: str) -> None:
    """A sqlite store lives on one machine: refuse it for a cluster of several nodes, with the store to use instead."""
    if alive_nodes > 1 and tracking_uri.startswith("sqlite:"):
        raise UserError(
            f"a sqlite store ({tracking_uri}) cannot be shared by the {alive_nodes} nodes of {cluster}; {SERVER_HINT}"
        )


def ensure_experiments(tracker: Tracker, cells: list[Cell]) -> None:
    """Create each protocol's experiment once, on the driver, rather than raced by the first workers."""
    for protocol in {cell.home.experiment_name: cell.home for cell in cells}.values():
        protocol_experiment(tracker, protocol)


def worker_environment(tracker: Tracker) -> dict[str, str]:
    """The driver's `MLFLOW_*`/`RKDBENCH_*` environment (tracking URI and credentials, plugin filters, folders)."""
    env = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIXES)}
    env["MLFLOW_TRACKING_URI"] = tracker.uri
    return env


def worker_options(options: RunOptions) -> RunOptions:
    """The options a worker elsewhere runs with: absolute paths (its working folder differs), no console."""
    return dataclasses.replace(
        options,
        results=Path(options.results).resolve(),
        console=None,
        model_dir=Path(options.model_dir).resolve(),
        data_dir=Path(options.data_dir).resolve() if options.data_dir else None,
    )


def remote_setup(tracker: Tracker, options: RunOptions) -> tuple[RemoteSetup, RunOptions]:
    """On the driver: write the results marker and return the setup plus the options a worker runs with. Remove
    `options.results / setup.marker` when the cells have ended."""
    remote = worker_options(options)
    marker = f"{MARKER_PREFIX}{secrets.token_hex(8)}"
    (remote.results / marker).write_text("written by the rkdbench driver; workers check that they see it\n")
    return RemoteSetup(worker_environment(tracker), loaded_plugin_dirs(), marker), remote


def cell_run(tracker: Tracker, cell: Cell):
    """The cell's MLflow run in its experiment (`Cell.home`: a tuning trial's is its suite protocol's; the counted
    run), or None."""
    return tracker.find_run(protocol_experiment(tracker, cell.home), cell.key)


def prepare_worker(cells: list[Cell], plugin_dirs: list[str], threads: int | None) -> None:
    """In a fresh worker process: torch's thread count (unless None), the driver's `--plugins-dir` folders, and the
    cells' method objects (built here, now that their plugins are loaded)."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    for folder in plugin_dirs:
        load_plugins_dir(folder)
    for cell in cells:
        method_of(cell)


def run_remote_cell(
    cell: Cell,
    options: RunOptions,
    position: str,
    setup: RemoteSetup,
    threads: int,
    on_start: Callable[[], None] | None = None,
) -> CellOutcome:
    """In a worker: the driver's environment, the shared-folder check, plugins, then the exactly-once `run_cell`."""
    os.environ.update(setup.env)
    if not (Path(options.results) / setup.marker).is_file():
        return CellOutcome(
            cell,
            "failed",
            error=f"results folder {options.results} is not visible on worker node {socket.gethostname()} (no "
            f"{setup.marker}): --results must be a filesystem shared by every node of the cluster",
        )
    if threading.current_thread() is threading.main_thread():
        # a scheduler cancels a running task by simulating SIGINT, which Python ignores when the worker inherited
        # SIGINT as ignored (a head started in the background of a script): Ctrl-C would leave the cell RUNNING
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if on_start is not None:
        on_start()
    prepare_worker([cell], setup.plugin_dirs, threads)
    return run_cell(cell, Tracker(options.results), options, position)


def wait_for_cancelled(
    started: list[tuple[Cell, str]], results: Path, options: RunOptions, cancel: Callable[[], object]
) -> None:
    """A cancelled task's result is ready before its worker has run `run_cell`'s KILLED bookkeeping; leaving now
    would end the job and its workers with the runs still RUNNING. A worker holds its cell's lease until that
    bookkeeping is delivered (the OS drops it if the worker dies): wait while a cancelled cell's lease is held by
    the worker its task started in (`started`: (cell, "host:pid")), however long the machine's load makes that.
    No deadline, because a starved worker outlived a fixed one; `cancel` is sent again every 5 s (Ray lost the one
    a worker stopped for 90 s could not take); a second Ctrl-C leaves them (they resume on the next run)."""
    leases = [(CellLease(Path(results) / "cells" / cell.key), worker) for cell, worker in started]
    if leases:
        say(options, f"[yellow]waiting for {len(leases)} cancelled cell(s) to record KILLED (Ctrl-C: leave them)[/]")
    last = time.monotonic()
    while any(lease.busy() and lease.holder().startswith(f"{worker} ") for lease, worker in leases):
        time.sleep(0.2)
        if time.monotonic() - last > 5:
            cancel()
            last = time.monotonic()


def end_line(position: str, outcome: CellOutcome) -> str:
    """The line printed when a cell ends: status, label, clean and ranked accuracy (or the error), run id."""
    metrics = outcome.metrics
    protocol = outcome.cell.protocol
    split = selection_split("last")
    clean = metric_key(split, CLEAN)
    ranked = ranked_accuracy(metrics, protocol.eval.attacks, split, protocol.eval.rank_by)
    detail = (
        f"clean {metrics[clean]:.1%}, {ranked[0]} {ranked[1]:.1%}" if ranked and clean in metrics else outcome.error
    )
    color = {"failed": "red", "finished": "bold"}.get(outcome.status, "dim")
    return (
        f"[{color}]{position} {outcome.status}[/] {outcome.cell.label}{': ' + detail if detail else ''}"
        f"{' [dim](run ' + outcome.run_id + ')[/]' if outcome.run_id else ''}"
    )
