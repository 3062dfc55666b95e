"""The second stage of a leaderboard: the runs `collect` read become one `Table` per protocol hash (runs of
different protocols, or of an overridden one, never share a table), one row per method x student x teacher. Each
accuracy is a mean ± std over seeds with n, one column per evaluated attack in the protocol's order (clean first,
the final attack, AutoAttack, last), named and ranked as the attacks declare (`attack_traits`: the protocol's
`eval.rank_by`, else its final attack); beside it the paired p-value against the best, the teacher's measured
final-attack accuracy and the gap to it (`teacher_accuracy`), published numbers (`references`), training cost, the
evaluation flags any seed raised (`flags`) and the runs. The renderers (`formats`, `html`, `terminal`, `plots`)
only read the tables.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ..attacks.traits import (
    ATTACK_PARAM,
    WORST,
    AttackEntry,
    display_names,
    final_label,
    plugins_of,
    rank_label,
    stored_specs,
    table_order,
)
from ..config import attack_entries
from ..evaluation.flags import FLAG_TAGS
from ..teachers.accuracy import TeacherAccuracies, evaluation_key
from ..tracking.schema import (
    TRAIN_SECONDS,
    metric_column,
    metric_key,
    metric_of_column,
    parse_metric_key,
    selection_split,
)
from .collect import IGNORED
from .columns import mean_std, row_cells
from .compare import mcnemar_exact
from .references import Reference, join_references, load_references
from .table import COSTS, DIAGNOSTICS, Table

__all__ = ["build_tables"]

GROUP = ["method_variant", "student", "teacher"]
RANK_BY = "params.protocol.eval.rank_by"  # the protocol's `eval.rank_by` among the runs' params


@dataclass(frozen=True)
class Attacks:
    """What a table needs to know about its protocol's attacks: the labels in the protocol's order, their specs
    (`[eval.attacks]`), the plugins' declarations and the protocol's `eval.rank_by`."""

    order: list[str]
    specs: dict[str, AttackEntry]
    plugins: dict[str, type]
    rank_by: str | None


def _attacks(runs: pd.DataFrame, first: pd.Series, config: dict[str, Any] | None) -> Attacks:
    """The protocol's attacks from the first run's config.toml, else from its params (runs logged before the
    config.toml artifact); runs stored with neither keep what the built-in protocols' labels meant."""
    evaluation = config.get("eval", {}) if config else {}
    if isinstance(evaluation.get("attacks"), dict):
        specs = attack_entries(evaluation["attacks"])
        order, rank_by = list(specs), evaluation.get("rank_by")
    else:
        params = {str(c): v for c, v in first.items() if isinstance(v, str)}  # a param absent from this run: NaN
        order, specs = [], stored_specs(params, prefix="params." + ATTACK_PARAM)
        rank_by = runs[RANK_BY].dropna().iloc[0] if RANK_BY in runs and runs[RANK_BY].notna().any() else None
    return Attacks(order, specs, plugins_of(specs), None if rank_by is None else str(rank_by))


def _attack_labels(runs: pd.DataFrame, split: str, attacks: Attacks) -> list[str]:
    """Labels with a metric: clean first, then the protocol's order (unknown ones after), final attacks last;
    AutoAttack's stages (`aa.apgd-ce_acc`), worst-class accuracies and the worst case are no attacks."""
    keys = {column: parse_metric_key(metric_of_column(column) or "") for column in runs.columns}
    labels = {
        key.label
        for column, key in keys.items()
        if key is not None and key.split == split and key.is_accuracy and runs[column].notna().any()
    }
    return table_order(attacks.order, labels - {WORST}, attacks.specs, attacks.plugins)


def _union_flags(values: pd.Series) -> str:
    """Every code raised by any seed, sorted; runs logged before flags existed have no tag and add nothing."""
    codes = {code for value in values.dropna() for code in str(value).split(",") if code}
    return ",".join(sorted(codes))


def _values(group: pd.DataFrame, column: str) -> pd.Series:
    """A numeric column of the group (all NaN when no run logged it)."""
    return group[column].astype(float) if column in group else pd.Series(float("nan"), index=group.index)


def _device(group: pd.DataFrame) -> pd.Series:
    """Each run's training device: its `rkdbench.device` tag (`cuda:0`, `cpu`), else the protocol's explicit
    `train.device` (runs logged before the tag existed; `auto` says nothing, so their GPU-hours stay blank)."""
    device = pd.Series("", index=group.index)
    for column in ("params.protocol.train.device", "device"):  # the tag wins where both exist
        if column in group:
            device = group[column].fillna("").astype(str).where(group[column].notna(), device)
    return device


def _row(
    key: tuple, group: pd.DataFrame, split: str, labels: list[str], diagnostics: list[str], selection: str
) -> dict[str, Any]:
    row: dict[str, Any] = dict(zip(GROUP, key))
    row["n"] = len(group)
    row["seeds"] = ",".join(sorted(group["seed"].astype(str)))
    row["selection"] = selection
    for label in labels:
        accuracy = group[metric_column(metric_key(split, label))].astype(float) * 100
        row[f"{label}_mean"], row[f"{label}_std"] = mean_std(accuracy)
    for metric in diagnostics:
        row[f"{metric}_mean"], row[f"{metric}_std"] = mean_std(group[metric_column(metric)].astype(float))
    row.update(row_cells(group, split, labels))  # precision, worst-class and transferability columns
    seconds = _values(group, metric_column(TRAIN_SECONDS))
    row["train_seconds"] = seconds.mean()
    gpu = _device(group).str.startswith("cuda")
    row["gpu_hours"] = (seconds / 3600).where(gpu).mean(skipna=False)  # blank if any seed trained on the CPU
    for column, metric in COSTS.items():
        row[column] = _values(group, metric_column(metric)).mean()
    row["passes"] = sum(row[c] for c in COSTS)  # NaN unless all four were logged
    row["flags"] = _union_flags(group.get(FLAG_TAGS[selection], pd.Series(dtype=object)))
    ordered = group.assign(_seed=group["seed"].astype(str)).sort_values(["_seed", "run_id"])
    row["runs"] = dict(zip(ordered["_seed"], ordered["run_id"]))
    return row


