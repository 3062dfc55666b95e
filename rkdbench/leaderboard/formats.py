"""Text forms of a leaderboard `Table`: `shown` (the formatted cells that Markdown and HTML both display: mean ± std,
the best value of each accuracy column marked, ties with the best marked ≈, the run link), Markdown, and CSV and
JSON (numeric: floats at 4 decimals, one record per row, the same columns in both). Nothing that changes between
builds (a time, an absolute path) enters the text, so the same runs give the same bytes.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from .leaderboard import COSTS, DIAGNOSTICS, PRETTY, TIE_LEVEL, Table
from .leaderboard_columns import PRECISION_MARK, mixes_precisions

__all__ = ["Shown", "shown", "note", "teacher_gap_note", "reference_notes", "export_frame", "json_document", "dump_json", "to_markdown",
           "to_csv", "to_json"]

DIGITS = 4  # CSV and JSON float precision


@dataclass(frozen=True)
class Shown:
    """One displayed cell: its text, the value HTML sorts it by, bold (best in its column), a link, code spans."""

    text: str = ""
    sort: float | str | None = None
    strong: bool = False
    href: str = ""
    codes: tuple[str, ...] = ()


def _cell(mean: float, std: float, digits: int = 1) -> str:
    if pd.isna(mean):
        return ""
    return f"{mean:.{digits}f}" if pd.isna(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _signed(value: float, digits: int = 1) -> Shown:
    return Shown("" if pd.isna(value) else f"{value:+.{digits}f}", value)


def _number(value: float, digits: int) -> Shown:
    return Shown("" if pd.isna(value) else f"{value:.{digits}f}", value)


def _versus_best(rank: int, p: float) -> str:
    if rank == 0:
        return "best"
    if pd.isna(p):
        return ""
    return f"≈ (p={p:.2f})" if p >= TIE_LEVEL else f"p={p:.3f}"


def _accuracy_column(frame: pd.DataFrame, label: str) -> list[Shown]:
    """mean ± std, in bold where the mean, as displayed, is the column's best (ties all bold)."""
    means, stds = frame[f"{label}_mean"], frame[f"{label}_std"]
    best = round(means.max(), 1) if means.notna().any() else None
    return [Shown(_cell(m, s), m, strong=best is not None and not pd.isna(m) and round(m, 1) == best)
            for m, s in zip(means, stds)]


def _passes(row: pd.Series) -> Shown:
    if pd.isna(row["passes"]):
        return Shown("", row["passes"])
    s_f, s_b, t_f, t_b = (f"{row[c]:.3g}" for c in COSTS)
    return Shown(f"{s_f}/{s_b} · {t_f}/{t_b}", row["passes"])


