"""The Slurm executor's options (`SlurmOptions`): what a user says about their cluster. Each field is one line
(type, default, rule, help) of a `config.fields.Section`, so the same fields are command-line options
(`--time-limit`) and keys of the `[executor.slurm]` table of the user config file (`executors.settings`), both
checked by the same rules. Imports nothing heavy: the command line reads it to build its options.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from ...config.fields import Section, above, at_least

__all__ = ["SlurmOptions"]


def _option(default: Any, help: str, rule: Any = None) -> Any:
    return dataclasses.field(default=default, metadata={"rule": rule, "help": help})


@dataclass(frozen=True, kw_only=True)
class SlurmOptions(Section):
    """What a user says about their cluster; each field is a command-line option and a key of [executor.slurm]."""

    table: ClassVar[str] = "executor.slurm"
    partition: str | None = _option(None, "Slurm partition (default: the cluster's default partition).")
    time_limit: int | None = _option(
        None,
        "Minutes per task (sbatch --time); a task that reaches it stops at its last epoch checkpoint and is "
        "requeued (default: the partition's limit, else 1440).",
        at_least(1),
    )
    account: str | None = _option(None, "Slurm account charged (sbatch --account).")
    qos: str | None = _option(None, "Slurm quality of service (sbatch --qos).")
    mem_gb: float | None = _option(None, "Memory per task in GB (sbatch --mem; default: the partition's).", above(0))
    array_parallelism: int | None = _option(
        None, "At most this many tasks of the array run at once (default: as many as Slurm allows).", at_least(1)
    )
    signal_delay_s: int = _option(
        90,
        "Seconds before the time limit at which Slurm tells a task (USR2) to stop and requeue.",
        at_least(1),
    )
    requeues: int = _option(3, "Time-limit requeues per task before its cell is left resumable.", at_least(0))
    sbatch: tuple[str, ...] = _option(
        (), "Extra sbatch parameter KEY=VALUE (e.g. constraint=a100), or KEY for a flag; repeatable."
    )
    setup: tuple[str, ...] = _option(
        (), "A shell line the batch script runs before the task (module load ..., source venv/bin/activate)."
    )
    detach: bool = _option(
        False,
        "Return once the array is submitted; the same command later reports it and resubmits what did not finish.",
    )
