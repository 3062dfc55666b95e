"""The threat model's values: the norms an attack may be asked for and the check of `[threat]` (norm, and an eps
that is plausibly on the [0, 1] input scale), shared by the protocol loader and the attack base class.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError

__all__ = ["NORMS", "ThreatModel", "check_threat"]


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
