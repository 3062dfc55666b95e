"""Leaderboards from MLflow through pandas: one `Table` per protocol hash (runs of different protocols, or of an
overridden one, never share a table), one row per method x student x teacher. Each accuracy is a mean ± std over
seeds with n, one column per evaluated attack in the protocol's order (clean first, AutoAttack last), ranked by
AutoAttack; beside it the paired p-value against the best, the teacher's measured AutoAttack accuracy and the gap
to it (`teacher_accuracy`), published numbers (`references`), training cost, the evaluation flags any seed raised
(`flags`) and the runs. Text forms are in `leaderboard_formats` and `leaderboard_html`, plots in `plots`, files
and the MLflow leaderboard run in `leaderboard_publish`.
"""

from __future__ import annotations

import math
import os
import tempfile
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from .compare import mcnemar_exact
from .counting import counted_frame
from .flags import FLAG_TAGS
from .leaderboard_columns import row_cells
from .references import Reference, join_references, load_references
from .teacher_accuracy import TeacherAccuracies, evaluation_key
from .tracking import Tracker

__all__ = ["Table", "collect_runs", "build_tables", "per_example_loader", "config_loader", "history_loader", "render",
           "render_many", "FORMATS", "TIE_LEVEL", "PRETTY", "COSTS"]

TIE_LEVEL = 0.05  # a row whose paired p-value against the best is at least this is marked as a statistical tie

FORMATS = ("md", "csv", "json", "html")
PRETTY = {"clean": "clean", "pgd20": "PGD-20", "cw": "CW", "aa": "AutoAttack", "worst": "worst"}
# Diagnostics shown after the accuracies when the runs have them (student specialization, METHODS.md §11).
DIAGNOSTICS = {"spec.clean.mean_best": "spec clean", "spec.adv.mean_best": "spec adv"}
SELECTION_PREFIX = {"last": "test.", "best-val": "best_val.", "swa": "swa."}
GROUP = ["method_variant", "student", "teacher"]
# Forward/backward passes per training example per epoch, as the engine counts them (column -> metric)
COSTS = {"student_forward": "cost.student_forward", "student_backward": "cost.student_backward",
         "teacher_forward": "cost.teacher_forward", "teacher_backward": "cost.teacher_backward"}
FALLBACK_ORDER = ("pgd20", "cw")  # attack order when a run's config.toml cannot be read
AUTOATTACK = "autoattack"
IGNORED = "ignored_runs"  # collect_runs' attrs: protocol hash -> duplicate runs left out


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
    experiment_id: str = ""
    aa_label: str | None = None  # the AutoAttack label: teacher gap, reported numbers and plots compare on it
    references: list[Reference] = field(default_factory=list)  # the published numbers joined into `frame`
    ui_url: str = ""  # base URL of the MLflow UI for run links; "" leaves the UI's own path
    ignored_runs: int = 0  # duplicate runs of cells already counted (`counting`), left out of the rows

    @property
    def title(self) -> str:
        return f"{self.experiment} (protocol {self.protocol}, hash {self.protocol_hash[:12]}, selection {self.selection})"

    def run_link(self, run_id: str) -> str:
        path = f"#/experiments/{self.experiment_id}/runs/{run_id}"
        return f"{self.ui_url.rstrip('/')}/{path}" if self.ui_url else path


def collect_runs(tracker: Tracker, protocol: str | None = None) -> pd.DataFrame:
    """All FINISHED cell runs (optionally of one protocol name) as a DataFrame from `mlflow.search_runs`; runs of
    another kind (`evaluation`, `leaderboard`) never appear."""
    import mlflow

    tracker.check_reachable()
    names = {e.experiment_id: e.name for e in tracker.client.search_experiments()}
    experiments = list(names)
    if not experiments:
        return pd.DataFrame()
    filters = ["tags.`rkdbench.kind` = 'cell'", "attributes.status = 'FINISHED'"]
    if protocol:
        filters.append(f"tags.`rkdbench.protocol` = '{protocol}'")
    # mlflow.search_runs reads the process-wide tracking URI (and exports it to the environment): set it for
    # this one call only, so that a later store opened in the same process is not this one
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(tracker.uri)
    try:
        runs = mlflow.search_runs(experiment_ids=experiments, filter_string=" and ".join(filters),
                                  output_format="pandas")
    finally:
        mlflow.set_tracking_uri(previous)
    if runs.empty:
        return runs
    runs, ignored = counted_frame(runs)  # each cell key once: `counting`
    runs["experiment"] = runs["experiment_id"].map(names)
    runs = runs.rename(columns=lambda c: c[len("tags.rkdbench."):] if c.startswith("tags.rkdbench.") else c)
    runs.attrs[IGNORED] = ignored["tags.rkdbench.protocol_hash"].value_counts().to_dict() if len(ignored) else {}
    return runs