def shown(table: Table) -> dict[str, list[Shown]]:
    """Column header -> cells, in display order; optional columns appear only when some row has a value."""
    from .runner import NO_TEACHER

    frame = table.frame
    columns: dict[str, list[Shown]] = {
        "rank": [Shown(str(i + 1), i + 1) for i in range(len(frame))],
        "method": [Shown(v) for v in frame["method_variant"]],
        "student": [Shown(v) for v in frame["student"]],
        "teacher": [Shown(v) for v in frame["teacher"]],
        "n": [Shown(str(v), int(v)) for v in frame["n"]],
        "selection": [Shown(v) for v in frame["selection"]],
    }
    if "precision" in frame:
        mixed = mixes_precisions(frame)
        columns["precision"] = [Shown(f"{v} {PRECISION_MARK}" if mixed and v != "fp32" else str(v), str(v))
                                for v in frame["precision"]]
    for label in table.attack_columns:
        columns[PRETTY.get(label, label)] = _accuracy_column(frame, label)
        if label == table.aa_label and _has(frame, f"worst_class_{label}"):
            columns[f"{PRETTY.get(label, label)} worst-class"] = _accuracy_column(frame, f"worst_class_{label}")
    if "reported_aa" in frame:
        columns["reported AA"] = [Shown("" if pd.isna(r) else f"{r:.2f} [{tag}]", r)
                                  for r, tag in zip(frame["reported_aa"], frame["reported_tag"])]
        columns["Δ AA"] = [_signed(d) for d in frame["delta_aa"]]
    if "aa_gap_to_teacher" in frame and (frame["teacher"] != NO_TEACHER).any():
        columns["AA gap to teacher"] = [_signed(g) for g in frame["aa_gap_to_teacher"]]
    for metric in table.diagnostic_columns:
        columns[DIAGNOSTICS[metric]] = [Shown(_cell(m, s, 2), m) for m, s in zip(frame[f"{metric}_mean"], frame[f"{metric}_std"])]
    for label in table.attack_columns:
        if _has(frame, f"tas_{label}"):
            columns[f"TAS {PRETTY.get(label, label)}"] = [Shown(_cell(m, s), m) for m, s in
                                                          zip(frame[f"tas_{label}_mean"], frame[f"tas_{label}_std"])]
    if frame["train_seconds"].notna().any():
        columns["train s"] = [_number(v, 0) for v in frame["train_seconds"]]
    if frame["gpu_hours"].notna().any():
        columns["GPU-h"] = [_number(v, 2) for v in frame["gpu_hours"]]
    if frame["passes"].notna().any():
        columns["passes S f/b · T f/b"] = [_passes(row) for _, row in frame.iterrows()]
    if "p_vs_best" in frame:
        columns["vs best"] = [Shown(_versus_best(i, p), p) for i, p in enumerate(frame["p_vs_best"])]
    columns["flags"] = [Shown(codes=tuple(c for c in codes.split(",") if c), sort=codes) for codes in frame["flags"]]
    columns["run"] = [Shown(next(iter(runs.values()))[:8] + (f" +{len(runs) - 1}" if len(runs) > 1 else ""),
                            href=table.run_link(next(iter(runs.values())))) for runs in frame["runs"]]
    return columns


def _has(frame: pd.DataFrame, name: str) -> bool:
    return f"{name}_mean" in frame and frame[f"{name}_mean"].notna().any()


def note(table: Table) -> str:
    """One line saying what the numbers are and what each mark means."""
    text = ("Accuracy in % on the protocol's test points (mean ± std over n seeds; the best of each accuracy column "
            "in bold)")
    if "precision" in table.frame:
        text += "; precision = the training step's arithmetic (fp32 by default, bf16 opt-in)"
        if mixes_precisions(table.frame):
            text += (f"; {PRECISION_MARK} THIS TABLE MIXES bf16- AND fp32-TRAINED ROWS (a legacy `precision = \"auto\"` "
                     f"protocol run on different devices): rows marked {PRECISION_MARK} did not train in fp32")
    if table.aa_label and _has(table.frame, f"worst_class_{table.aa_label}"):
        text += "; worst-class = the lowest per-class AutoAttack accuracy (Fair-ARD's robust-fairness metric)"
    if any(_has(table.frame, f"tas_{label}") for label in table.attack_columns):
        text += ("; TAS = of the test points whose adversarial example fools the student, the % that also fool the "
                 "teacher")
    if table.diagnostic_columns:
        text += "; spec = mean best teacher-student unit correlation of the last checkpoint (clean / PGD inputs)"
    if "reported_aa" in table.frame:
        text += "; reported AA = the published number [provenance tag], Δ AA = reproduced − reported"
    if "aa_gap_to_teacher" in table.frame and table.frame["aa_gap_to_teacher"].notna().any():
        text += "; AA gap to teacher = AutoAttack − the teacher's own, measured under the same evaluation"
    text += "; flags = evaluation checks any seed failed (docs/tracking.md)"
    if "p_vs_best" in table.frame:
        text += (f"; vs best = exact McNemar p-value against rank 1 on paired per-example "
                 f"{PRETTY.get(table.ranked_by, table.ranked_by)} robustness, ≈ when p >= {TIE_LEVEL} "
                 f"(not significantly different)")
    return text + "; every column: docs/leaderboards.md."


