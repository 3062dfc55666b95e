"""rkdbench: a benchmark harness for adversarially robust knowledge distillation.

This namespace is the one public API for users and plugin authors (like llm's single namespace): the pluggy marker
`hookimpl`; the registry (`list_components`, `create`, timm-style); the method contracts (`Method`, the declarative
one, and `StepMethod`, for methods that write their own training step) with their types (`AttackSpec`, `Outputs`,
`Progress`, `Losses`, `StepContext`, `StudentForwards`) and the distributions of a method's search space (`LogUniform`,
`Uniform`, `IntRange`, `Choice`); loss primitives with every official reduction (`kl_div`, `soft_cross_entropy`,
`reduce_per_example`); the attack base and helpers (`Attack`, `AttackResult`, `pgd`, `predict`, `attack_mode`,
`preserved_rng`); dataset splits (`Splits`, `HeldOutDataset`, `uint8_splits`, `require_files`); `TeacherCard`; the
executor contract (`Executor`, `executor_option`, `RunOptions`, `CellOutcome`) with the exactly-once building blocks
executors run cells with (`run_cells` in this process, `run_remote_cell` and its helpers in other processes or on
other machines); and the errors a plugin raises for bad input. The built-in plugins, the scaffold's template and the
docs import only from here, and every name here is used by one of them (tests/test_public_api.py); every submodule is
internal and free to move, except `rkdbench.pytest_plugin`, which a plugin's conftest activates. Names load on first
use, so `import rkdbench` stays torch-free for the parts that need no torch (leaderboards).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, UnknownComponentError, UserError, close_matches
from .hookspecs import hookimpl
from .plugins import create, list_components, loaded_plugin_dirs

if TYPE_CHECKING:
    from .atomic import write_text_atomic
    from .attacks.base import Attack, attack_mode, predict, preserved_rng
    from .attacks.pgd import pgd
    from .config import Cell, ResourcesConfig
    from .config.fields import above, at_least
    from .config.space import Choice, IntRange, LogUniform, Uniform
    from .console import make_console
    from .contracts.losses import KLReduction, ScalarReduction, kl_div, reduce_per_example, soft_cross_entropy
    from .contracts.method import AttackResult, AttackSpec, Losses, Method, Outputs, PGDInit, Progress, StepContext
    from .contracts.step_method import StepMethod
    from .contracts.student_passes import StudentForwards
    from .data import HeldOutDataset, Splits, require_files, uint8_splits
    from .run.executor import Executor, executor_option
    from .run.loop import RAN, run_cells
    from .run.options import CellOutcome, RunOptions
    from .run.progress import say, suite_status
    from .run.remote import (
        CellResources,
        cell_run,
        check_store_for_cluster,
        end_line,
        ensure_experiments,
        prepare_worker,
        remote_setup,
        run_remote_cell,
        wait_for_cancelled,
        worker_environment,
        worker_options,
    )
    from .teachers.card import TeacherCard
    from .tracking import Tracker

__version__ = "0.1.0"

# name -> the internal module that defines it (loaded on first use: most of them import torch)
_LAZY = {
    **dict.fromkeys(
        ["Method", "AttackSpec", "AttackResult", "Outputs", "Progress", "Losses", "StepContext", "PGDInit"],
        "contracts.method",
    ),
    "StepMethod": "contracts.step_method",
    "StudentForwards": "contracts.student_passes",
    **dict.fromkeys(
        ["kl_div", "soft_cross_entropy", "reduce_per_example", "KLReduction", "ScalarReduction"], "contracts.losses"
    ),
    **dict.fromkeys(["Attack", "predict", "attack_mode", "preserved_rng"], "attacks.base"),
    "pgd": "attacks.pgd",
    **dict.fromkeys(["Splits", "HeldOutDataset", "require_files", "uint8_splits"], "data"),
    "TeacherCard": "teachers.card",
    **dict.fromkeys(["LogUniform", "Uniform", "IntRange", "Choice"], "config.space"),
    **dict.fromkeys(["Cell", "ResourcesConfig"], "config"),
    **dict.fromkeys(["at_least", "above"], "config.fields"),
    "write_text_atomic": "atomic",
    "make_console": "console",
    **dict.fromkeys(["Executor", "executor_option"], "run.executor"),
    **dict.fromkeys(["RAN", "run_cells"], "run.loop"),
    **dict.fromkeys(["CellOutcome", "RunOptions"], "run.options"),
    **dict.fromkeys(["say", "suite_status"], "run.progress"),
    **dict.fromkeys(
        [
            "CellResources",
            "cell_run",
            "check_store_for_cluster",
            "end_line",
            "ensure_experiments",
            "prepare_worker",
            "remote_setup",
            "run_remote_cell",
            "wait_for_cancelled",
            "worker_environment",
            "worker_options",
        ],
        "run.remote",
    ),
    "Tracker": "tracking",
}

__all__ = [
    "hookimpl",
    "list_components",
    "create",
    "UserError",
    "ConfigError",
    "UnknownComponentError",
    "close_matches",
    "Method",
    "StepMethod",
    "AttackSpec",
    "AttackResult",
    "Outputs",
    "Progress",
    "Losses",
    "StepContext",
    "StudentForwards",
    "PGDInit",
    "kl_div",
    "soft_cross_entropy",
    "reduce_per_example",
    "KLReduction",
    "ScalarReduction",
    "Attack",
    "predict",
    "attack_mode",
    "preserved_rng",
    "pgd",
    "Splits",
    "HeldOutDataset",
    "require_files",
    "uint8_splits",
    "TeacherCard",
    "LogUniform",
    "Uniform",
    "IntRange",
    "Choice",
    "Executor",
    "executor_option",
    "RunOptions",
    "CellOutcome",
    "Cell",
    "Tracker",
    "at_least",
    "above",
    "ResourcesConfig",
    "write_text_atomic",
    "make_console",
    "RAN",
    "cell_run",
    "worker_environment",
    "worker_options",
    "loaded_plugin_dirs",
    "run_cells",
    "say",
    "suite_status",
    "CellResources",
    "check_store_for_cluster",
    "end_line",
    "ensure_experiments",
    "prepare_worker",
    "remote_setup",
    "run_remote_cell",
    "wait_for_cancelled",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