def build_tables(
    runs: pd.DataFrame,
    selection: str = "last",
    per_example: Callable[[str], pd.DataFrame | None] | None = None,
    *,
    config: Callable[[str], dict[str, Any] | None] | None = None,
    references: Sequence[Reference] | None = None,
    teachers: TeacherAccuracies | None = None,
    ui_url: str = "",
) -> list[Table]:
    """One `Table` per protocol hash, rows aggregated over seeds and sorted by the protocol's `eval.rank_by`, else
    its final attack (AutoAttack), else its last attack; with `per_example` (run id -> per-example frame) each row
    also gets its paired p-value against the best, with `config` (run id -> its config.toml) attacks follow the
    protocol's order, `references` (default: the packaged file) add reported numbers, and `teachers` the teacher's
    final-attack accuracy and the gap to it."""
    if runs.empty:
        return []
    references = load_references() if references is None else list(references)
    split = selection_split(selection)
    tables = []
    for (protocol, protocol_hash, experiment), runs_p in runs.groupby(
        ["protocol", "protocol_hash", "experiment"], sort=True
    ):
        first = runs_p.sort_values("run_id").iloc[0]
        attacks = _attacks(runs_p, first, config(first["run_id"]) if config is not None else None)
        labels = _attack_labels(runs_p, split, attacks)
        if not labels:  # no run of this protocol has numbers for this selection (best-val not evaluated)
            continue
        aa_label = final_label(labels, attacks.specs, attacks.plugins)
        diagnostics = [m for m in DIAGNOSTICS if metric_column(m) in runs_p and runs_p[metric_column(m)].notna().all()]
        rows = [
            _row(key, group, split, labels, diagnostics, selection) for key, group in runs_p.groupby(GROUP, sort=True)
        ]
        rank_by = attacks.rank_by if attacks.rank_by in labels else None  # no numbers for it in this selection
        ranked = rank_label(labels, attacks.specs, attacks.plugins, rank_by)
        frame = (
            pd.DataFrame(rows)
            .sort_values([f"{ranked}_mean", *GROUP], ascending=[False, True, True, True])
            .reset_index(drop=True)
        )
        if aa_label is not None:
            key = evaluation_key({c[len("params.") :]: v for c, v in first.items() if str(c).startswith("params.")})
            found = [teachers.find(t, protocol_hash, key, aa_label) if teachers else None for t in frame["teacher"]]
            frame.insert(
                int(frame.columns.get_loc("train_seconds")),
                "teacher_aa",
                [float("nan") if v is None else v for v in found],
            )
            frame.insert(
                int(frame.columns.get_loc("train_seconds")),
                "aa_gap_to_teacher",
                frame[f"{aa_label}_mean"] - frame["teacher_aa"],
            )
        joined = join_references(frame, experiment, references, aa_label)
        if per_example is not None:
            frame["p_vs_best"] = _p_values_vs_best(frame, ranked, selection, per_example)
        experiment_id = str(first["experiment_id"]) if "experiment_id" in first else ""
        tables.append(
            Table(
                protocol,
                protocol_hash,
                experiment,
                selection,
                frame,
                labels,
                diagnostics,
                ranked,
                experiment_id,
                aa_label,
                joined,
                ui_url,
                int(runs.attrs.get(IGNORED, {}).get(protocol_hash, 0)),
                # names of this table's labels only: a legacy label's name must not collide with a stored one's
                display_names({k: v for k, v in attacks.specs.items() if k in labels}, attacks.plugins),
            )
        )
    return tables


def _p_values_vs_best(
    frame: pd.DataFrame, label: str, selection: str, per_example: Callable[[str], pd.DataFrame | None]
) -> list[float]:
    """Exact McNemar p-value of each row against the top row on the ranked attack's per-example robustness,
    pairing test points within each seed both rows ran (so seeds are pooled, never mixed); NaN without data."""
    best = frame.iloc[0]["runs"]
    values = []
    for runs in frame["runs"]:
        pairs = []
        for seed in sorted(set(best) & set(runs)):
            a, b = per_example(best[seed]), per_example(runs[seed])
            if a is None or b is None or label not in a or label not in b:
                continue
            a, b = a[a.selection == selection], b[b.selection == selection]
            pairs.append(a[["index", label]].merge(b[["index", label]], on="index", suffixes=("_a", "_b")))
        if not pairs:
            values.append(float("nan"))
            continue
        paired = pd.concat(pairs)
        only_best = int((paired[f"{label}_a"] & ~paired[f"{label}_b"]).sum())
        only_row = int((~paired[f"{label}_a"] & paired[f"{label}_b"]).sum())
        values.append(mcnemar_exact(only_best, only_row))
    return values
