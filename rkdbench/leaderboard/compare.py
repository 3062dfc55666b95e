"""Paired comparison of two finished cells on the same test points (`rkdbench compare`): reads each MLflow run's
`per_example.parquet`, refuses runs evaluated under different protocols (their protocol hash tags), and
reports both accuracies, their difference A - B with a confidence interval, and an exact McNemar test.

The interval is the Wald interval on the paired differences d_i = a_i - b_i (Agresti, Categorical Data Analysis,
section 10.1): (n10 - n01)/n ± z * sqrt((n10 + n01) - (n10 - n01)^2 / n) / n, where n10 counts the points only A
gets right and n01 those only B gets right; it is clipped to [-1, 1], and it has zero width when no pair is
discordant (McNemar's p is then 1). The McNemar test is the exact two-sided binomial test of n10 against
Binomial(n10 + n01, 1/2), computed with integers (`math.comb`), so no scipy is needed.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from ..errors import UserError
from ..tracking import MissingArtifact, Tracker, schema

__all__ = ["Comparison", "mcnemar_exact", "paired_difference_ci", "compare_runs"]

ARTIFACT = "per_example.parquet"
KEYS = ("selection", "index")  # the columns that locate a point; the boolean others are correctness flags (the
# label `y` and the predictions of the transferability diagnostic are not)


def mcnemar_exact(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value for b and c discordant pairs: 2 * P(X <= min(b, c)), X ~ Bin(b + c, 1/2),
    capped at 1 (and 1 when there are no discordant pairs)."""
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be non-negative, got b={b}, c={c}")
    n = b + c
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2**n)  # int / int is correctly rounded even for large n


def _discordant(a: Sequence[bool] | np.ndarray, b: Sequence[bool] | np.ndarray) -> tuple[int, int, int]:
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1 or not len(a):
        raise ValueError(f"need two non-empty 1-d arrays of equal length, got shapes {a.shape} and {b.shape}")
    return len(a), int((a & ~b).sum()), int((~a & b).sum())


def paired_difference_ci(
    a: Sequence[bool] | np.ndarray, b: Sequence[bool] | np.ndarray, level: float = 0.95
) -> tuple[float, float, float]:
    """(difference, low, high): accuracy of `a` minus accuracy of `b` on the same points, with the Wald interval
    on the paired differences at `level` (see the module docstring)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    n, only_a, only_b = _discordant(a, b)
    difference = (only_a - only_b) / n
    spread = max((only_a + only_b) - (only_a - only_b) ** 2 / n, 0.0)  # n * variance of d_i; rounding can dip below 0
    half = NormalDist().inv_cdf(0.5 + level / 2) * math.sqrt(spread) / n
    return difference, max(-1.0, difference - half), min(1.0, difference + half)


@dataclass(frozen=True)
class Comparison:
    """Two runs' correctness on the same points under `attack` (a per-example column: clean, pgd20, aa, worst...)."""

    run_a: str
    run_b: str
    name_a: str
    name_b: str
    attack: str
    selection: str
    protocol_hash: str
    n: int
    accuracy_a: float
    accuracy_b: float
    difference: float
    ci_low: float
    ci_high: float
    level: float
    only_a: int
    only_b: int
    mcnemar_p: float
    ci_method: str = "wald-paired"
    test: str = "mcnemar-exact"
    ignored: list[str] = field(default_factory=list)  # notes on runs that are ignored duplicates (`counting`)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def render(self) -> str:
        width = max(len(self.name_a), len(self.name_b))
        return "\n".join(
            [
                f"{self.attack} accuracy, selection {self.selection}, protocol hash {self.protocol_hash[:12]}, "
                f"{self.n} paired test points",
                f"  A  {self.name_a:<{width}}  {self.run_a}  {self.accuracy_a:.2%}",
                f"  B  {self.name_b:<{width}}  {self.run_b}  {self.accuracy_b:.2%}",
                f"  A - B: {100 * self.difference:+.2f} points, {self.level:.0%} CI [{100 * self.ci_low:+.2f}, "
                f"{100 * self.ci_high:+.2f}] (Wald, paired)",
                *(f"  note: {note}" for note in self.ignored),
                f"  discordant pairs: {self.only_a + self.only_b} (A only {self.only_a}, B only {self.only_b}); "
                f"exact McNemar p = {self.mcnemar_p:.4g}",
            ]
        )


