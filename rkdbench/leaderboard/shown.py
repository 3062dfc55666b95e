"""What a leaderboard `Table` displays, shared by every text form: `shown` gives the formatted cells that Markdown
and HTML both show (mean ± std, the best value of each accuracy column marked, ties with the best marked ≈, the run
link), `note` the line saying what the numbers and marks mean, `teacher_gap_note` / `reference_notes` the lines
under the table and `curve_table` the tuned view's expected best validation score after n trials; `cell_text`
and `versus_best` are the terminal's cells too.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..cell_values import NO_TEACHER
from .columns import PRECISION_MARK, mixes_precisions
from .table import COSTS, DIAGNOSTICS, TIE_LEVEL, Table

__all__ = [
    "Shown",
    "shown",
    "note",
    "teacher_gap_note",
    "reference_notes",
    "curve_table",
    "cell_text",
    "versus_best",
]

CURVE_COLUMNS = 16  # a budget curve longer than this shows n = 1, 2, 4, 8, ... and N


@dataclass(frozen=True)
class Shown:
    """One displayed cell: its text, the value HTML sorts it by, bold (best in its column), a link, code spans."""

    text: str = ""
    sort: float | str | None = None
    strong: bool = False
    href: str = ""
    codes: tuple[str, ...] = ()


def cell_text(mean: float, std: float, digits: int = 1) -> str:
    if pd.isna(mean):
        return ""
    return f"{mean:.{digits}f}" if pd.isna(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _signed(value: float, digits: int = 1) -> Shown:
    return Shown("" if pd.isna(value) else f"{value:+.{digits}f}", value)


def _number(value: float, digits: int) -> Shown:
    return Shown("" if pd.isna(value) else f"{value:.{digits}f}", value)


def versus_best(rank: int, p: float) -> str:
    if rank == 0:
        return "best"
    if pd.isna(p):
        return ""
    return f"≈ (p={p:.2f})" if p >= TIE_LEVEL else f"p={p:.3f}"


def _accuracy_column(frame: pd.DataFrame, label: str) -> list[Shown]:
    """mean ± std, in bold where the mean, as displayed, is the column's best (ties all bold)."""
    means, stds = frame[f"{label}_mean"], frame[f"{label}_std"]
    best = round(means.max(), 1) if means.notna().any() else None
    return [
        Shown(cell_text(m, s), m, strong=best is not None and not pd.isna(m) and round(m, 1) == best)
        for m, s in zip(means, stds)
    ]


def _passes(row: pd.Series) -> Shown:
    if pd.isna(row["passes"]):
        return Shown("", row["passes"])
    s_f, s_b, t_f, t_b = (f"{row[c]:.3g}" for c in COSTS)
    return Shown(f"{s_f}/{s_b} · {t_f}/{t_b}", row["passes"])


def shown(table: Table) -> dict[str, list[Shown]]:
    """Column header -> cells, in display order; optional columns appear only when some row has a value."""
    frame = table.frame
    columns: dict[str, list[Shown]] = {
        "rank": [Shown(str(i + 1), i + 1) for i in range(len(frame))],
        "method": [Shown(v) for v in frame["method_variant"]],
        "student": [Shown(v) for v in frame["student"]],
        "teacher": [Shown(v) for v in frame["teacher"]],
        "n": [Shown(str(v), int(v)) for v in frame["n"]],
        "selection": [Shown(v) for v in frame["selection"]],
    }
    if "budget" in frame:  # the tuned view (`tuned`): each row's study
        columns["budget"] = [Shown(str(v), int(v)) for v in frame["budget"]]
        columns["trials"] = [Shown(str(v), int(v)) for v in frame["trials"]]
        columns["sampler"] = [Shown(v) for v in frame["sampler"]]
        columns["best val"] = [_number(v, 1) for v in frame["best_val"]]
    if "precision" in frame:
        mixed = mixes_precisions(frame)
        columns["precision"] = [
            Shown(f"{v} {PRECISION_MARK}" if mixed and v != "fp32" else str(v), str(v)) for v in frame["precision"]
        ]
    for label in table.attack_columns:
        columns[table.name(label)] = _accuracy_column(frame, label)
        if label == table.aa_label and _has(frame, f"worst_class_{label}"):
            columns[f"{table.name(label)} worst-class"] = _accuracy_column(frame, f"worst_class_{label}")
    if "reported_aa" in frame:
        columns["reported AA"] = [
            Shown("" if pd.isna(r) else f"{r:.2f} [{tag}]", r)
            for r, tag in zip(frame["reported_aa"], frame["reported_tag"])
        ]
        columns["Δ AA"] = [_signed(d) for d in frame["delta_aa"]]
    if "aa_gap_to_teacher" in frame and (frame["teacher"] != NO_TEACHER).any():
        columns["AA gap to teacher"] = [_signed(g) for g in frame["aa_gap_to_teacher"]]
    for metric in table.diagnostic_columns:
        columns[DIAGNOSTICS[metric]] = [
            Shown(cell_text(m, s, 2), m) for m, s in zip(frame[f"{metric}_mean"], frame[f"{metric}_std"])
        ]
    for label in table.attack_columns:
        if _has(frame, f"tas_{label}"):
            columns[f"TAS {table.name(label)}"] = [
                Shown(cell_text(m, s), m) for m, s in zip(frame[f"tas_{label}_mean"], frame[f"tas_{label}_std"])
            ]
    if frame["train_seconds"].notna().any():
        columns["train s"] = [_number(v, 0) for v in frame["train_seconds"]]
    if frame["gpu_hours"].notna().any():
        columns["GPU-h"] = [_number(v, 2) for v in frame["gpu_hours"]]
    if frame["passes"].notna().any():
        columns["passes S f/b · T f/b"] = [_passes(row) for _, row in frame.iterrows()]
    if "budget" in frame and (frame["pruner"] != "none").any():  # pruned trials are unequal: their epochs and hours
        columns["tuning epochs"] = [_number(v, 0) for v in frame["tuning_epochs"]]
        if frame["tuning_gpu_hours"].notna().any():
            columns["tuning GPU-h"] = [_number(v, 2) for v in frame["tuning_gpu_hours"]]
        else:  # trained on the CPU: its seconds
            columns["tuning s"] = [_number(v, 0) for v in frame["tuning_seconds"]]
    if "selected" in frame:
        columns["selected"] = [Shown(v) for v in frame["selected"]]
    if "p_vs_best" in frame:
        columns["vs best"] = [Shown(versus_best(i, p), p) for i, p in enumerate(frame["p_vs_best"])]
    columns["flags"] = [Shown(codes=tuple(c for c in codes.split(",") if c), sort=codes) for codes in frame["flags"]]
    columns["run"] = [
        Shown(
            next(iter(runs.values()))[:8] + (f" +{len(runs) - 1}" if len(runs) > 1 else ""),
            href=table.run_link(next(iter(runs.values()))),
        )
        for runs in frame["runs"]
    ]
    return columns


