"""The `Table` that every stage of the leaderboard passes on (`tables` builds it, the renderers show it) and the
vocabulary they share: the diagnostic and cost columns and the p-value under which a row is no longer tied with
the best. How an attack label is shown is each table's own (`names`, from the attacks' declarations). It imports
nothing from the package, so any module may import it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from .references import Reference

__all__ = ["Table", "TIE_LEVEL", "DIAGNOSTICS", "COSTS", "OFFICIAL", "TUNED"]

OFFICIAL, TUNED = "official", "tuned"  # a table's view: the official recipes, or each method's tuned configuration
TIE_LEVEL = 0.05  # a row whose paired p-value against the best is at least this is marked as a statistical tie

# Diagnostics shown after the accuracies when the runs have them (student specialization, METHODS.md §11).
DIAGNOSTICS = {"spec.clean.mean_best": "spec clean", "spec.adv.mean_best": "spec adv"}
# Forward/backward passes per training example per epoch, as the engine counts them (column -> metric)
COSTS = {
    "student_forward": "cost.student_forward",
    "student_backward": "cost.student_backward",
    "teacher_forward": "cost.teacher_forward",
    "teacher_backward": "cost.teacher_backward",
}


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
    ranked_by: str  # the label the rows are ranked by (the protocol's `eval.rank_by`, else its final attack)
    experiment_id: str = ""
    aa_label: str | None = None  # the final attack's label (AutoAttack): teacher gap, reported numbers, plots
    references: list[Reference] = field(default_factory=list)  # the published numbers joined into `frame`
    ui_url: str = ""  # base URL of the MLflow UI for run links; "" leaves the UI's own path
    ignored_runs: int = 0  # duplicate runs of cells already counted (`counting`), left out of the rows
    names: dict[str, str] = field(default_factory=dict)  # label -> shown name (`attack_traits.display_names`)
    view: str = OFFICIAL  # TUNED: each method's configuration selected by an equal-budget study (`tuned`)
    curves: dict[str, list[float]] = field(default_factory=dict)  # row label -> expected best val % after n trials
    notes: list[str] = field(default_factory=list)  # lines shown under the table (the tuned view's trade-off note)

    @property
    def title(self) -> str:
        tuned = ", tuned with an equal budget" if self.view == TUNED else ""
        return (
            f"{self.experiment} (protocol {self.protocol}, hash {self.protocol_hash[:12]}, selection "
            f"{self.selection}{tuned})"
        )

    def name(self, label: str) -> str:
        """How a column of this label is headed: its attack's declared name (`PGD-20`), else the label."""
        return self.names.get(label, label)

    def run_link(self, run_id: str) -> str:
        path = f"#/experiments/{self.experiment_id}/runs/{run_id}"
        return f"{self.ui_url.rstrip('/')}/{path}" if self.ui_url else path
