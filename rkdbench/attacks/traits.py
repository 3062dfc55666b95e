"""What the host needs to know about an attack, declared by the attack plugin itself, readable without torch.

`AttackTraits` is the declaration: `Attack` (rkdbench.attacks.base) inherits it, and a plugin overrides the class
attributes and classmethods that differ: its display name for tables (`display`, formatted with its options),
whether it is the final, strongest evaluation that ranks a leaderboard and sets the gap to the teacher
(`final`), whether it is black-box, its place in the sanity flags' order (`sanity_rank`, `flag_code`: a higher
rank must not leave more points robust than a lower one, clean accuracy being rank 0), its evaluation cost per
point (`passes_per_point`, for `--dry-run`), its cheap stand-ins (`first_stage` for calibration, `sweep_spec`
for the diagnostics' eps sweep), its option schema (`Params`, a dataclass whose `Literal` fields list their
choices) and the labels the built-in protocols gave it before runs stored their protocol (`legacy_labels`). The
functions below turn a protocol's `[eval.attacks]` (label -> `AttackEntry`) and the plugins' classes into what
tables, flags and messages show, so the host never spells a plugin's name or label; the plugins' hooks see an
entry's table as written (`entry.table`). Nothing here imports torch: the leaderboard and the UI call it with
classes they got from the registry (`attack_plugins`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from ..config.attack_entry import RESERVED_LABELS, AttackEntry, attack_entries
from ..tracking.schema import metric_key, parse_metric_key

__all__ = [
    "AttackTraits",
    "AttackEntry",
    "CLEAN",
    "WORST",
    "attack_plugins",
    "plugins_of",
    "attack_specs",
    "stored_specs",
    "legacy_specs",
    "option_values",
    "display_names",
    "final_label",
    "rank_label",
    "ranked_column",
    "ranked_accuracy",
    "column_order",
    "table_order",
    "first_stage",
    "sweep_entry",
    "ATTACK_PARAM",
    "format_accuracies",
    "sanity_pairs",
]

CLEAN, WORST = RESERVED_LABELS  # the accuracy on unattacked points (a column and rank 0 of the sanity order, never an
# attack) and robustness under every attack at once: the columns the host computes itself. `worst` (stored as
# `test.worst_acc`, the per-example column `worst`) is shown as "all attacks", so that no reader takes it for the
# leaderboard's worst-class column.
HOST_COLUMNS = {CLEAN: CLEAN, WORST: "all attacks"}

Spec = Mapping[str, Any]  # one `[eval.attacks.<label>]` table as written: what the plugins' hooks are given
Entries = Mapping[str, AttackEntry]  # a protocol's `[eval.attacks]`: label -> entry


class AttackTraits:
    """The declarations an attack plugin makes for the host; every one has a neutral default."""

    name: ClassVar[str] = ""
    Params: ClassVar[type | None] = None  # a frozen dataclass of the options; `Literal[...]` fields list choices
    display: ClassVar[str] = ""  # table name, formatted with the options (`"PGD-{steps}"`); "" shows the label
    final: ClassVar[bool] = False  # the strongest evaluation: ranks leaderboards, sets the gap to the teacher
    black_box: ClassVar[bool] = False  # score-based (no gradients): flagged when it beats every white-box attack
    sanity_rank: ClassVar[int | None] = None  # order for the sanity flags (clean is 0); None: not compared
    flag_code: ClassVar[str] = ""  # its name in flag codes (`aa` in `aa>pgd`); "" uses the plugin name
    # Labels that meant this attack (with these options) in the built-in protocols before a run stored its protocol,
    # and the keys of the published references (`configs/references.toml`); read from the class itself, never
    # inherited, so a subclass under another name answers to none of its parent's
    legacy_labels: ClassVar[Mapping[str, Mapping[str, Any]]] = {}

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
        return cls.display.format(**option_values(cls, AttackEntry.from_table("", spec).options)) if cls.display else ""


def option_values(plugin: type, options: Mapping[str, Any]) -> dict[str, Any]:
    """The attack's options: the `Params` defaults with an entry's `options` on top."""
    params = getattr(plugin, "Params", None)
    defaults = {f.name: f.default for f in dataclasses.fields(params)} if dataclasses.is_dataclass(params) else {}
    return {**defaults, **options}


def attack_plugins(names: Iterable[str]) -> dict[str, type]:
    """The registered classes of these attack plugins (unknown names left out). This loads the plugins (and so
    torch); the other functions here only read the classes they are given."""
    from ..plugins import get_registry

    registry = get_registry()
    known = set(registry.names("attack"))
    return {name: registry.get("attack", name).obj for name in dict.fromkeys(names) if name in known}


def plugins_of(specs: Entries) -> dict[str, type]:
    """The registered classes of the attacks `specs` name (`attack_plugins`)."""
    return attack_plugins(entry.attack for entry in specs.values())


ATTACK_PARAM = "protocol.eval.attacks."  # a cell run's params `protocol.eval.attacks.<label>.<option>`


def attack_specs(params: Mapping[str, Any], prefix: str = ATTACK_PARAM) -> dict[str, AttackEntry]:
    """The protocol's `[eval.attacks]` (label -> entry) from a run's flattened params (values as MLflow stores
    them: strings); `prefix="params.protocol.eval.attacks."` for the columns of `mlflow.search_runs`."""
    tables: dict[str, dict[str, Any]] = {}
    for key, value in params.items():
        if key.startswith(prefix):
            label, _, option = key[len(prefix) :].partition(".")
            tables.setdefault(label, {})[option] = value
    return attack_entries(tables)


def legacy_specs(plugins: Mapping[str, type] | None = None) -> dict[str, AttackEntry]:
    """label -> entry of every label an attack plugin declares it answered to (`AttackTraits.legacy_labels`);
    `plugins` default: every registered attack."""
    if plugins is None:
        from ..plugins import get_registry

        plugins = attack_plugins(get_registry().names("attack"))
    return {
        label: AttackEntry(label, name, dict(options))
        for name, plugin in plugins.items()
        for label, options in vars(plugin).get("legacy_labels", {}).items()
    }


def stored_specs(params: Mapping[str, Any], prefix: str = ATTACK_PARAM) -> dict[str, AttackEntry]:
    """A stored run's `[eval.attacks]` from its params (`attack_specs`), over the plugins' legacy labels
    (`legacy_specs`) for the labels its params do not describe (runs logged before the protocol was among their
    params)."""
    return {**legacy_specs(), **attack_specs(params, prefix)}


def _plugin(specs: Entries, plugins: Mapping[str, type], label: str) -> type:
    entry = specs.get(label)
    return AttackTraits if entry is None else plugins.get(entry.attack, AttackTraits)


def display_names(specs: Entries, plugins: Mapping[str, type]) -> dict[str, str]:
    """Label -> the name tables show: `clean` and `worst` (as `HOST_COLUMNS` names them), then each attack's declared
    name; a label whose attack declares none, or whose name another label shares (two PGD-20s), shows the label
    itself."""
    names = {label: _plugin(specs, plugins, label).display_name(entry.table) or label for label, entry in specs.items()}
    shared = {name for name in names.values() if list(names.values()).count(name) > 1}
    return {**HOST_COLUMNS, **{label: label if name in shared else name for label, name in names.items()}}


def final_label(labels: Iterable[str], specs: Entries, plugins: Mapping[str, type]) -> str | None:
    """The last of `labels` whose attack is final (AutoAttack for the built-in protocols), else None."""
    found = [label for label in labels if _plugin(specs, plugins, label).final]
    return found[-1] if found else None


def rank_label(labels: list[str], specs: Entries, plugins: Mapping[str, type], rank_by: str | None = None) -> str:
    """The label a leaderboard ranks by: the protocol's `eval.rank_by` when it gives one, else the last final
    attack's label, else the last label."""
    return rank_by or final_label(labels, specs, plugins) or labels[-1]


