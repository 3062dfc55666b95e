"""Shared machinery for attack plugins: the `Attack` base (threat model, seed, params, validation),
batched prediction, and RNG isolation for third-party attacks that reseed torch's global generator.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from .contracts import AttackResult, Params, build_params
from .errors import ConfigError

__all__ = ["Attack", "ThreatModel", "predict", "preserved_rng", "check_threat"]

NORMS = ("Linf", "L2")


@dataclass(frozen=True)
class ThreatModel:
    norm: str
    eps: float


def check_threat(norm: str, eps: float, where: str = "threat") -> None:
    """Reject unknown norms and eps values that are clearly on the 0-255 scale (8 instead of 8/255)."""
    if norm not in NORMS:
        raise ConfigError(f"{where}.norm = {norm!r} is not allowed; allowed: {', '.join(NORMS)}")
    limit = 1.0 if norm == "Linf" else 64.0
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not 0 < eps <= limit:
        hint = " (inputs are in [0, 1]: write 8/255 = 0.0314, not 8)" if norm == "Linf" else ""
        raise ConfigError(f"{where}.eps = {eps!r} is not allowed; {norm} eps must be in (0, {limit:g}]{hint}")


def predict(model: nn.Module, x: Tensor, batch_size: int = 500) -> Tensor:
    """Predicted labels of `model` on `x`, in batches, without gradients."""
    with torch.inference_mode():
        return torch.cat([model(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])


@contextlib.contextmanager
def preserved_rng(device: torch.device | None = None) -> Iterator[None]:
    """Restore torch's global CPU (and CUDA) RNG state afterwards: AutoAttack calls torch.manual_seed inside."""
    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


class Attack:
    """Base of attack plugins: `Attack(norm=, eps=, seed=, batch_size=, **params)`, then `run(model, x, y)`."""

    name: ClassVar[str] = ""
    Params: ClassVar[type] = Params
    norms: ClassVar[tuple[str, ...]] = NORMS

    def __init__(self, norm: str = "Linf", eps: float = 8 / 255, seed: int = 0, batch_size: int = 500,
                 **params: Any) -> None:
        check_threat(norm, eps, where=f"attack {self.name!r}")
        if norm not in self.norms:
            raise ConfigError(f"attack {self.name!r} does not support norm {norm!r}; allowed: {', '.join(self.norms)}")
        self.threat = ThreatModel(norm, float(eps))
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self.params = build_params(self.Params, params, owner=f"attack {self.name!r}")

    def run(self, model: nn.Module, x: Tensor, y: Tensor) -> AttackResult:
        raise NotImplementedError

    def _result(self, model: nn.Module, x_adv: Tensor, y: Tensor, info: dict[str, Any]) -> AttackResult:
        """Robustness re-checked by one batched forward pass over x_adv (never trusted from the attack itself)."""
        robust = predict(model, x_adv, self.batch_size) == y
        return AttackResult(x_adv=x_adv, robust=robust, info=info)
