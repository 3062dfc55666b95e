"""The last stage of a leaderboard for the console: tables rendered to one text in a format `--format` names.
Files and the MLflow leaderboard run are `publish`'s; the compact terminal table is `terminal`'s.
"""

from __future__ import annotations

from collections.abc import Sequence

from .formats import dump_json, json_document, to_csv, to_markdown
from .html import to_html
from .table import Table

__all__ = ["render", "render_many", "FORMATS"]

FORMATS = ("md", "csv", "json", "html")


def render(table: Table, fmt: str = "md") -> str:
    """One table as Markdown (mean ± std in %), CSV or JSON (numeric columns), or a self-contained HTML page."""
    return render_many([table], fmt)


def render_many(tables: Sequence[Table], fmt: str = "md") -> str:
    """Several tables as one text: Markdown sections, CSV blocks, one HTML page, a JSON document (a list of them
    for more than one table)."""
    if fmt == "html":
        return to_html(tables)
    if fmt == "json":
        documents = [json_document(table) for table in tables]
        return dump_json(documents[0] if len(documents) == 1 else documents)
    write = {"md": to_markdown, "csv": to_csv}[fmt]
    return "\n".join(write(table) for table in tables)
