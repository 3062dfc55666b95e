"""What the host needs to know about an attack, declared by the attack plugin itself, readable without torch.

`AttackTraits` is the declaration: `Attack` (rkdbench.attacks.base) inherits it, and a plugin overrides the class
attributes and classmethods that differ: its display name for tables (`display`, formatted with its options),
whether it is the final, strongest evaluation that ranks a leaderboard and sets the gap to the teacher
(`final`), whether it is black-box, its place in the sanity flags' order (`sanity_rank`, `flag_code`: a higher
rank must not leave more points robust than a lower one, clean accuracy being rank 0), its evaluation cost per
point (`passes_per_point`, for `--dry-run`), its cheap stand-ins (`first_stage` for calibration, `sweep_spec`
for the diagnostics' eps sweep) and its option schema (`Params`, a dataclass whose `Literal` fields list their
choices). The functions below turn a protocol's `[eval.attacks]` (label -> spec) and the plugins' classes into
what tables, flags and messages show, so the host never spells a plugin's name or label. Nothing here imports
torch: the leaderboard and the UI call it with classes they got from the registry (`attack_plugins`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

__all__ = [
    "AttackTraits",
    "CLEAN",
    "attack_plugins",
    "attack_specs",
    "stored_specs",
    "option_values",
    "display_names",
    "final_label",
    "rank_label",
    "ranked_column",
    "ranked_accuracy",
    "column_order",
    "table_order",
    "LEGACY_SPECS",
    "ATTACK_PARAM",
    "format_accuracies",
    "sanity_pairs",
]

CLEAN = "clean"  # the accuracy on unattacked points: a column and rank 0 of the sanity order, never an attack
# Columns the host itself computes, and how they are shown. `worst` (stored as `test.worst_acc`, the per-example
# column `worst`) is the accuracy under every attack at once, shown as "all attacks" so that no reader takes it for
# the leaderboard's worst-class column.
HOST_COLUMNS = {CLEAN: "clean", "worst": "all attacks"}

Spec = Mapping[str, Any]  # one `[eval.attacks.<label>]` table: `attack` (the plugin name) and its options
# Only for runs stored with neither their config.toml nor their protocol params: what the built-in protocols'
# labels meant, so that tables built from such runs keep their names and order. Never read for a run that says.
LEGACY_SPECS: dict[str, dict[str, Any]] = {
    "pgd20": {"attack": "pgd", "steps": 20},
    "cw": {"attack": "cw"},
    "aa": {"attack": "autoattack"},
}


class AttackTraits:
    """The declarations an attack plugin makes for the host; every one has a neutral default."""

    name: ClassVar[str] = ""
    Params: ClassVar[type | None] = None  # a frozen dataclass of the options; `Literal[...]` fields list choices
    display: ClassVar[str] = ""  # table name, formatted with the options (`"PGD-{steps}"`); "" shows the label
    final: ClassVar[bool] = False  # the strongest evaluation: ranks leaderboards, sets the gap to the teacher
    black_box: ClassVar[bool] = False  # score-based (no gradients): flagged when it beats every white-box attack
    sanity_rank: ClassVar[int | None] = None  # order for the sanity flags (clean is 0); None: not compared
    flag_code: ClassVar[str] = ""  # its name in flag codes (`aa` in `aa>pgd`); "" uses the plugin name

    @classmethod
    def passes_per_point(cls, options: Mapping[str, Any], robust_fraction: float) -> tuple[float, float] | None:
        """Forward and backward passes per evaluated point, `robust_fraction` of the points staying robust;
        None when the attack does not say (costed as zero)."""
        return None

    @classmethod
    def first_stage(cls, spec: Spec) -> dict[str, Any] | None:
        """A cheaper spec that calibration times separately (an attack whose later stages run only on the points
        its first stage left robust); None when the attack treats every point alike."""
        return None

    @classmethod
    def sweep_spec(cls, spec: Spec) -> dict[str, Any]:
        """The spec the diagnostics' robust-accuracy-vs-eps sweep runs in this attack's place (default: itself)."""
        return dict(spec)

    @classmethod
    def display_name(cls, spec: Spec) -> str:
        """The name tables show for a label of this attack; "" when the attack declares none."""
        return cls.display.format(**option_values(cls, spec)) if cls.display else ""


def option_values(plugin: type, spec: Spec) -> dict[str, Any]:
    """The attack's options: the `Params` defaults with the spec's values on top (`attack` left out)."""
    params = getattr(plugin, "Params", None)
    defaults = {f.name: f.default for f in dataclasses.fields(params)} if dataclasses.is_dataclass(params) else {}
    return {**defaults, **{k: v for k, v in spec.items() if k != "attack"}}


def attack_plugins(names: Iterable[str]) -> dict[str, type]:
    """The registered classes of these attack plugins (unknown names left out). This loads the plugins (and so
    torch); the other functions here only read the classes they are given."""
    from ..plugins import get_registry

    registry = get_registry()
    known = set(registry.names("attack"))
    return {name: registry.get("attack", name).obj for name in dict.fromkeys(names) if name in known}


ATTACK_PARAM = "protocol.eval.attacks."  # a cell run's params `protocol.eval.attacks.<label>.<option>`


def attack_specs(params: Mapping[str, Any], prefix: str = ATTACK_PARAM) -> dict[str, dict[str, Any]]:
    """The protocol's `[eval.attacks]` (label -> spec) from a run's flattened params (values as MLflow stores
    them: strings); `prefix="params.protocol.eval.attacks."` for the columns of `mlflow.search_runs`."""
    specs: dict[str, dict[str, Any]] = {}
    for key, value in params.items():
        if key.startswith(prefix):
            label, _, option = key[len(prefix) :].partition(".")
            specs.setdefault(label, {})[option] = value
    return specs


def stored_specs(params: Mapping[str, Any], prefix: str = ATTACK_PARAM) -> dict[str, dict[str, Any]]:
    """A stored run's `[eval.attacks]` from its params (`attack_specs`), over `LEGACY_SPECS` for the labels its
    params do not describe (runs logged before the protocol was among their params)."""
    return {**LEGACY_SPECS, **attack_specs(params, prefix)}


def _plugin(specs: Mapping[str, Spec], plugins: Mapping[str, type], label: str) -> type:
    return plugins.get(str(specs.get(label, {}).get("attack", "")), AttackTraits)


def display_names(specs: Mapping[str, Spec], plugins: Mapping[str, type]) -> dict[str, str]:
    """Label -> the name tables show: `clean` and `worst` (as `HOST_COLUMNS` names them), then each attack's declared
    name; a label whose attack declares none, or whose name another label shares (two PGD-20s), shows the label
    itself."""
    names = {label: _plugin(specs, plugins, label).display_name(spec) or label for label, spec in specs.items()}
    shared = {name for name in names.values() if list(names.values()).count(name) > 1}
    return {**HOST_COLUMNS, **{label: label if name in shared else name for label, name in names.items()}}


def final_label(labels: Iterable[str], specs: Mapping[str, Spec], plugins: Mapping[str, type]) -> str | None:
    """The last of `labels` whose attack is final (AutoAttack for the built-in protocols), else None."""
    found = [label for label in labels if _plugin(specs, plugins, label).final]
    return found[-1] if found else None


def rank_label(
    labels: list[str], specs: Mapping[str, Spec], plugins: Mapping[str, type], rank_by: str | None = None
) -> str:
    """The label a leaderboard ranks by: the protocol's `eval.rank_by` when it gives one, else the last final
    attack's label, else the last label."""
    return rank_by or final_label(labels, specs, plugins) or labels[-1]