def _attack_kinds(runs: pd.DataFrame, config: dict[str, Any] | None) -> tuple[list[str], dict[str, str]]:
    """(labels in the protocol's order, label -> attack plugin) from the run's config.toml, else from params."""
    if config and isinstance(config.get("eval", {}).get("attacks"), dict):
        attacks = config["eval"]["attacks"]
        return list(attacks), {label: str(spec.get("attack", "")) for label, spec in attacks.items()}
    prefix, suffix = "params.protocol.eval.attacks.", ".attack"
    kinds = {c[len(prefix):-len(suffix)]: str(runs[c].dropna().iloc[0]) for c in runs.columns
             if c.startswith(prefix) and c.endswith(suffix) and runs[c].notna().any()}
    return [], {"aa": AUTOATTACK, **kinds}  # the built-in protocols' label for AutoAttack is `aa`


def _attack_labels(runs: pd.DataFrame, prefix: str, order: list[str], kinds: dict[str, str]) -> list[str]:
    """Labels with a metric: clean first, then the protocol's order (unknown ones after), AutoAttack last."""
    labels = {c[len("metrics." + prefix):-4] for c in runs.columns
              if c.startswith("metrics." + prefix) and c.endswith("_acc") and runs[c].notna().any()
              and "." not in c[len("metrics." + prefix):]}  # `aa.apgd-ce_acc` are stages, not attacks
    labels = {label for label in labels if label != "worst" and not label.startswith("worst_class_")}
    unlisted = labels - {"clean"} - set(order)
    rest = [label for label in FALLBACK_ORDER if label in unlisted] + sorted(unlisted - set(FALLBACK_ORDER))
    ordered = [label for label in [*order, *rest] if label in labels]
    ordered.sort(key=lambda label: kinds.get(label) == AUTOATTACK)  # stable: AutoAttack last, the rest kept
    return (["clean"] if "clean" in labels else []) + ordered


def _union_flags(values: pd.Series) -> str:
    """Every code raised by any seed, sorted; runs logged before flags existed have no tag and add nothing."""
    codes = {code for value in values.dropna() for code in str(value).split(",") if code}
    return ",".join(sorted(codes))


def _values(group: pd.DataFrame, column: str) -> pd.Series:
    """A numeric column of the group (all NaN when no run logged it)."""
    return group[column].astype(float) if column in group else pd.Series(float("nan"), index=group.index)


def _mean_std(values: pd.Series) -> tuple[float, float]:
    return values.mean(), values.std(ddof=1) if len(values) > 1 else float("nan")


def _device(group: pd.DataFrame) -> pd.Series:
    """Each run's training device: its `rkdbench.device` tag (`cuda:0`, `cpu`), else the protocol's explicit
    `train.device` (runs logged before the tag existed; `auto` says nothing, so their GPU-hours stay blank)."""
    device = pd.Series("", index=group.index)
    for column in ("params.protocol.train.device", "device"):  # the tag wins where both exist
        if column in group:
            device = group[column].fillna("").astype(str).where(group[column].notna(), device)
    return device


def _row(key: tuple, group: pd.DataFrame, prefix: str, labels: list[str], diagnostics: list[str],
         selection: str) -> dict[str, Any]:
    row: dict[str, Any] = dict(zip(GROUP, key))
    row["n"] = len(group)
    row["seeds"] = ",".join(sorted(group["seed"].astype(str)))
    row["selection"] = selection
    for label in labels:
        row[f"{label}_mean"], row[f"{label}_std"] = _mean_std(group[f"metrics.{prefix}{label}_acc"].astype(float) * 100)
    for metric in diagnostics:
        row[f"{metric}_mean"], row[f"{metric}_std"] = _mean_std(group[f"metrics.{metric}"].astype(float))
    row.update(row_cells(group, prefix, labels))  # precision, worst-class and transferability columns
    seconds = _values(group, "metrics.train.seconds")
    row["train_seconds"] = seconds.mean()
    gpu = _device(group).str.startswith("cuda")
    row["gpu_hours"] = (seconds / 3600).where(gpu).mean(skipna=False)  # blank if any seed trained on the CPU
    for column, metric in COSTS.items():
        row[column] = _values(group, f"metrics.{metric}").mean()
    row["passes"] = sum(row[c] for c in COSTS)  # NaN unless all four were logged
    row["flags"] = _union_flags(group.get(FLAG_TAGS[selection], pd.Series(dtype=object)))
    ordered = group.assign(_seed=group["seed"].astype(str)).sort_values(["_seed", "run_id"])
    row["runs"] = dict(zip(ordered["_seed"], ordered["run_id"]))
    return row


