"""The Slurm executor: a suite's unfinished cells as ONE job array (submitit's `map_array`), one cell per task,
each through the same loop as a local worker (`rkdbench.run_cells`: lease, resume, journal), surviving time limits
and preemption (`slurm_task.CellTask`).

Before anything (`check`): sbatch and submitit are there, the extra sbatch parameters are KEY=VALUE, the
protocol's `[resources]` are whole GPUs, sbatch accepts the batch script (`sbatch --test-only`: an unknown
partition is sbatch's own words), a sqlite store is refused for a partition of several nodes, and so is a
results folder on this machine's own disk. Then `run` prepares (store, teachers), skips FINISHED cells, finds
the cells whose task of an earlier submission is still pending or running (the record `cells.json` of every
submission in `<results>/slurm/<array id>/`, and squeue) and submits the rest as one array, held until its record
is written: that record is also the marker each task's batch script checks first (a node that does not see it
fails the task with exit code 97 and the driver stops with one line naming the path; so does a task Slurm cannot
start because its log folder does not exist on the node). Per task: the protocol's cpus and GPUs, the user's
partition, time limit, account, QOS, memory and extra sbatch parameters (`SlurmOptions`, from the command line or
the `[executor.slurm]` table of the settings file), at most `array_parallelism` tasks at
once, logs in `<results>/slurm/<array id>/`. With `detach` it returns after submission; otherwise it waits,
printing each task's start, requeue and end and the counts of running and pending tasks. A task that ended
without a result (killed, out of memory, node lost) is resubmitted up to MAX_RESUBMITS times and resumes its
run from its checkpoint. Ctrl-C cancels the arrays (pending tasks, then SIGINT to the running ones, which mark
their runs KILLED; it waits for them to end) and every cell resumes on the next run. Task states come from
squeue, which lists ended tasks for a while (MinJobAge), and from submitit's result files: no Slurm accounting
database is needed.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import secrets
import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rkdbench import (
    RAN,
    Cell,
    CellOutcome,
    Executor,
    ResourcesConfig,
    RunOptions,
    Tracker,
    UserError,
    cell_run,
    check_store_for_cluster,
    end_line,
    ensure_experiments,
    hookimpl,
    loaded_plugin_dirs,
    say,
    suite_status,
    worker_environment,
    worker_options,
    write_text_atomic,
)

from . import slurm_cluster as slurm
from .slurm_options import SlurmOptions

__all__ = [
    "SlurmOptions",
    "SlurmExecutor",
    "TaskResources",
    "Submission",
    "task_resources",
    "sbatch_extra",
    "submit_parameters",
    "MAX_RESUBMITS",
    "NOT_SHARED_EXIT",
    "RECORD",
]

ACTIVE_STATES = ("CONFIGURING", "RUNNING", "COMPLETING")  # squeue states of a task whose process may still run

MAX_RESUBMITS = 3  # per cell, for tasks that ended without a result; time-limit requeues are SlurmOptions.requeues
NOT_SHARED_EXIT = 97  # a task's batch script that does not see its submission's record exits with this code
RECORD = "cells.json"
POLL_ENV = "RKDBENCH_SLURM_POLL_SECONDS"
POLL_SECONDS = 10.0  # how often the waiting driver asks squeue (one call for all its arrays)
RESULT_GRACE_S = 30.0  # a shared filesystem may show a COMPLETED task's result file a little after Slurm says so
EXTRA_HINT = "pip install 'rkdbench[slurm]'"
RESERVED = frozenset({"array", "output", "error", "open-mode", "hold", "signal", "job-name", "wrap"})  # set here


@dataclass(frozen=True)
class TaskResources:
    """What one task asks Slurm for; `cpus` is also torch's thread count in the task."""

    gpus: int
    cpus: int


def task_resources(resources: ResourcesConfig, partition_gpus: bool) -> TaskResources:
    """The protocol's `[resources]` per task: one GPU by default when the partition has GPUs; whole GPUs only."""
    gpus = resources.gpus_per_cell
    if gpus is not None and gpus != int(gpus):
        raise UserError(
            f"[resources] gpus_per_cell = {gpus:g}: a Slurm task gets whole GPUs; use a whole number "
            f"(--set resources.gpus_per_cell=1) or 0"
        )
    return TaskResources(gpus=(1 if partition_gpus else 0) if gpus is None else int(gpus), cpus=resources.cpus_per_cell)


