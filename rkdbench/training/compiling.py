"""`train.compile`: torch.compile of the student and teachers for the duration of training.

Compiled in place (`nn.Module.compile`), so the modules keep their parameters, state-dict keys and checkpoints
unchanged, and every caller (the engine, a method's custom training step, the attack closures) gets the compiled
forward without knowing about it. The compilation is released when training ends: evaluation (AutoAttack with its
varied batch sizes and input-gradient passes) runs the plain eager modules, as it does for every other cell.
Off by default, and absent from the shipped protocols, whose hashes it therefore leaves unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

__all__ = ["compile_networks", "release_compiled"]


def compile_networks(models: Iterable[nn.Module], enabled: bool) -> list[nn.Module]:
    """Compile each module's forward in place when `enabled`; returns the modules compiled (to release later)."""
    if not enabled:
        return []
    compiled = list(models)
    for model in compiled:
        model.compile()
    return compiled


def release_compiled(models: Iterable[nn.Module]) -> None:
    """Back to the eager forward (the class's `_compiled_call_impl = None`)."""
    for model in models:
        model.__dict__.pop("_compiled_call_impl", None)
