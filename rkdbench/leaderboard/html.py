"""A leaderboard as one self-contained HTML page: the cells of `shown` in a table whose header
cells sort it on click (by each cell's number, not its text, so `77.5 ± 1.0` sorts as 77.5), with inline CSS and a
few lines of inline JavaScript: nothing is fetched, so the page works offline and from an MLflow artifact view.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

import pandas as pd

from .shown import Shown, curve_table, note, reference_notes, shown
from .table import Table

__all__ = ["to_html"]

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; white-space: nowrap; }
th { background: #f2f2f2; cursor: pointer; user-select: none; }
th[data-order="asc"]::after { content: " ▲"; }
th[data-order="desc"]::after { content: " ▼"; }
tbody tr:nth-child(even) { background: #fafafa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
p.note { max-width: 70em; }
figure { display: inline-block; margin: 1em 1em 0 0; }
"""

# Click a header: sort by its cells' data-sort (numbers numerically, else text); click again to reverse. Empty
# cells stay last in both directions.
SCRIPT = """
document.querySelectorAll("table.leaderboard th").forEach((th, column) => th.addEventListener("click", () => {
  const body = th.closest("table").tBodies[0], up = th.dataset.order !== "asc";
  th.parentNode.querySelectorAll("th").forEach(other => delete other.dataset.order);
  th.dataset.order = up ? "asc" : "desc";
  const key = row => row.cells[column].dataset.sort;
  const rows = Array.from(body.rows).sort((a, b) => {
    const x = key(a), y = key(b);
    if (x === "" || y === "") return (x === "") - (y === "");
    const order = isNaN(x) || isNaN(y) ? x.localeCompare(y) : Number(x) - Number(y);
    return up ? order : -order;
  });
  rows.forEach(row => body.appendChild(row));
}));
"""


def _sort_key(cell: Shown) -> str:
    value = cell.text if cell.sort is None else cell.sort
    if isinstance(value, str):
        return value
    return "" if pd.isna(value) else f"{float(value):.8g}"  # fixed text: the same numbers give the same page


def _td(cell: Shown) -> str:
    if cell.codes:
        inner = ", ".join(f"<code>{escape(code)}</code>" for code in cell.codes)
    else:
        inner = escape(cell.text)
    if cell.href and inner:
        inner = f'<a href="{escape(cell.href)}">{inner}</a>'
    if cell.strong and inner:
        inner = f"<strong>{inner}</strong>"
    numeric = ' class="num"' if cell.sort is not None and not isinstance(cell.sort, str) else ""
    return f'<td{numeric} data-sort="{escape(_sort_key(cell))}">{inner}</td>'


def _section(table: Table, figures: Sequence[str]) -> str:
    columns = shown(table)
    head = "".join(f"<th>{escape(header)}</th>" for header in columns)
    rows = "\n".join(
        "<tr>" + "".join(_td(cells[i]) for cells in columns.values()) + "</tr>" for i in range(len(table.frame))
    )
    parts = [
        f"<h2>{escape(table.title)}</h2>",
        f'<p class="note">{escape(note(table))}</p>',
        f'<table class="leaderboard">\n<thead><tr>{head}</tr></thead>\n<tbody>\n{rows}\n</tbody>\n</table>',
    ]
    if table.references:
        parts.append(
            "<p>Reported numbers (provenance: V verified in the source, S quoted by a third party, R recalled, "
            "not verified):</p>\n<ul>\n"
            + "".join(f"<li>{escape(line)}</li>\n" for line in reference_notes(table))
            + "</ul>"
        )
    parts += [f'<p class="note">{escape(line)}</p>' for line in table.notes]
    header, rows = curve_table(table)
    if header:
        parts.append(
            '<table class="curves">\n<thead><tr>'
            + "".join(f"<th>{escape(h)}</th>" for h in header)
            + "</tr></thead>\n<tbody>\n"
            + "\n".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
            + "\n</tbody>\n</table>"
        )
    parts += [f'<figure><img src="{escape(name)}" alt="{escape(name)}"></figure>' for name in figures]
    return "<section>\n" + "\n".join(parts) + "\n</section>"


def to_html(tables: Sequence[Table], figures: Sequence[str] = ()) -> str:
    """One page with a section per table; `figures` (PNG file names beside the page) are shown under the table
    when the page holds one table."""
    title = tables[0].title if len(tables) == 1 else "rkdbench leaderboards"
    sections = "\n".join(_section(table, figures if len(tables) == 1 else ()) for table in tables)
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{escape(title)}</title>\n'
        f"<style>{STYLE}</style>\n</head>\n<body>\n<h1>rkdbench leaderboard</h1>\n{sections}\n"
        f"<script>{SCRIPT}</script>\n</body>\n</html>\n"
    )