def sbatch_extra(items: tuple[str, ...]) -> dict[str, Any]:
    """`--sbatch KEY=VALUE` (or `KEY`: a flag) items as submitit's additional sbatch parameters."""
    extra: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().removeprefix("--")
        if not re.fullmatch(r"[a-z][a-z0-9_-]*", key) or (sep and not value):
            raise UserError(
                f"--sbatch {item!r}: expected KEY=VALUE (an sbatch option without its dashes, e.g. "
                f"constraint=a100) or KEY for a flag (e.g. exclusive)"
            )
        if key.replace("_", "-") in RESERVED:
            raise UserError(f"--sbatch {item!r}: rkdbench sets --{key} itself; allowed: any other sbatch option")
        extra[key.replace("_", "-")] = value if sep else True
    return extra


def submit_parameters(
    options: SlurmOptions, resources: TaskResources, time_limit: int, name: str, setup: list[str]
) -> dict[str, Any]:
    """submitit AutoExecutor parameters of one array: its generic names, and `slurm_` ones for the rest. Every
    array is submitted held (released once its record is written)."""
    parameters: dict[str, Any] = {
        "name": name,
        "timeout_min": time_limit,
        "cpus_per_task": resources.cpus,
        "slurm_signal_delay_s": options.signal_delay_s,
        "slurm_setup": [*options.setup, *setup],
        "slurm_additional_parameters": {**sbatch_extra(options.sbatch), "hold": True},
    }
    if resources.gpus:
        parameters["gpus_per_node"] = resources.gpus
    if options.mem_gb is not None:
        parameters["mem_gb"] = options.mem_gb
    for field in ("partition", "account", "qos", "array_parallelism"):
        if getattr(options, field) is not None:
            parameters[f"slurm_{field}"] = getattr(options, field)
    return parameters


def _marker_check(folder: Path) -> str:
    """The batch script's first line: the submission's record must be visible on the node."""
    record = shlex.quote(str(folder)) + '/"${SLURM_ARRAY_JOB_ID:-$SLURM_JOB_ID}"/' + RECORD
    return (
        f'test -e {record} || {{ echo "rkdbench: {folder} is not visible on $(hostname)" >&2; '
        f"exit {NOT_SHARED_EXIT}; }}"
    )


@dataclass(frozen=True)
class Submission:
    """One submitted array (or a single job, for one cell) as recorded in `<results>/slurm/<array>/cells.json`."""

    array: str
    name: str
    job_ids: tuple[str, ...]  # per task index: `<array>_<index>`, or `<array>` for a single job
    keys: tuple[str, ...]  # the cell key of each task
    folder: Path

    def write(self) -> None:
        record = {"array": self.array, "name": self.name, "job_ids": self.job_ids, "cells": self.keys}
        write_text_atomic(self.folder / RECORD, json.dumps(record, indent=1) + "\n")

    @classmethod
    def read(cls, path: Path) -> Submission | None:
        try:
            data = json.loads(path.read_text())
            return cls(data["array"], data["name"], tuple(data["job_ids"]), tuple(data["cells"]), path.parent)
        except (OSError, ValueError, KeyError, TypeError):
            return None  # not one of ours, or half a record of a crashed driver: nothing runs from it


@dataclass
class _Task:
    """A cell's task as the driver follows it."""

    cell: Cell
    position: str
    submission: Submission
    index: int
    attempt: int = 1
    running: bool = False
    started: float | None = None
    ended_at: float | None = None  # first seen ended without a result

    @property
    def job_id(self) -> str:
        return self.submission.job_ids[self.index]

    def paths(self):
        from submitit.core.utils import JobPaths

        return JobPaths(self.submission.folder, job_id=self.job_id)


class _NotShared(Exception):
    pass


