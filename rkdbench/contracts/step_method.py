"""`StepMethod`, the contract of a method that writes its own training step (PeerAiD, RSNL, SAAD): the engine
hands `training_step` the batch and a `StepContext` (networks, progress, threat model, `attack` running PGD with the
method's `AttackSpec` on any objective, `count` for the step's passes, the method's own `networks`) and
backpropagates the returned total. Everything else (params, version, teacher roles, state, own networks, optimizer
override, the cell key's `describe`) it shares with the declarative `Method` through `MethodBase`.
"""

from __future__ import annotations

import abc

from torch import Tensor

from .method import Losses, MethodBase, StepContext

__all__ = ["StepMethod"]


class StepMethod(MethodBase, abc.ABC):
    """A method whose training step is its own code. `needs` documents the forward passes the step makes (its
    page lists them); `attack` is what `ctx.attack` runs (None: the step never attacks)."""

    @abc.abstractmethod
    def training_step(self, batch: tuple[Tensor, Tensor], ctx: StepContext) -> Losses | Tensor:
        """One step on `batch = (x, y)`: make the passes, report them with `ctx.count(...)`, and return the
        `Losses` whose `total` the engine backpropagates (then it steps the student's and `ctx.networks`'
        optimizers)."""