def ranked_column(
    specs: Mapping[str, Spec], rank_by: str | None = None, plugins: Mapping[str, type] | None = None
) -> tuple[str, str] | None:
    """(label, display name) of the accuracy a protocol ranks by (`rank_label` over its `[eval.attacks]`): the
    column a one-line summary shows; None for a protocol without attacks. `plugins` default: the registered ones."""
    if not specs:
        return None
    plugins = attack_plugins(str(s.get("attack", "")) for s in specs.values()) if plugins is None else plugins
    label = rank_label(list(specs), specs, plugins, rank_by)
    return label, display_names(specs, plugins).get(label, label)


def ranked_accuracy(
    metrics: Mapping[str, Any],
    specs: Mapping[str, Spec],
    prefix: str = "",
    rank_by: str | None = None,
    plugins: Mapping[str, type] | None = None,
) -> tuple[str, float] | None:
    """(display name, value) of the accuracy the protocol ranks by (`ranked_column`), read as `<prefix><label>_acc`
    from `metrics` (a cell's metrics with prefix `test.`, a measured teacher card without); None when it is
    missing. What a one-line summary of a cell or a teacher shows instead of a hard-coded `test.aa_acc`."""
    column = ranked_column(specs, rank_by, plugins)
    value = None if column is None else metrics.get(f"{prefix}{column[0]}_acc")
    return None if value is None else (column[1], float(value))