def teacher_gap_note(table: Table) -> str | None:
    """Why `AA gap to teacher` is empty for rows that have a teacher (None when it is filled or no row has one)."""
    from .runner import NO_TEACHER

    frame = table.frame
    if (frame["teacher"] == NO_TEACHER).all():
        return None
    if table.aa_label is None or "teacher_aa" not in frame:
        return "AA gap to teacher: empty, the protocol has no AutoAttack entry to compare on."
    missing = sorted({t for t, v in zip(frame["teacher"], frame["teacher_aa"]) if t != NO_TEACHER and pd.isna(v)})
    if not missing:
        return None
    return (f"AA gap to teacher: empty for {', '.join(missing)}: no measurement of the teacher under this evaluation "
            f"(protocol hash {table.protocol_hash[:12]}, or the same test points, threat and attacks) in the store "
            f"or the model dir's teacher card; `rkdbench evaluate <teacher> --protocol {table.protocol}` with the "
            f"suite's --n-examples measures it (and --model-dir if the teacher lives elsewhere).")


def reference_notes(table: Table) -> list[str]:
    """One line per published number joined into the table: whose row, provenance tag, citation, source."""
    return [f"{r.method} / {r.student} / {r.teacher}: AA {r.aa:.2f} {r.provenance}" for r in table.references]


def _markdown_cell(cell: Shown) -> str:
    text = ", ".join(f"`{code}`" for code in cell.codes) if cell.codes else cell.text  # `<` would open an HTML tag
    if cell.href and text:
        text = f"[{text}]({cell.href})"
    return f"**{text}**" if cell.strong and text else text


def to_markdown(table: Table) -> str:
    shown_table = pd.DataFrame({header: [_markdown_cell(c) for c in cells] for header, cells in shown(table).items()})
    text = (f"### {table.title}\n\n{note(table)}\n\n"
            + shown_table.to_markdown(index=False, disable_numparse=True) + "\n")
    gap = teacher_gap_note(table)
    if gap:
        text += f"\n{gap}\n"
    if table.references:
        text += "\nReported numbers (provenance: V verified in the source, S quoted by a third party, R recalled, not " \
                "verified):\n\n" + "".join(f"- {line}\n" for line in reference_notes(table))
    return text


def export_frame(table: Table) -> pd.DataFrame:
    """The numeric table as CSV and JSON give it: the frame's columns, then the first seed's run link and the runs
    (seed -> run id)."""
    frame = table.frame.drop(columns="runs")
    frame["run_link"] = [table.run_link(next(iter(runs.values()))) for runs in table.frame["runs"]]
    frame["runs"] = table.frame["runs"]
    return frame


def to_csv(table: Table) -> str:
    frame = export_frame(table)
    frame["runs"] = [" ".join(f"{seed}:{run}" for seed, run in runs.items()) for runs in frame["runs"]]
    return frame.to_csv(index=False, float_format=f"%.{DIGITS}f", lineterminator="\n")


def _json_value(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)) or hasattr(value, "item"):  # numpy scalars too
        number = value.item() if hasattr(value, "item") else value
        if isinstance(number, float):
            return None if math.isnan(number) else round(number, DIGITS)
        return number
    return value


def json_document(table: Table) -> dict[str, Any]:
    """The table and what identifies it; `rows` hold the CSV's columns (runs as seed -> run id)."""
    return {
        "title": table.title, "protocol": table.protocol, "protocol_hash": table.protocol_hash,
        "experiment": table.experiment, "experiment_id": table.experiment_id, "selection": table.selection,
        "ranked_by": table.ranked_by, "attacks": table.attack_columns, "diagnostics": table.diagnostic_columns,
        "references": [asdict(r) for r in table.references],
        "rows": [{k: _json_value(v) for k, v in row.items()} for row in export_frame(table).to_dict("records")],
        **({"ignored_runs": table.ignored_runs} if table.ignored_runs else {}),  # duplicates: `counting`
    }


def dump_json(document: Any) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"


def to_json(table: Table) -> str:
    return dump_json(json_document(table))