def build_tables(runs: pd.DataFrame, selection: str = "last",
                 per_example: Callable[[str], pd.DataFrame | None] | None = None, *,
                 config: Callable[[str], dict[str, Any] | None] | None = None,
                 references: Sequence[Reference] | None = None, teachers: TeacherAccuracies | None = None,
                 ui_url: str = "") -> list[Table]:
    """One `Table` per protocol hash, rows aggregated over seeds and sorted by AutoAttack (else the last attack);
    with `per_example` (run id -> per-example frame) each row also gets its paired p-value against the best, with
    `config` (run id -> its config.toml) attacks follow the protocol's order, `references` (default: the packaged
    file) add reported numbers, and `teachers` the teacher's AutoAttack accuracy and the gap to it."""
    if runs.empty:
        return []
    references = load_references() if references is None else list(references)
    prefix = SELECTION_PREFIX[selection]
    tables = []
    for (protocol, protocol_hash, experiment), runs_p in runs.groupby(["protocol", "protocol_hash", "experiment"], sort=True):
        first = runs_p.sort_values("run_id").iloc[0]
        order, kinds = _attack_kinds(runs_p, config(first["run_id"]) if config is not None else None)
        labels = _attack_labels(runs_p, prefix, order, kinds)
        if not labels:  # no run of this protocol has numbers for this selection (best-val not evaluated)
            continue
        aa_label = next((label for label in reversed(labels) if kinds.get(label) == AUTOATTACK), None)
        diagnostics = [m for m in DIAGNOSTICS if f"metrics.{m}" in runs_p and runs_p[f"metrics.{m}"].notna().all()]
        rows = [_row(key, group, prefix, labels, diagnostics, selection) for key, group in runs_p.groupby(GROUP, sort=True)]
        ranked = aa_label or labels[-1]
        frame = pd.DataFrame(rows).sort_values([f"{ranked}_mean", *GROUP],
                                               ascending=[False, True, True, True]).reset_index(drop=True)
        if aa_label is not None:
            key = evaluation_key({c[len("params."):]: v for c, v in first.items() if str(c).startswith("params.")})
            found = [teachers.find(t, protocol_hash, key, aa_label) if teachers else None for t in frame["teacher"]]
            frame.insert(int(frame.columns.get_loc("train_seconds")), "teacher_aa",
                         [float("nan") if v is None else v for v in found])
            frame.insert(int(frame.columns.get_loc("train_seconds")), "aa_gap_to_teacher",
                         frame[f"{aa_label}_mean"] - frame["teacher_aa"])
        joined = join_references(frame, experiment, references, aa_label)
        if per_example is not None:
            frame["p_vs_best"] = _p_values_vs_best(frame, ranked, selection, per_example)
        experiment_id = str(first["experiment_id"]) if "experiment_id" in first else ""
        tables.append(Table(protocol, protocol_hash, experiment, selection, frame, labels, diagnostics, ranked,
                            experiment_id, aa_label, joined, ui_url,
                            int(runs.attrs.get(IGNORED, {}).get(protocol_hash, 0))))
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


def _artifact_loader(tracker: Tracker, artifact: str, read: Callable[[Path], Any]) -> Callable[[str], Any]:
    """Read (and cache) one artifact of a run; None when the run has none or it cannot be read."""
    cache: dict[str, Any] = {}

    def load(run_id: str) -> Any:
        if run_id not in cache:
            try:
                with tempfile.TemporaryDirectory() as folder:
                    cache[run_id] = read(Path(tracker.client.download_artifacts(run_id, artifact, folder)))
            except Exception:  # a run without the artifact only loses what it would add (a p-value, the order)
                cache[run_id] = None
        return cache[run_id]

    return load


def per_example_loader(tracker: Tracker) -> Callable[[str], pd.DataFrame | None]:
    """A run's `per_example.parquet` artifact; None when the run has none."""
    return _artifact_loader(tracker, "per_example.parquet", pd.read_parquet)


def config_loader(tracker: Tracker) -> Callable[[str], dict[str, Any] | None]:
    """A cell run's `config.toml` artifact (the resolved protocol, attacks in the protocol's order); None without."""
    return _artifact_loader(tracker, "config.toml", lambda path: tomllib.loads(path.read_text()))


def history_loader(tracker: Tracker, metric: str = "val.pgd_acc") -> Callable[[str], list[tuple[int, float]]]:
    """A run's per-epoch values of `metric` as (step, value), sorted by step; the last value logged per step."""

    def load(run_id: str) -> list[tuple[int, float]]:
        points = {m.step: m.value for m in sorted(tracker.client.get_metric_history(run_id, metric),
                                                  key=lambda m: (m.step, m.timestamp))}
        return sorted((step, value) for step, value in points.items() if not math.isnan(value))

    return load


def render(table: Table, fmt: str = "md") -> str:
    """One table as Markdown (mean ± std in %), CSV or JSON (numeric columns), or a self-contained HTML page."""
    return render_many([table], fmt)


def render_many(tables: Sequence[Table], fmt: str = "md") -> str:
    """Several tables as one text: Markdown sections, CSV blocks, one HTML page, a JSON document (a list of them
    for more than one table)."""
    from .leaderboard_formats import dump_json, json_document, to_csv, to_markdown
    from .leaderboard_html import to_html

    if fmt == "html":
        return to_html(tables)
    if fmt == "json":
        documents = [json_document(table) for table in tables]
        return dump_json(documents[0] if len(documents) == 1 else documents)
    write = {"md": to_markdown, "csv": to_csv}[fmt]
    return "\n".join(write(table) for table in tables)
