"""Leaderboards from MLflow through pandas: one row per method x student x teacher, each accuracy as
mean ± std over seeds with n, sorted by AutoAttack, and the evaluation flags any seed raised (`flags`, see
`rkdbench.flags`). Only runs with the same protocol hash share a table, so results from different protocols
(or overridden ones) can never be mixed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from .compare import mcnemar_exact
from .flags import FLAG_TAGS
from .tracking import Tracker

__all__ = ["Table", "collect_runs", "build_tables", "per_example_loader", "render", "FORMATS", "TIE_LEVEL"]

TIE_LEVEL = 0.05  # a row whose paired p-value against the best is at least this is marked as a statistical tie

FORMATS = ("md", "csv")
PRETTY = {"clean": "clean", "pgd20": "PGD-20", "cw": "CW", "aa": "AutoAttack", "worst": "worst"}
# Diagnostics shown after the accuracies when the runs have them (student specialization, METHODS.md §11).
DIAGNOSTICS = {"spec.clean.mean_best": "spec clean", "spec.adv.mean_best": "spec adv"}
SELECTION_PREFIX = {"last": "test.", "best-val": "best_val."}
GROUP = ["method_variant", "student", "teacher"]


@dataclass
class Table:
    """A leaderboard for one protocol hash: `frame` has numeric mean/std columns; `title` names the protocol."""

    protocol: str
    protocol_hash: str
    experiment: str
    selection: str
    frame: pd.DataFrame
    attack_columns: list[str]
    diagnostic_columns: list[str]
    ranked_by: str = "aa"

    @property
    def title(self) -> str:
        return f"{self.experiment} (protocol {self.protocol}, hash {self.protocol_hash[:12]}, selection {self.selection})"


def collect_runs(tracker: Tracker, protocol: str | None = None) -> pd.DataFrame:
    """All FINISHED cell runs (optionally of one protocol name) as a DataFrame from `mlflow.search_runs`."""
    import mlflow

    tracker.check_reachable()
    names = {e.experiment_id: e.name for e in tracker.client.search_experiments()}
    experiments = list(names)
    if not experiments:
        return pd.DataFrame()
    filters = ["tags.`rkdbench.kind` = 'cell'", "attributes.status = 'FINISHED'"]
    if protocol:
        filters.append(f"tags.`rkdbench.protocol` = '{protocol}'")
    mlflow.set_tracking_uri(tracker.uri)
    runs = mlflow.search_runs(experiment_ids=experiments, filter_string=" and ".join(filters), output_format="pandas")
    if runs.empty:
        return runs
    runs["experiment"] = runs["experiment_id"].map(names)
    return runs.rename(columns=lambda c: c[len("tags.rkdbench."):] if c.startswith("tags.rkdbench.") else c)


def _attack_labels(runs: pd.DataFrame, prefix: str) -> list[str]:
    labels = [c[len("metrics." + prefix):-4] for c in runs.columns
              if c.startswith("metrics." + prefix) and c.endswith("_acc") and runs[c].notna().any()
              and "." not in c[len("metrics." + prefix):]]  # `aa.apgd-ce_acc` are stages, not attacks
    ordered = [label for label in ("clean", "pgd20", "cw", "aa") if label in labels]
    return ordered + sorted(set(labels) - set(ordered) - {"worst"})


def _union_flags(values: pd.Series) -> str:
    """Every code raised by any seed, sorted; runs logged before flags existed have no tag and add nothing."""
    codes = {code for value in values.dropna() for code in str(value).split(",") if code}
    return ",".join(sorted(codes))


def build_tables(runs: pd.DataFrame, selection: str = "last",
                 per_example: Callable[[str], pd.DataFrame | None] | None = None) -> list[Table]:
    """One `Table` per protocol hash, rows aggregated over seeds and sorted by AutoAttack (else worst case);
    with `per_example` (run id -> per-example frame), each row also gets its paired p-value against the best."""
    if runs.empty:
        return []
    prefix = SELECTION_PREFIX[selection]
    tables = []
    for (protocol, protocol_hash, experiment), runs_p in runs.groupby(["protocol", "protocol_hash", "experiment"], sort=True):
        labels = _attack_labels(runs_p, prefix)
        diagnostics = [m for m in DIAGNOSTICS if f"metrics.{m}" in runs_p and runs_p[f"metrics.{m}"].notna().all()]
        rows = []
        for key, group in runs_p.groupby(GROUP, sort=True):
            row = dict(zip(GROUP, key))
            row["n"] = len(group)
            row["seeds"] = ",".join(sorted(group["seed"].astype(str)))
            for label in labels:
                values = group[f"metrics.{prefix}{label}_acc"].astype(float) * 100
                row[f"{label}_mean"] = values.mean()
                row[f"{label}_std"] = values.std(ddof=1) if len(values) > 1 else float("nan")
            for metric in diagnostics:
                values = group[f"metrics.{metric}"].astype(float)
                row[f"{metric}_mean"] = values.mean()
                row[f"{metric}_std"] = values.std(ddof=1) if len(values) > 1 else float("nan")
            row["flags"] = _union_flags(group.get(FLAG_TAGS[selection], pd.Series(dtype=object)))
            row["runs"] = dict(zip(group["seed"].astype(str), group["run_id"]))
            rows.append(row)
        ranked = "aa" if "aa" in labels else labels[-1]
        frame = pd.DataFrame(rows).sort_values([f"{ranked}_mean", *GROUP],
                                               ascending=[False, True, True, True]).reset_index(drop=True)
        if per_example is not None:
            frame["p_vs_best"] = _p_values_vs_best(frame, ranked, selection, per_example)
        tables.append(Table(protocol, protocol_hash, experiment, selection, frame.drop(columns="runs"), labels,
                            diagnostics, ranked))
    return tables


def _p_values_vs_best(frame: pd.DataFrame, label: str, selection: str,
                      per_example: Callable[[str], pd.DataFrame | None]) -> list[float]:
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


def per_example_loader(tracker: Tracker) -> Callable[[str], pd.DataFrame | None]:
    """Read (and cache) a run's `per_example.parquet` artifact; None when the run has none."""
    import tempfile

    cache: dict[str, pd.DataFrame | None] = {}

    def load(run_id: str) -> pd.DataFrame | None:
        if run_id not in cache:
            try:
                with tempfile.TemporaryDirectory() as folder:
                    cache[run_id] = pd.read_parquet(tracker.client.download_artifacts(run_id, "per_example.parquet", folder))
            except Exception:  # an evaluation without per-example results cannot be paired: the row gets no p-value
                cache[run_id] = None
        return cache[run_id]

    return load


