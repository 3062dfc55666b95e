"""rkdbench: a benchmark harness for adversarially robust knowledge distillation.

The public surface for users, plugin authors and tests: `hookimpl` (the pluggy marker), `list_components`
and `create` (the registry, timm-style), and the method contract types (`Method`, `AttackSpec`, `Outputs`,
`Progress`, `Losses`, `AttackResult`). Everything concrete (methods, networks, attacks, datasets, teachers)
comes from plugins, the built-in ones included.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .hookspecs import hookimpl

if TYPE_CHECKING:
    from .contracts import AttackResult, AttackSpec, Losses, Method, Outputs, Progress

# The contract types need torch; they load on first use so that torch-free parts (leaderboards) stay light.
_CONTRACTS = frozenset({"Method", "AttackSpec", "AttackResult", "Outputs", "Progress", "Losses"})

__all__ = [
    "__version__",
    "hookimpl",
    "list_components",
    "create",
    "Method",
    "AttackSpec",
    "AttackResult",
    "Outputs",
    "Progress",
    "Losses",
]

__version__ = "0.1.0"


def list_components(kind: str, pattern: str = "*") -> list[str]:
    """Names of the registered components of `kind` (method, architecture, attack, dataset, teacher)."""
    from .plugins import get_registry

    return get_registry().names(kind, pattern)


def create(kind: str, name: str, **overrides: Any) -> Any:
    """Instantiate a registered component by name with parameter overrides (unknown names list close matches)."""
    from .plugins import get_registry

    return get_registry().get(kind, name).instantiate(**overrides)


def __getattr__(name: str) -> Any:
    if name in _CONTRACTS:
        from . import contracts

        return getattr(contracts, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