def ranked_column(
    specs: Entries, rank_by: str | None = None, plugins: Mapping[str, type] | None = None
) -> tuple[str, str] | None:
    """(label, display name) of the accuracy a protocol ranks by (`rank_label` over its `[eval.attacks]`): the
    column a one-line summary shows; None for a protocol without attacks. `plugins` default: the registered ones."""
    if not specs:
        return None
    plugins = plugins_of(specs) if plugins is None else plugins
    label = rank_label(list(specs), specs, plugins, rank_by)
    return label, display_names(specs, plugins).get(label, label)


def ranked_accuracy(
    metrics: Mapping[str, Any],
    specs: Entries,
    split: str = "",
    rank_by: str | None = None,
    plugins: Mapping[str, type] | None = None,
) -> tuple[str, float] | None:
    """(display name, value) of the accuracy the protocol ranks by (`ranked_column`), read from `metrics` under
    `split` (a cell's metrics with split `test`, a measured teacher card with none); None when it is missing. What
    a one-line summary of a cell or a teacher shows instead of a hard-coded AutoAttack accuracy."""
    column = ranked_column(specs, rank_by, plugins)
    value = None if column is None else metrics.get(metric_key(split, column[0]))
    return None if value is None else (column[1], float(value))


def column_order(labels: Iterable[str], specs: Entries, plugins: Mapping[str, type]) -> list[str]:
    """Attack labels for a table when the protocol's own order is unknown: those with a sanity rank (PGD), then
    the others, each group by name, final attacks last."""

    def key(label: str) -> tuple[bool, bool, str]:
        plugin = _plugin(specs, plugins, label)
        return plugin.final, plugin.sanity_rank is None, label

    return sorted(labels, key=key)


