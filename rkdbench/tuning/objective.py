"""What a study maximizes: a validation metric the engine logs after every epoch, read at the last epoch, and never
a test-split metric; and the check that a protocol has a validation split to select on.

The engine (`Trainer.fit`) logs `val.clean_acc` and `val.pgd_acc` (the protocol's validation PGD: `val_pgd_steps`
steps of eps/4, fixed seed) per epoch on the dataset's held-out validation split; those are the objectives, read from
the trial's last epoch (the selected configuration then trains exactly as the trial did). Names of test-split metrics
(`test.*`, `best_val.*` and `swa.*`, the evaluated selections, and `diag.*`) are refused with their own reason, other
names with the allowed list and close matches. The default objective is `val.pgd_acc`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..config.tune import Objective
from ..errors import ConfigError

__all__ = ["objective_value", "validation_size", "check_validation_split"]


def objective_value(objective: Objective, history: Sequence[Mapping[str, Any]]) -> float:
    """The objective's value from a trial's per-epoch history (the engine's `TrainOutcome.history`): the last epoch's
    metric. A history without it (no epoch finished) is a bug of the caller, not bad input."""
    if not history or objective.metric not in history[-1]:
        raise ValueError(f"the trial's last epoch logged no {objective.metric!r}; history: {list(history[-1:])}")
    return float(history[-1][objective.metric])


def validation_size(dataset: Any) -> int | None:
    """Points in a dataset plugin's validation split, from what it declares (`split_sizes = (train, val, test)`, or a
    file-backed dataset's `val_size`) without loading it; None when it declares neither."""
    sizes = getattr(dataset, "split_sizes", None)
    if sizes is not None:
        return int(sizes[1])
    size = getattr(dataset, "val_size", None)
    return None if size is None else int(size)


def check_validation_split(protocol: Any, dataset: Any) -> None:
    """ConfigError unless the protocol's dataset holds out a validation split: tuning selects on it, never on test."""
    size = validation_size(dataset)
    if size is not None and size <= 0:
        raise ConfigError(
            f"{protocol.source}: dataset {protocol.header.dataset!r} holds out no validation split ({size} points); "
            "tuning selects on the validation split only: allowed: a dataset with a held-out validation split"
        )