class SlurmExecutor(Executor):
    """`rkdbench run SUITE --executor slurm`: see the module docstring."""

    name = "slurm"
    description = "the unfinished cells as one Slurm job array (extra rkdbench[slurm]; see docs/scale.md)"
    Options = SlurmOptions

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._partition: slurm.Partition | None = None

    def parallelism(self, cells: list[Cell], options: RunOptions) -> int:
        return self.options.array_parallelism or len(cells)

    # ---- before anything -------------------------------------------------------------------------------
    def check(self, cells: list[Cell], run: RunOptions) -> None:
        """Bad input, one line each (UserError): nothing is prepared or submitted."""
        _import_submitit()
        for command in ("sbatch", "squeue", "srun"):
            if shutil.which(command) is None:
                raise UserError(
                    f"--executor slurm needs Slurm's `{command}` on PATH (run rkdbench on a machine that submits to "
                    f"your cluster, e.g. its login node) and submitit: {EXTRA_HINT}"
                )
        extra = sbatch_extra(self.options.sbatch)
        resources = {cell.protocol.resources for cell in cells}
        try:
            part: slurm.Partition | None = slurm.partition(self.options.partition)
        except UserError:
            part = None  # an unknown partition: said in sbatch's own words below
        import submitit

        executor = submitit.AutoExecutor(folder=Path(run.results).resolve() / "slurm" / "%A", cluster="slurm")
        for resource in resources:
            need = task_resources(resource, part is not None and part.gpus)
            # without --time-limit the partition's own limit is used, valid by definition: check with 1 minute
            parameters = submit_parameters(self.options, need, self.options.time_limit or 1, "rkdbench-check", [])
            executor.update_parameters(**parameters)
            # submitit 1.5.4 (pinned) writes the batch script: sbatch checks exactly what would be submitted
            script = executor._executor._make_submission_file_text("true", "check")
            asked = ", ".join(
                f"{k}={v}" for k, v in (("partition", self.options.partition), *extra.items()) if v is not None
            )
            slurm.test_submission(script, f"the Slurm settings ({asked or 'defaults'})")
        self._partition = part = part or slurm.partition(self.options.partition)
        check_store_for_cluster(Tracker(run.results).uri, len(part.nodes), f"Slurm partition {part.name}")
        slurm.check_shared(Path(run.results), part)

    # ---- the run ---------------------------------------------------------------------------------------
    def run(self, cells: list[Cell], tracker: Tracker, run: RunOptions, prepare) -> list[CellOutcome]:
        """Submit the unfinished cells (or find them submitted) and wait for them, unless detached."""
        part = self._partition or slurm.partition(self.options.partition)
        prepare(cells, tracker, run)
        ensure_experiments(tracker, cells)
        results = Path(run.results).resolve()
        positions = {cell.key: f"[{i}/{len(cells)}]" for i, cell in enumerate(cells, 1)}
        outcomes: dict[str, CellOutcome] = {}
        for cell in cells:
            found = cell_run(tracker, cell)
            if found is not None and found.info.status == "FINISHED":
                say(run, f"[dim]{positions[cell.key]} skip {cell.label}: finished in run {found.info.run_id}[/]")
                outcomes[cell.key] = CellOutcome(cell, "skipped", found.info.run_id)
        unfinished = [cell for cell in cells if cell.key not in outcomes]
        tasks = self._in_flight(results, unfinished, positions)
        if tasks:
            arrays = ", ".join(sorted({t.submission.array for t in tasks.values()}))
            say(run, f"slurm: {len(tasks)} cell(s) already in array {arrays} (pending or running): not submitted again")
        fresh = [cell for cell in unfinished if cell.key not in tasks]
        if fresh:
            tasks.update(self._submit(fresh, positions, results, run, tracker, part, attempt=1))
        elif not tasks:
            say(run, "slurm: nothing to submit: every cell is finished")
        if tasks and not self.options.detach:
            self._wait(tasks, outcomes, len(cells), results, run, tracker, part, positions)
        elif tasks:
            arrays = ", ".join(sorted({t.submission.array for t in tasks.values()}))
            say(
                run,
                f"slurm: detached; {len(tasks)} cell(s) in array {arrays} (squeue -j {arrays}; logs in "
                f"{results / 'slurm'}); the same command again reports them and resubmits what did not finish",
            )
        for key, task in tasks.items():
            outcomes.setdefault(key, CellOutcome(task.cell, "submitted", error=f"Slurm task {task.job_id}"))
        return [outcomes[cell.key] for cell in cells]

    def _in_flight(self, results: Path, cells: list[Cell], positions: dict[str, str]) -> dict[str, _Task]:
        """The cells whose task of an earlier submission is still pending or running: never submitted twice."""
        wanted = {cell.key: cell for cell in cells}
        submissions = [
            s for s in map(Submission.read, sorted((results / "slurm").glob(f"*/{RECORD}"))) if s is not None
        ]
        submissions = [s for s in submissions if wanted.keys() & set(s.keys)]
        rows = slurm.task_rows([s.array for s in submissions])
        if rows is None:
            raise UserError(
                "squeue does not answer: cannot tell which cells of earlier submissions in "
                f"{results / 'slurm'} still run (none is submitted twice); try again"
            )
        alive = {(r.array, r.index, r.name) for r in rows if r.state in slurm.ALIVE}
        tasks: dict[str, _Task] = {}
        for submission in submissions:
            for index, key in enumerate(submission.keys):
                if key in wanted and (submission.array, index, submission.name) in alive:
                    tasks[key] = _Task(wanted[key], positions[key], submission, index)
        return tasks

    def _submit(
        self,
        cells: list[Cell],
        positions: dict[str, str],
        results: Path,
        run: RunOptions,
        tracker: Tracker,
        part: slurm.Partition,
        attempt: int,
    ) -> dict[str, _Task]:
        """One held array of `cells`, its record written, then released; their tasks."""
        import submitit

        from .slurm_task import CellTask

        need = task_resources(cells[0].protocol.resources, part.gpus)
        time_limit = self.options.time_limit or part.time_limit_min
        name = f"rkdbench-{cells[0].suite}-{secrets.token_hex(3)}"
        folder = results / "slurm"
        executor = submitit.AutoExecutor(
            folder=folder / "%A", cluster="slurm", slurm_max_num_timeout=self.options.requeues
        )
        executor.update_parameters(**submit_parameters(self.options, need, time_limit, name, [_marker_check(folder)]))
        shared = pickle.dumps((worker_options(run), worker_environment(tracker), loaded_plugin_dirs(), need.cpus))
        task = CellTask(shared=shared, requeues=self.options.requeues)
        try:
            jobs = executor.map_array(task, [pickle.dumps(c) for c in cells], [positions[c.key] for c in cells])
        except (submitit.core.utils.FailedJobError, submitit.core.utils.FailedSubmissionError) as exc:
            raise UserError(f"sbatch failed: {slurm.one_line(str(exc))}") from None
        array = jobs[0].job_id.split("_")[0]
        submission = Submission(array, name, tuple(j.job_id for j in jobs), tuple(c.key for c in cells), folder / array)
        try:
            submission.write()  # before any task starts: the marker every task checks
            slurm.release(array)
        except BaseException:
            slurm.cancel([array])
            raise
        say(
            run,
            f"[bold]slurm[/]: {'array' if len(cells) > 1 else 'job'} {array} of {len(cells)} cell(s) submitted to "
            f"partition {part.name} ({need.cpus} CPU, {need.gpus} GPU, {time_limit} min per task"
            f"{', attempt ' + str(attempt) if attempt > 1 else ''}; logs in {submission.folder})",
        )
        return {cell.key: _Task(cell, positions[cell.key], submission, i, attempt) for i, cell in enumerate(cells)}

    # ---- waiting ---------------------------------------------------------------------------------------
    def _wait(
        self,
        tasks: dict[str, _Task],
        outcomes: dict[str, CellOutcome],
        total: int,
        results: Path,
        run: RunOptions,
        tracker: Tracker,
        part: slurm.Partition,
        positions: dict[str, str],
    ) -> None:
        poll = float(os.environ.get(POLL_ENV, POLL_SECONDS))
        seconds: list[float] = []
        shown: tuple[int, int] | None = None
        try:
            while tasks:
                rows = slurm.task_rows(sorted({t.submission.array for t in tasks.values()}))
                if rows is None:  # slurmctld busy or restarting: the tasks go on without us
                    time.sleep(poll)
                    continue
                by_task = {(r.array, r.index, r.name): r for r in rows}
                retry: list[_Task] = []
                for key, task in list(tasks.items()):
                    row = by_task.get((task.submission.array, task.index, task.submission.name))
                    outcome = self._follow(task, row, run, tracker, part)
                    if outcome == "retry":
                        retry.append(tasks.pop(key))
                    elif isinstance(outcome, CellOutcome):
                        del tasks[key]
                        outcome.cell = task.cell
                        outcomes[key] = outcome
                        if outcome.status in RAN and task.started is not None:
                            seconds.append(time.perf_counter() - task.started)
                        say(run, end_line(task.position, outcome))
                        parallel = self.parallelism([t.cell for t in tasks.values()], run) or 1
                        status = suite_status(list(outcomes.values()), total, seconds, parallel, run.predicted)
                        say(run, f"[dim]{status}[/]")
                if retry:
                    resubmitted = self._submit(
                        [t.cell for t in retry],
                        positions,
                        results,
                        run,
                        tracker,
                        part,
                        1 + max(t.attempt for t in retry),
                    )
                    tasks.update(resubmitted)
                counts = (sum(t.running for t in tasks.values()), sum(not t.running for t in tasks.values()))
                if tasks and counts != shown:
                    shown = counts
                    say(
                        run,
                        f"[dim]slurm: {len(outcomes)}/{total} cells done, {counts[0]} running, {counts[1]} pending[/]",
                    )
                if tasks:
                    time.sleep(poll)
        except _NotShared as exc:
            slurm.cancel(sorted({t.submission.array for t in tasks.values()}))
            raise UserError(str(exc)) from None
        except KeyboardInterrupt:
            arrays = sorted({t.submission.array for t in tasks.values()})
            say(
                run,
                f"[yellow]interrupted: cancelling Slurm array {', '.join(arrays)}; "
                f"every cell resumes on the next run[/]",
            )
            slurm.cancel(arrays, pending_only=True)
            slurm.cancel(arrays, signal="INT")  # running cells mark their runs KILLED
            _wait_for_signalled(arrays, run)
            slurm.cancel(arrays)
            raise

    def _follow(self, task: _Task, row: slurm.TaskRow | None, run: RunOptions, tracker: Tracker, part) -> Any:
        """A task's news: its CellOutcome once it has one, "retry" when it ended without one and may run again,
        else None (still pending or running; its start and requeue are printed)."""
        from submitit.core.utils import pickle_load

        paths = task.paths()
        if paths.result_pickle.exists():
            kind, value = pickle_load(paths.result_pickle)
            if kind == "success":
                return value
            last = str(value).strip().splitlines()[-1] if str(value).strip() else "no traceback"
            return CellOutcome(task.cell, "failed", error=f"task {task.job_id} raised {last} (log: {paths.stderr})")
        state = row.state if row is not None else "GONE"
        if state in slurm.ALIVE:
            task.ended_at = None
            if state == "RUNNING" and not task.running:
                task.running, task.started = True, task.started or time.perf_counter()
                say(run, f"[bold]{task.position} start[/] {task.cell.label} [dim](task {task.job_id} on {row.node})[/]")
            elif state != "RUNNING" and task.running:
                task.running = False
                say(
                    run,
                    f"[yellow]{task.position} requeued[/] {task.cell.label} [dim](task {task.job_id}: time limit or "
                    f"preemption; it resumes from its last epoch checkpoint)[/]",
                )
            return None
        task.running = False
        if row is not None and (row.reason == "JobLaunchFailure" or slurm.exit_code(task.job_id) == NOT_SHARED_EXIT):
            raise _NotShared(
                f"--results {task.submission.folder.parent.parent} is not visible on node {row.node or '?'} of "
                f"partition {part.name} (task {task.job_id}: {row.reason or 'exit ' + str(NOT_SHARED_EXIT)}): put "
                f"--results on a filesystem every node mounts at the same path (NFS, Lustre, ...)"
            )
        found = cell_run(tracker, task.cell)
        if found is not None and found.info.status == "FINISHED":  # its result file is not visible (yet)
            return CellOutcome(task.cell, "finished", found.info.run_id, dict(found.data.metrics))
        now = time.monotonic()
        if task.ended_at is None:
            task.ended_at = now
        if state == "COMPLETED" and now - task.ended_at < RESULT_GRACE_S:
            return None  # it wrote its result: a shared filesystem shows it a little later
        how = f"{state} on {row.node}" if row is not None and row.node else state
        if task.attempt > MAX_RESUBMITS:
            return CellOutcome(
                task.cell,
                "failed",
                error=f"its task ended without a result {task.attempt} times (last: {task.job_id}, {how}; log: "
                f"{paths.stdout}); its run resumes from its last checkpoint on the next `rkdbench run`",
            )
        say(
            run,
            f"[yellow]{task.position} task {task.job_id} ended without a result ({how})[/]: "
            f"{task.cell.label} is resubmitted and resumes from its last checkpoint",
        )
        return "retry"


def _wait_for_signalled(arrays: list[str], run: RunOptions) -> None:
    """After SIGINT to the running tasks, wait for the event, not a clock: until squeue lists none of the arrays'
    tasks as running (a task's process ends once `run_cell` has recorded its run KILLED), however long a loaded
    node takes; squeue not answering is waited out too. The signal is not sent again (a second KeyboardInterrupt
    would cut the bookkeeping short); a second Ctrl-C leaves them, and their runs resume on the next run."""

    def running() -> bool:
        rows = slurm.task_rows(arrays)
        return rows is None or any(row.state in ACTIVE_STATES for row in rows)

    if running():
        say(run, "[yellow]waiting for the signalled Slurm tasks to record KILLED (Ctrl-C: leave them)[/]")
    while running():
        time.sleep(1.0)


def _import_submitit() -> None:
    try:
        import submitit  # noqa: F401
    except ImportError as exc:
        raise UserError(f"--executor slurm needs submitit, which is not importable ({exc}): {EXTRA_HINT}") from None


@hookimpl
def register_executors(register):
    register(SlurmExecutor)