def table_order(order: Iterable[str], labels: Iterable[str], specs: Entries, plugins: Mapping[str, type]) -> list[str]:
    """A table's accuracy columns among `labels` (those with numbers): clean first, then the protocol's `order`,
    labels it does not list after them (`column_order`), final attacks last (stable)."""
    labels, order = set(labels), list(order)
    unlisted = labels - {CLEAN} - set(order)
    ordered = [label for label in [*order, *column_order(unlisted, specs, plugins)] if label in labels]
    ordered.sort(key=lambda label: _plugin(specs, plugins, label).final)
    return ([CLEAN] if CLEAN in labels else []) + ordered


def first_stage(entry: AttackEntry, plugins: Mapping[str, type]) -> AttackEntry | None:
    """The entry's declared first stage (`AttackTraits.first_stage`), timed apart by calibration; None when its
    attack treats every point alike or is not registered."""
    plugin = plugins.get(entry.attack)
    table = None if plugin is None else plugin.first_stage(entry.table)
    return None if table is None else AttackEntry.from_table(entry.label, table)


def sweep_entry(entry: AttackEntry, plugins: Mapping[str, type]) -> AttackEntry:
    """What the diagnostics' eps sweep runs in the entry's place (`AttackTraits.sweep_spec`)."""
    return AttackEntry.from_table(entry.label, plugins[entry.attack].sweep_spec(entry.table))


def format_accuracies(measured: Mapping[str, Any], specs: Entries, plugins: Mapping[str, type] | None = None) -> str:
    """`clean 97.0%, PGD-20 90.0%, AutoAttack 85.0%`: clean and each label's accuracy of a measured teacher card
    or a metrics dict (no split), in the protocol's order (`specs`), then any other label the card has; a missing
    or non-numeric value shows as `n/a`, so printing never crashes on a protocol labelled otherwise. `plugins`
    default: the registered ones."""
    plugins = plugins_of(specs) if plugins is None else plugins
    names = display_names(specs, plugins)
    keys = [parse_metric_key(name) for name in measured]
    found = [key.label for key in keys if key is not None and not key.split and key.is_accuracy]
    labels = [CLEAN, *specs, *(label for label in found if label not in specs and label != CLEAN)]

    def shown(label: str) -> str:
        value = measured.get(metric_key(None, label))
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return f"{names.get(label, label)} " + (f"{value:.1%}" if number else "n/a")

    return ", ".join(shown(label) for label in labels)


def sanity_pairs(specs: Entries, plugins: Mapping[str, type]) -> list[tuple[str, str, str]]:
    """(stronger, weaker, flag code) for the sanity flags, from the attacks' declared ranks: each attack plugin
    with a rank against every lower rank (clean is `CLEAN`, rank 0), neighbours first (`aa>pgd`, `pgd>clean`,
    then `aa>clean`). The stronger one must leave at most as many points robust as the weaker."""
    ranked = {CLEAN: (0, CLEAN)}
    for entry in specs.values():
        plugin = plugins.get(entry.attack, AttackTraits)
        if plugin.sanity_rank is not None:
            ranked[entry.attack] = (plugin.sanity_rank, plugin.flag_code or entry.attack)
    order = sorted(ranked, key=lambda name: -ranked[name][0])
    pairs = []
    for distance in range(1, len(order)):
        for strong, weak in zip(order, order[distance:]):
            if ranked[strong][0] > ranked[weak][0]:
                pairs.append((strong, weak, f"{ranked[strong][1]}>{ranked[weak][1]}"))
    return pairs