def _load(tracker: Tracker, run_id: str, selection: str) -> tuple[Any, pd.DataFrame]:
    run = tracker.get_run(run_id)
    if run is None:
        raise UserError(f"no MLflow run {run_id!r} in {tracker.uri}")
    if schema.PROTOCOL_HASH not in run.data.tags:
        raise UserError(f"run {run_id} has no {schema.PROTOCOL_HASH} tag: it is not an rkdbench cell")
    with tempfile.TemporaryDirectory() as folder:
        try:
            path = tracker.download_artifact(run_id, ARTIFACT, folder)
        except MissingArtifact as exc:
            raise UserError(
                f"run {run_id} has no {ARTIFACT} artifact (status {run.info.status}); compare finished cells"
            ) from exc
        frame = pd.read_parquet(path)
    rows = frame[frame["selection"] == selection]
    if rows.empty:
        raise UserError(
            f"run {run_id} has no per-example results for selection {selection!r}; it has: "
            f"{', '.join(sorted(frame['selection'].unique()))}"
        )
    return run, rows


def _ranked_label(run, columns: Sequence[str]) -> str:
    """The label the runs' leaderboard ranks by (`attack_traits.rank_label`), among the per-example columns: the
    protocol's `eval.rank_by`, else its final attack (AutoAttack), else its last attack, else clean."""
    from ..attacks.traits import CLEAN, plugins_of, rank_label, stored_specs, table_order

    specs = stored_specs(run.data.params)
    plugins = plugins_of(specs)
    labels = table_order([], {c for c in columns if c in specs or c == CLEAN}, specs, plugins)
    rank_by = run.data.params.get(schema.PROTOCOL_PARAMS + "eval.rank_by")
    return rank_label(labels, specs, plugins, rank_by if rank_by in labels else None) if labels else CLEAN


def compare_runs(
    results: str | os.PathLike[str],
    run_a: str,
    run_b: str,
    attack: str | None = None,
    selection: str = "last",
    level: float = 0.95,
) -> Comparison:
    """Compare two cell runs of the store in `results` on the `attack` column of their per-example results
    (default: the label their leaderboard ranks by, `_ranked_label`)."""
    tracker = Tracker(results)
    if tracker.uri.startswith("sqlite:///") and not Path(tracker.uri[len("sqlite:///") :]).is_file():
        raise UserError(f"no MLflow store at {tracker.uri}; pass the results folder of a suite run with --results")
    (info_a, frame_a), (info_b, frame_b) = _load(tracker, run_a, selection), _load(tracker, run_b, selection)
    hash_a, hash_b = (info.data.tags[schema.PROTOCOL_HASH] for info in (info_a, info_b))
    if hash_a != hash_b:
        raise UserError(
            f"runs were evaluated under different protocols (protocol hash {hash_a} vs {hash_b}); "
            f"their per-example results are not paired"
        )
    columns = [c for c in frame_a.columns if c not in KEYS and c in frame_b.columns and frame_a[c].dtype == bool]
    attack = _ranked_label(info_a, columns) if attack is None else attack
    if attack not in columns:
        raise UserError(f"no per-example column {attack!r} in both runs; available: {', '.join(columns)}")
    paired = frame_a[["index", attack]].merge(frame_b[["index", attack]], on="index", suffixes=("_a", "_b"))
    if not len(paired) == len(frame_a) == len(frame_b):
        raise UserError(f"runs {run_a} and {run_b} were evaluated on different test points")
    a, b = paired[f"{attack}_a"].to_numpy(bool), paired[f"{attack}_b"].to_numpy(bool)
    difference, low, high = paired_difference_ci(a, b, level)
    n, only_a, only_b = _discordant(a, b)
    ignored = [note for note in (_duplicate_note(tracker, info) for info in (info_a, info_b)) if note]
    return Comparison(
        run_a=run_a,
        run_b=run_b,
        name_a=info_a.info.run_name or "",
        name_b=info_b.info.run_name or "",
        attack=attack,
        selection=selection,
        protocol_hash=hash_a,
        n=n,
        accuracy_a=float(a.mean()),
        accuracy_b=float(b.mean()),
        difference=difference,
        ci_low=low,
        ci_high=high,
        level=level,
        only_a=only_a,
        only_b=only_b,
        mcnemar_p=mcnemar_exact(only_a, only_b),
        ignored=ignored,
    )


def _duplicate_note(tracker: Tracker, run) -> str:
    """A note when `run` is not the run that counts for its cell key (a duplicate an older version created)."""
    cell = run.data.tags.get(schema.CELL)
    counted = tracker.find_run(run.info.experiment_id, cell) if cell else None
    if counted is None or counted.info.run_id == run.info.run_id:
        return ""
    return (
        f"run {run.info.run_id} is an ignored duplicate of cell {cell}: leaderboards count run "
        f"{counted.info.run_id} (the newest FINISHED run of the cell)"
    )
