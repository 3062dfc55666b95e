"""Shared machinery for attack plugins: the `Attack` base (threat model, seed, params and their choices
validated, and the declarations the host reads: `rkdbench.attacks.traits.AttackTraits`),
batched prediction, RNG isolation for third-party attacks that reseed torch's global generator, and the
checks run before an expensive attack (inputs in [0, 1], model in eval mode, logits rather than probabilities).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..config.threat import NORMS, ThreatModel, check_threat
from ..contracts.method import AttackResult
from ..contracts.params import Params, build_params
from ..errors import ConfigError
from .traits import AttackTraits

__all__ = [
    "Attack",
    "AttackTraits",
    "ThreatModel",
    "predict",
    "preserved_rng",
    "check_threat",
    "check_attack_inputs",
    "attack_mode",
]


def predict(model: nn.Module, x: Tensor, batch_size: int = 500) -> Tensor:
    """Predicted labels of `model` on `x`, in batches, without gradients."""
    with torch.inference_mode():
        return torch.cat([model(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])


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


def check_attack_inputs(model: nn.Module, x: Tensor, batch_size: int = 500, owner: str = "attack") -> None:
    """Fail fast before an expensive attack: `ConfigError` if x leaves [0, 1] or the model outputs probabilities
    (every row of its first batch non-negative and summing to 1 within 1e-4); a warning, and a switch to eval mode
    (left on), if the model is in train mode."""
    if x.numel() == 0:
        return
    low, high = float(x.min()), float(x.max())
    if low < 0.0 or high > 1.0:
        raise ConfigError(
            f"{owner}: inputs must be in [0, 1] (the threat model's eps is on that scale); observed "
            f"min {low:.4g}, max {high:.4g}. Scale 0-255 images by 1/255 and normalize inside the model"
        )
    if any(module.training for module in model.modules()):
        # BatchNorm in train mode normalizes by the attacked batch itself, so the attack would measure another model
        warnings.warn(f"{owner}: the model is in train mode; switched it to eval mode for the attack", stacklevel=2)
        model.eval()
    with torch.inference_mode():
        out = model(x[:batch_size])
    if bool((out >= 0).all()) and bool(((out.sum(1) - 1).abs() <= 1e-4).all()):
        raise ConfigError(
            f"{owner}: the model's outputs look like probabilities (every row non-negative and summing "
            f"to 1); AutoAttack's losses need logits, so remove the final softmax"
        )


@contextlib.contextmanager
def attack_mode(model: nn.Module, x: Tensor, batch_size: int = 500, owner: str = "attack") -> Iterator[None]:
    """`check_attack_inputs`, with the model in eval mode inside and every submodule's own train/eval mode given
    back afterwards (not `model.train(flag)`, which would overwrite mixed modes such as frozen BatchNorm)."""
    modes = [(module, module.training) for module in model.modules()]
    try:
        check_attack_inputs(model, x, batch_size, owner)
        yield
    finally:
        for module, training in modes:
            module.training = training


class Attack(AttackTraits):
    """Base of attack plugins: `Attack(norm=, eps=, seed=, batch_size=, **params)`, then `run(model, x, y)`.
    What the host reads about an attack without running it (display name, cost, flag order...) is declared
    through the `AttackTraits` attributes."""

    name: ClassVar[str] = ""
    Params: ClassVar[type] = Params
    norms: ClassVar[tuple[str, ...]] = NORMS

    def __init__(
        self, norm: str = "Linf", eps: float = 8 / 255, seed: int = 0, batch_size: int = 500, **params: Any
    ) -> None:
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