def column_order(labels: Iterable[str], specs: Mapping[str, Spec], plugins: Mapping[str, type]) -> list[str]:
    """Attack labels for a table when the protocol's own order is unknown: those with a sanity rank (PGD), then
    the others, each group by name, final attacks last."""

    def key(label: str) -> tuple[bool, bool, str]:
        plugin = _plugin(specs, plugins, label)
        return plugin.final, plugin.sanity_rank is None, label

    return sorted(labels, key=key)


def table_order(
    order: Iterable[str], labels: Iterable[str], specs: Mapping[str, Spec], plugins: Mapping[str, type]
) -> list[str]:
    """A table's accuracy columns among `labels` (those with numbers): clean first, then the protocol's `order`,
    labels it does not list after them (`column_order`), final attacks last (stable)."""
    labels, order = set(labels), list(order)
    unlisted = labels - {CLEAN} - set(order)
    ordered = [label for label in [*order, *column_order(unlisted, specs, plugins)] if label in labels]
    ordered.sort(key=lambda label: _plugin(specs, plugins, label).final)
    return ([CLEAN] if CLEAN in labels else []) + ordered


def format_accuracies(
    measured: Mapping[str, Any], specs: Mapping[str, Spec], plugins: Mapping[str, type] | None = None
) -> str:
    """`clean 97.0%, PGD-20 90.0%, AutoAttack 85.0%`: clean and each label's `<label>_acc` of a measured teacher
    card or a metrics dict, in the protocol's order (`specs`), then any other label the card has; a missing or
    non-numeric value shows as `n/a`, so printing never crashes on a protocol labelled otherwise. `plugins`
    default: the registered ones."""
    plugins = attack_plugins(str(s.get("attack", "")) for s in specs.values()) if plugins is None else plugins
    names = display_names(specs, plugins)
    found = [key[: -len("_acc")] for key in measured if key.endswith("_acc") and "." not in key]
    labels = [CLEAN, *specs, *(label for label in found if label not in specs and label != CLEAN)]

    def shown(label: str) -> str:
        value = measured.get(f"{label}_acc")
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return f"{names.get(label, label)} " + (f"{value:.1%}" if number else "n/a")

    return ", ".join(shown(label) for label in labels)


def sanity_pairs(specs: Mapping[str, Spec], plugins: Mapping[str, type]) -> list[tuple[str, str, str]]:
    """(stronger, weaker, flag code) for the sanity flags, from the attacks' declared ranks: each attack plugin
    with a rank against every lower rank (clean is `CLEAN`, rank 0), neighbours first (`aa>pgd`, `pgd>clean`,
    then `aa>clean`). The stronger one must leave at most as many points robust as the weaker."""
    ranked = {CLEAN: (0, CLEAN)}
    for spec in specs.values():
        plugin = plugins.get(str(spec.get("attack", "")), AttackTraits)
        if plugin.sanity_rank is not None:
            ranked[str(spec["attack"])] = (plugin.sanity_rank, plugin.flag_code or str(spec["attack"]))
    order = sorted(ranked, key=lambda name: -ranked[name][0])
    pairs = []
    for distance in range(1, len(order)):
        for strong, weak in zip(order, order[distance:]):
            if ranked[strong][0] > ranked[weak][0]:
                pairs.append((strong, weak, f"{ranked[strong][1]}>{ranked[weak][1]}"))
    return pairs
