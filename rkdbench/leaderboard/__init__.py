"""Leaderboards from MLflow through pandas, in three stages whose modules import only downwards:

    collect (runs from the store)  ->  tables (one `Table` per protocol hash)  ->  renderers
    renderers: shown (displayed cells) -> formats (md, csv, json), html, terminal; plots (matplotlib figures)
    publish writes every form into a folder and logs it as an MLflow `leaderboard` run; render prints one form

`table` holds the `Table` type and the names every stage shares; `columns` the per-row cells beyond the
accuracies (precision, worst class, transferability). No module here imports the runner or torch, so rendering
a leaderboard never loads a training stack. This package exports what callers use; the stages are importable
on their own (`rkdbench.leaderboard.publish`, `.terminal`, `.plots`).
"""

from __future__ import annotations

from .collect import collect_runs, config_loader, history_loader, per_example_loader
from .render import FORMATS, render, render_many
from .table import COSTS, TIE_LEVEL, Table
from .tables import build_tables

__all__ = [
    "Table",
    "collect_runs",
    "build_tables",
    "per_example_loader",
    "config_loader",
    "history_loader",
    "render",
    "render_many",
    "FORMATS",
    "TIE_LEVEL",
    "COSTS",
]
