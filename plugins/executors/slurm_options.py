"""The Slurm executor's options (`SlurmOptions`): what a user says about their cluster. Each field is one line
(type, default, rule, help) declared with `rkdbench.executor_option`, so the same fields are `rkdbench run` options
(`--time-limit`) and keys of the `[executor.slurm]` table of the settings file, both checked by the same rules.
"""

from __future__ import annotations

from dataclasses import dataclass

from rkdbench import above, at_least, executor_option

__all__ = ["SlurmOptions"]


@dataclass(frozen=True)
class SlurmOptions:
    """What a user says about their cluster; each field is a command-line option and a key of [executor.slurm]."""

    partition: str | None = executor_option(None, "Slurm partition (default: the cluster's default partition).")
    time_limit: int | None = executor_option(
        None,
        "Minutes per task (sbatch --time); a task that reaches it stops at its last epoch checkpoint and is "
        "requeued (default: the partition's limit, else 1440).",
        rule=at_least(1),
    )
    account: str | None = executor_option(None, "Slurm account charged (sbatch --account).")
    qos: str | None = executor_option(None, "Slurm quality of service (sbatch --qos).")
    mem_gb: float | None = executor_option(
        None, "Memory per task in GB (sbatch --mem; default: the partition's).", rule=above(0)
    )
    array_parallelism: int | None = executor_option(
        None, "At most this many tasks of the array run at once (default: as many as Slurm allows).", rule=at_least(1)
    )
    signal_delay_s: int = executor_option(
        90, "Seconds before the time limit at which Slurm tells a task (USR2) to stop and requeue.", rule=at_least(1)
    )
    requeues: int = executor_option(
        3, "Time-limit requeues per task before its cell is left resumable.", rule=at_least(0)
    )
    sbatch: tuple[str, ...] = executor_option(
        (),
        "Extra sbatch parameter KEY=VALUE (e.g. constraint=a100), or KEY for a flag; repeatable.",
        metavar="KEY=VALUE",
    )
    setup: tuple[str, ...] = executor_option(
        (),
        "A shell line the batch script runs before the task (module load ..., source venv/bin/activate).",
        metavar="LINE",
    )
    detach: bool = executor_option(
        False,
        "Return once the array is submitted; the same command later reports it and resubmits what did not finish.",
    )
