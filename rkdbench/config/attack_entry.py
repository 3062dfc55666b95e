"""One `[eval.attacks.<label>]` entry of a protocol as a typed value: `AttackEntry(label, attack, options)`.

A protocol's table `[eval.attacks.fast] attack = "pgd", steps = 5` becomes `AttackEntry("fast", "pgd", {"steps":
5})` when the protocol loads (`parse_attack_entries`: a table, a plugin name, a
label that metric names and params can carry); `attack_entries` reads tables that were stored (a run's params, a
config.toml artifact, a teacher card) the same way without refusing anything. This module is the one place that
knows the plugin name sits under `attack` in the table: everything else reads `entry.attack` and `entry.options`,
and `entry.table` gives the table back as written (for hashes, logged params, cards and the plugins' hooks). The
options are checked against the attack plugin's `Params` where the plugins are loaded, not here (this module stays
below the attacks and imports no torch): `rkdbench.attacks.entries.check_attack_entries`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..tracking.schema import WORST_CLASS

__all__ = ["ATTACK", "RESERVED_LABELS", "AttackEntry", "attack_entries", "parse_attack_entries"]

ATTACK = "attack"  # the key of an `[eval.attacks.<label>]` table that names the attack plugin
# Columns the host computes itself (`clean`, and `worst`: robust under every attack at once), so no attack's label
RESERVED_LABELS = ("clean", "worst")


@dataclass(frozen=True)
class AttackEntry:
    """One evaluation attack of a protocol: its label, the attack plugin's name and its options as written."""

    label: str
    attack: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def table(self) -> dict[str, Any]:
        """The TOML table as written: `attack` and the options."""
        return {ATTACK: self.attack, **self.options}

    @classmethod
    def from_table(cls, label: str, table: Mapping[str, Any]) -> AttackEntry:
        """The entry of a stored table, unchecked: a table that lost its plugin name has attack ""."""
        options = {key: value for key, value in table.items() if key != ATTACK}
        return cls(label, str(table.get(ATTACK, "")), options)


def attack_entries(tables: Mapping[str, Mapping[str, Any]]) -> dict[str, AttackEntry]:
    """label -> entry of stored `[eval.attacks]` tables, in their order, unchecked."""
    return {label: AttackEntry.from_table(label, table) for label, table in tables.items()}


def parse_attack_entries(where: str, tables: Any) -> dict[str, AttackEntry]:
    """label -> entry of a protocol's `[eval.attacks]`, each a table naming its plugin under `attack`; `where`
    names the file (and the override source) in the one-line error."""
    if not tables:
        raise ConfigError(f"{where}: [eval.attacks] must name at least one attack")
    for label, table in tables.items():
        if not isinstance(table, dict) or not isinstance(table.get(ATTACK), str):
            raise ConfigError(f"{where}: eval.attacks.{label} must be a table with an `attack` plugin name")
        if "." in label or label in RESERVED_LABELS or label.startswith(WORST_CLASS):
            raise ConfigError(
                f"{where}: eval.attacks.{label} is not allowed as a label; allowed: a name without dots, other than "
                f"{' and '.join(RESERVED_LABELS)} and not starting with {WORST_CLASS} (metric names carry it)"
            )
    return attack_entries(tables)
