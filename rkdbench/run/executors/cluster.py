"""What the cluster executors (Ray, Slurm) share: the environment a driver passes to its tasks, the refusal of a
sqlite store on more than one node (with the `rkdbench server` command to use instead), the line printed when a
cell ends, and the bounded wait, after cancelling, until no cancelled cell's run is still RUNNING."""

from __future__ import annotations

import os
import time

from ...attack_traits import ranked_accuracy
from ...errors import UserError

__all__ = [
    "SERVER_HINT",
    "ENV_PREFIXES",
    "CANCEL_WAIT_S",
    "shared_env",
    "refuse_sqlite",
    "end_line",
    "wait_until_stopped",
]

SERVER_HINT = (
    "start a team tracking server on a machine every node reaches (`rkdbench server --host 0.0.0.0 "
    "--backend-store-uri postgresql+psycopg2://USER@HOST:PORT/DB`) and set "
    "MLFLOW_TRACKING_URI=http://SERVER:5000 for the driver"
)
ENV_PREFIXES = ("MLFLOW_", "RKDBENCH_")  # tracking URI and credentials, plugin filters, model/data dirs
CANCEL_WAIT_S = 60.0  # how long Ctrl-C waits for cancelled cells to record KILLED


def shared_env(tracking_uri: str) -> dict[str, str]:
    """The driver's `MLFLOW_*` and `RKDBENCH_*` variables, with the store it uses, for its tasks."""
    env = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIXES)}
    env["MLFLOW_TRACKING_URI"] = tracking_uri
    return env


def refuse_sqlite(tracking_uri: str, nodes: int, cluster: str) -> None:
    """A sqlite store lives on one machine: refuse it for `cluster` (words: "Ray cluster 10.0.0.1:6379") when it
    has several nodes, with the command of the store to use instead."""
    if nodes > 1 and tracking_uri.startswith("sqlite:"):
        raise UserError(
            f"a sqlite store ({tracking_uri}) cannot be shared by the {nodes} nodes of {cluster}; {SERVER_HINT}"
        )


def end_line(position: str, outcome) -> str:
    """`[3/8] finished pgd-at / cnn-tiny / seed 2: clean 91.0%, AA 40.2% (run ...)`, or the error."""
    metrics = outcome.metrics
    protocol = outcome.cell.protocol
    ranked = ranked_accuracy(metrics, protocol.eval.attacks, "test.", protocol.eval.rank_by)
    detail = (
        f"clean {metrics['test.clean_acc']:.1%}, {ranked[0]} {ranked[1]:.1%}"
        if ranked and "test.clean_acc" in metrics
        else outcome.error
    )
    color = {"failed": "red", "finished": "bold"}.get(outcome.status, "dim")
    return (
        f"[{color}]{position} {outcome.status}[/] {outcome.cell.label}{': ' + detail if detail else ''}"
        f"{' [dim](run ' + outcome.run_id + ')[/]' if outcome.run_id else ''}"
    )


def wait_until_stopped(tracker, cells: list, timeout: float = CANCEL_WAIT_S) -> None:
    """A cancelled task stops some time after it was told to; leaving at once would leave its run RUNNING in the
    store until the task's own KILLED bookkeeping lands, so wait (bounded) until none of the cells' runs is."""
    from ..cell import protocol_experiment

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = [tracker.find_run(protocol_experiment(tracker, cell.protocol), cell.key) for cell in cells]
        if not any(run is not None and run.info.status == "RUNNING" for run in runs):
            return
        time.sleep(0.5)
