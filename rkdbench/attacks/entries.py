"""A protocol's attack entries checked against their plugins, before anything is trained.

`load_protocol` types `[eval.attacks]` (label -> `AttackEntry`) without loading a plugin (the config tier sits below
the attacks and stays torch-free); `check_attack_entries` is the second half, run where the plugins are loaded (a
suite's cells, `rkdbench evaluate`): each entry's attack must be registered and its plugin built with the protocol's
threat and the entry's options, which go through the one checker of every option (`contracts.params.build_params`:
unknown names with close matches, types, `Literal` choices) and the plugin's own checks. Each refusal is one line
naming the protocol file, the label, and the checker's words (the option, the value and what is allowed).
"""

from __future__ import annotations

from ..config import Protocol
from ..errors import ConfigError, UnknownComponentError
from ..plugins import get_registry

__all__ = ["check_attack_entries"]


def check_attack_entries(protocol: Protocol) -> None:
    """Refuse an unregistered attack or an option its plugin does not take, naming file and label."""
    registry = get_registry()
    threat = protocol.threat
    for label, entry in protocol.eval.attacks.items():
        where = f"{protocol.source}: eval.attacks.{label}"
        try:
            component = registry.get("attack", entry.attack)
        except UnknownComponentError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        try:
            component.instantiate(norm=threat.norm, eps=threat.eps, **entry.options)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
