"""The leaderboard as a terminal shows it: a compact plain-text table that fits in 100 columns (rank, method,
student, teacher, n seeds, clean and each attack as mean ± std, the paired test against the best), a line
under it saying what the numbers are, whether `AA gap to teacher` could be filled and why not, and which
files hold the full table (every column: the teacher gap, cost, flags, run links). Names too long for the
width are shortened with `…` at their end; numbers never are.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from .shown import cell_text, teacher_gap_note, versus_best
from .table import Table

__all__ = ["WIDTH", "to_terminal"]

WIDTH = 100
GAP = "  "
MIN_NAME = 6  # a name column never shrinks below this (plus its `…`)


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def _teacher_name(teacher: str) -> str:
    """`digits/Linf/rkdbench-cnn-large` -> `rkdbench-cnn-large`: the dataset and threat are the table's own."""
    return teacher.rsplit("/", 1)[-1]


def _fit(widths: dict[str, int], names: Sequence[str], room: int) -> dict[str, int]:
    """Shrink the widest name column one character at a time until the names fit in `room`."""
    widths = dict(widths)
    while sum(widths[n] for n in names) > room and any(widths[n] > MIN_NAME for n in names):
        widest = max(names, key=lambda n: widths[n])
        widths[widest] -= 1
    return widths


def _columns(table: Table) -> dict[str, list[str]]:
    frame = table.frame
    columns = {
        "rank": [str(i + 1) for i in range(len(frame))],
        "method": list(frame["method_variant"]),
        "student": list(frame["student"]),
        "teacher": [_teacher_name(t) for t in frame["teacher"]],
        "n": [str(v) for v in frame["n"]],
    }
    for label in table.attack_columns:
        columns[table.name(label)] = [
            cell_text(m, s).replace(" ± ", "±")  # 6 columns more for the names
            for m, s in zip(frame[f"{label}_mean"], frame[f"{label}_std"])
        ]
    if "p_vs_best" in frame:
        columns["vs best"] = [versus_best(i, p) for i, p in enumerate(frame["p_vs_best"])]
    if "best_val" in frame:  # the tuned view: each row's study (its selected values are under the table)
        columns["trials"] = [str(v) for v in frame["trials"]]
        columns["best val"] = [cell_text(v, float("nan")) for v in frame["best_val"]]
    return columns


def _gap_line(table: Table) -> str | None:
    """The teacher's AutoAttack accuracy and each row's gap to it, when measured."""
    frame = table.frame
    if "teacher_aa" not in frame or frame["teacher_aa"].isna().all():
        return None
    teachers = {_teacher_name(t): v for t, v in zip(frame["teacher"], frame["teacher_aa"]) if not pd.isna(v)}
    gaps = [f"{m} {g:+.1f}" for m, g in zip(frame["method_variant"], frame["aa_gap_to_teacher"]) if not pd.isna(g)]
    return (
        f"AA gap to teacher ({', '.join(f'{t} {v:.1f}' for t, v in teachers.items())}, same evaluation): "
        + ", ".join(gaps)
    )


def to_terminal(table: Table, files: Sequence[Path] = (), n_points: int | None = None, width: int = WIDTH) -> str:
    """The compact table, every line at most `width` characters, then the notes and the files of the full table."""
    columns = _columns(table)
    widths = {h: max([len(h), *map(len, cells)]) for h, cells in columns.items()}
    names = ("method", "student", "teacher")
    fixed = sum(w for h, w in widths.items() if h not in names) + len(GAP) * (len(columns) - 1)
    widths = _fit(widths, names, width - fixed)
    right = {h for h in columns if h not in names}

    def line(cells: dict[str, str]) -> str:
        parts = [
            (cells[h].rjust(widths[h]) if h in right else _shorten(cells[h], widths[h]).ljust(widths[h]))
            for h in columns
        ]
        return GAP.join(parts).rstrip()

    lines = [_shorten(table.title, width), line({h: h for h in columns}), line({h: "-" * widths[h] for h in columns})]
    lines += [line({h: cells[i] for h, cells in columns.items()}) for i in range(len(table.frame))]
    where = f"the first {n_points} test points" if n_points else "the protocol's test points"
    notes = [
        f"Accuracy in % on {where} (mean ± std over n seeds); vs best: exact McNemar test against rank 1, "
        f"≈ = not significantly different."
    ]
    notes += [n for n in (_gap_line(table), teacher_gap_note(table)) if n]
    if "selected" in table.frame:
        notes += [
            f"{method}: {selected}" for method, selected in zip(table.frame["method_variant"], table.frame["selected"])
        ]
    notes += table.notes
    lines += [wrapped for n in notes for wrapped in textwrap.wrap(n, width, break_on_hyphens=False)]
    if files:
        lines.append("Full leaderboard (every column: teacher gap, cost, flags, run links):")
        lines += [f"  {path}" for path in files]
    else:
        lines.append(
            "Full leaderboard (every column): `rkdbench leaderboard --format md`; `--out DIR` writes the files."
        )
    return "\n".join(lines) + "\n"