def _cell(mean: float, std: float, digits: int = 1) -> str:
    return f"{mean:.{digits}f}" if pd.isna(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def render(table: Table, fmt: str = "md") -> str:
    """Markdown (mean ± std in %) or CSV (numeric columns) text for one table."""
    frame = table.frame
    if fmt == "csv":
        return frame.to_csv(index=False, float_format="%.4f")
    shown = pd.DataFrame({
        "rank": range(1, len(frame) + 1),
        "method": frame["method_variant"], "student": frame["student"], "teacher": frame["teacher"], "n": frame["n"],
        **{PRETTY.get(label, label): [_cell(m, s) for m, s in zip(frame[f"{label}_mean"], frame[f"{label}_std"])]
           for label in table.attack_columns},
        **{DIAGNOSTICS[metric]: [_cell(m, s, 2) for m, s in zip(frame[f"{metric}_mean"], frame[f"{metric}_std"])]
           for metric in table.diagnostic_columns},
        # code spans: `black-box<white-box` would otherwise open an HTML tag in rendered Markdown
        "flags": [", ".join(f"`{code}`" for code in codes.split(",") if code) for codes in frame["flags"]],
    })
    if "p_vs_best" in frame:
        shown.insert(int(shown.columns.get_loc("flags")), "vs best", [_versus_best(i, p) for i, p in enumerate(frame["p_vs_best"])])
    note = ("; spec = mean best teacher-student unit correlation of the last checkpoint (clean / PGD inputs)"
            if table.diagnostic_columns else "")
    note += "; flags = evaluation checks any seed failed (docs/tracking.md)"
    if "p_vs_best" in frame:
        note += (f"; vs best = exact McNemar p-value against rank 1 on paired per-example "
                 f"{PRETTY.get(table.ranked_by, table.ranked_by)} robustness, ≈ when p >= {TIE_LEVEL} "
                 f"(not significantly different)")
    return f"### {table.title}\n\nAccuracy in % on the protocol's test points (mean ± std over n seeds){note}.\n\n" + \
        shown.to_markdown(index=False, disable_numparse=True) + "\n"


def _versus_best(rank: int, p: float) -> str:
    if rank == 0:
        return "best"
    if pd.isna(p):
        return ""
    return f"≈ (p={p:.2f})" if p >= TIE_LEVEL else f"p={p:.3f}"


def write_tables(tables: list[Table], out_dir: Path, fmt: str = "md") -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for table in tables:
        path = out_dir / f"{table.experiment.replace('/', '_')}.{table.selection}.{fmt}"
        path.write_text(render(table, fmt))
        paths.append(path)
    return paths
