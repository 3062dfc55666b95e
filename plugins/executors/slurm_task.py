"""One Slurm array task: one cell, through the same loop as a local worker, surviving time limits and preemption.

`CellTask` is a submitit `Checkpointable`. Before the time limit (and on preemption, where the cluster signals
it) Slurm sends USR2; submitit's handler calls `checkpoint()`, which resubmits the same task unchanged, runs
`scontrol requeue` and exits by raising `SystemExit` wherever the cell was. The safe point is the engine's
per-epoch checkpoint (`last.pt`, written atomically), so at most the epochs since it are lost; `run_cell` marks
the run KILLED on the way out and the requeued task resumes THE SAME MLflow run from that checkpoint under the
cell's lease. On the last allowed time limit submitit refuses to requeue: the run is left KILLED (resumable)
and the task returns a failed outcome saying so. Ctrl-C on the driver reaches a running task as SIGINT
(`scancel --signal=INT`), which `run_cell` also records as KILLED.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import signal
import socket
import threading
from dataclasses import dataclass
from typing import Any

import submitit
from submitit.core.utils import UncompletedJobError

__all__ = ["CellTask", "OutOfRequeues"]


class OutOfRequeues(SystemExit):
    """The time limit came once more than the requeues allow: stop the cell as an interruption (run KILLED)."""


def _on_last_timeout(handler: Any):
    """submitit's USR2 handler, with its "timed-out too many times" (an Exception a cell would record as its own
    failure) turned into an interruption."""

    def on_signal(signum: int, frame: Any) -> None:
        try:
            handler(signum, frame)
        except UncompletedJobError as exc:
            raise OutOfRequeues(str(exc)) from None

    return on_signal


@dataclass
class CellTask(submitit.helpers.Checkpointable):
    """Called as `task(cell, position)` in a Slurm task, `cell` pickled; returns the cell's `CellOutcome`.

    submitit sets its USR2 handler only once it has unpickled the task and its arguments; rkdbench's cells and run
    options import torch when unpickled (seconds, during which a USR2 would kill the task), so they travel as
    bytes: `shared` is the pickled (run options, environment, `--plugins-dir` folders, torch threads) that every
    task of a submission shares, unpickled here once the handler is set."""

    shared: bytes
    requeues: int

    def __call__(self, cell: bytes, position: str) -> Any:
        usr2 = getattr(signal, "SIG" + submitit.JobEnvironment.USR_SIG)
        if callable(signal.getsignal(usr2)):  # submitit's, installed before this call
            signal.signal(usr2, _on_last_timeout(signal.getsignal(usr2)))
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.default_int_handler)  # scancel --signal=INT: a Ctrl-C
        job = os.environ.get("SLURM_ARRAY_JOB_ID", os.environ.get("SLURM_JOB_ID", "?"))
        job += f"_{os.environ['SLURM_ARRAY_TASK_ID']}" if "SLURM_ARRAY_TASK_ID" in os.environ else ""
        try:
            options, env, plugin_dirs, threads = pickle.loads(self.shared)
            os.environ.update(env)
            return self._run(pickle.loads(cell), position, job, options, plugin_dirs, threads)
        except OutOfRequeues:  # whenever it came: in the cell (its run is KILLED) or while the task started
            from rkdbench import CellOutcome

            return CellOutcome(
                pickle.loads(cell),
                "failed",
                error=f"left resumable: it reached the time limit {self.requeues + 1} times (task {job}, "
                f"{self.requeues} requeues); its run resumes from its last epoch checkpoint on the next "
                f"`rkdbench run` (perhaps with a longer --time-limit)",
            )

    def _run(self, cell: Any, position: str, job: str, options: Any, plugin_dirs: list[str], threads: int) -> Any:
        from rkdbench import Tracker, make_console, prepare_worker, run_cells, say

        restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)
        options = dataclasses.replace(options, console=make_console())  # per-epoch lines into the task's log
        say(options, f"{position} {cell.label}: task {job} on {socket.gethostname()} (start {restarts + 1})")
        prepare_worker([cell], plugin_dirs, threads)  # the cell came without its method object: built here
        return run_cells([cell], Tracker(options.results), options, report=lambda *_: None, worker=f" {job}")[0]
