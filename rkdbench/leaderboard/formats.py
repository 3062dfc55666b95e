"""Text forms of a leaderboard `Table`: Markdown (the cells of `shown`), and CSV and JSON (numeric: floats at 4
decimals, one record per row, the same columns in both). Nothing that changes between builds (a time, an absolute
path) enters the text, so the same runs give the same bytes.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from typing import Any

import pandas as pd

from .shown import Shown, curve_table, note, reference_notes, shown, teacher_gap_note
from .table import Table

__all__ = ["export_frame", "json_document", "dump_json", "to_markdown", "to_csv", "to_json"]

DIGITS = 4  # CSV and JSON float precision


def _markdown_cell(cell: Shown) -> str:
    text = ", ".join(f"`{code}`" for code in cell.codes) if cell.codes else cell.text  # `<` would open an HTML tag
    if cell.href and text:
        text = f"[{text}]({cell.href})"
    return f"**{text}**" if cell.strong and text else text


def to_markdown(table: Table) -> str:
    shown_table = pd.DataFrame({header: [_markdown_cell(c) for c in cells] for header, cells in shown(table).items()})
    text = (
        f"### {table.title}\n\n{note(table)}\n\n" + shown_table.to_markdown(index=False, disable_numparse=True) + "\n"
    )
    gap = teacher_gap_note(table)
    if gap:
        text += f"\n{gap}\n"
    for line in table.notes:
        text += f"\n{line}\n"
    header, rows = curve_table(table)
    if header:
        curves = pd.DataFrame(rows, columns=header)
        text += "\n" + curves.to_markdown(index=False, disable_numparse=True) + "\n"
    if table.references:
        text += (
            "\nReported numbers (provenance: V verified in the source, S quoted by a third party, R recalled, not "
            "verified):\n\n" + "".join(f"- {line}\n" for line in reference_notes(table))
        )
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
        "title": table.title,
        "protocol": table.protocol,
        "protocol_hash": table.protocol_hash,
        "experiment": table.experiment,
        "experiment_id": table.experiment_id,
        "selection": table.selection,
        "ranked_by": table.ranked_by,
        "attacks": table.attack_columns,
        "diagnostics": table.diagnostic_columns,
        "references": [asdict(r) for r in table.references],
        **({"view": table.view, "notes": table.notes, "budget_curves": table.curves} if table.curves else {}),
        "rows": [{k: _json_value(v) for k, v in row.items()} for row in export_frame(table).to_dict("records")],
        **({"ignored_runs": table.ignored_runs} if table.ignored_runs else {}),  # duplicates: `counting`
    }


def dump_json(document: Any) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"


def to_json(table: Table) -> str:
    return dump_json(json_document(table))