def _has(frame: pd.DataFrame, name: str) -> bool:
    return f"{name}_mean" in frame and frame[f"{name}_mean"].notna().any()


def note(table: Table) -> str:
    """One line saying what the numbers are and what each mark means."""
    text = (
        "Accuracy in % on the protocol's test points (mean ± std over n seeds; the best of each accuracy column "
        "in bold)"
    )
    if "precision" in table.frame:
        text += "; precision = the training step's arithmetic (fp32 by default, bf16 opt-in)"
        if mixes_precisions(table.frame):
            text += (
                f'; {PRECISION_MARK} THIS TABLE MIXES bf16- AND fp32-TRAINED ROWS (a legacy `precision = "auto"` '
                f"protocol run on different devices): rows marked {PRECISION_MARK} did not train in fp32"
            )
    if table.aa_label and _has(table.frame, f"worst_class_{table.aa_label}"):
        text += "; worst-class = the lowest per-class AutoAttack accuracy (Fair-ARD's robust-fairness metric)"
    if any(_has(table.frame, f"tas_{label}") for label in table.attack_columns):
        text += (
            "; TAS = of the test points whose adversarial example fools the student, the % that also fool the teacher"
        )
    if table.diagnostic_columns:
        text += "; spec = mean best teacher-student unit correlation of the last checkpoint (clean / PGD inputs)"
    if "reported_aa" in table.frame:
        text += "; reported AA = the published number [provenance tag], Δ AA = reproduced − reported"
    if "aa_gap_to_teacher" in table.frame and table.frame["aa_gap_to_teacher"].notna().any():
        text += "; AA gap to teacher = AutoAttack − the teacher's own, measured under the same evaluation"
    text += "; flags = evaluation checks any seed failed (docs/tracking.md)"
    if "budget" in table.frame:
        text += (
            "; budget = finished trials per method, trials = finished in its study, best val = the selected trial's "
            "validation objective (%), selected = the trial chosen and the values it changed"
        )
    if "p_vs_best" in table.frame:
        text += (
            f"; vs best = exact McNemar p-value against rank 1 on paired per-example "
            f"{table.name(table.ranked_by)} robustness, ≈ when p >= {TIE_LEVEL} "
            f"(not significantly different)"
        )
    return text + "; every column: docs/leaderboards.md."


def teacher_gap_note(table: Table) -> str | None:
    """Why `AA gap to teacher` is empty for rows that have a teacher (None when it is filled or no row has one)."""
    frame = table.frame
    if (frame["teacher"] == NO_TEACHER).all():
        return None
    if table.aa_label is None or "teacher_aa" not in frame:
        return "AA gap to teacher: empty, the protocol has no AutoAttack entry to compare on."
    missing = sorted({t for t, v in zip(frame["teacher"], frame["teacher_aa"]) if t != NO_TEACHER and pd.isna(v)})
    if not missing:
        return None
    return (
        f"AA gap to teacher: empty for {', '.join(missing)}: no measurement of the teacher under this evaluation "
        f"(protocol hash {table.protocol_hash[:12]}, or the same test points, threat and attacks) in the store "
        f"or the model dir's teacher card; `rkdbench evaluate <teacher> --protocol {table.protocol}` with the "
        f"suite's --n-examples measures it (and --model-dir if the teacher lives elsewhere)."
    )


def reference_notes(table: Table) -> list[str]:
    """One line per published number joined into the table: whose row, provenance tag, citation, source."""
    return [f"{r.method} / {r.student} / {r.teacher}: AA {r.reported:.2f} {r.provenance}" for r in table.references]


def curve_table(table: Table) -> tuple[list[str], list[list[str]]]:
    """The tuned view's budget curves as a small table: a header (`n=1`, `n=2`, ...) and per row its label and
    expected best validation score (%) after n trials (Tang et al.); empty without curves."""
    if not any(table.curves.values()):
        return [], []
    longest = max(len(curve) for curve in table.curves.values())
    steps = (
        list(range(1, longest + 1))
        if longest <= CURVE_COLUMNS
        else sorted({*(2**k for k in range(longest.bit_length()) if 2**k <= longest), longest})
    )
    header = ["expected best val % after n trials", *(f"n={n}" for n in steps)]
    rows = [
        [label, *(f"{curve[n - 1]:.1f}" if n <= len(curve) else "" for n in steps)]
        for label, curve in table.curves.items()
    ]
    return header, rows
