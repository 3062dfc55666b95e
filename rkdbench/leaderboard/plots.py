"""Leaderboard plots, drawn on matplotlib `Figure` objects with the Agg renderer (no pyplot: no global state and
no display): clean vs AutoAttack accuracy with the Pareto frontier, AutoAttack vs training cost (seconds, and
forward/backward passes per example), each row's per-epoch validation PGD accuracy, and in the tuned view each
row's expected best validation score after n trials (`Table.curves`). Every figure is 640x480
pixels, and `SAVE` writes no timestamp or version string into the PNG.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter, ScalarFormatter

from ..cell_values import NO_TEACHER
from ..tracking import schema
from .table import Table

__all__ = [
    "SIZE",
    "DPI",
    "SAVE",
    "pareto_front",
    "pareto_figure",
    "cost_figure",
    "val_curves_figure",
    "budget_curves_figure",
    "figures",
]

SIZE = (6.4, 4.8)
DPI = 100
SAVE = {"dpi": DPI, "format": "png", "metadata": {"Software": None}}  # fixed size; no "Software: matplotlib x.y"
VAL_METRIC = schema.VAL_PGD_ACC


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both coordinates (higher is better), by x ascending;
    points with a NaN coordinate are never on it."""
    valid = [i for i, (x, y) in enumerate(points) if not (math.isnan(x) or math.isnan(y))]
    front = [
        i
        for i in valid
        if not any(
            points[j][0] >= points[i][0] and points[j][1] >= points[i][1] and points[j] != points[i] for j in valid
        )
    ]
    return sorted(front, key=lambda i: (points[i][0], -points[i][1]))


def _labels(table: Table) -> list[str]:
    """Row names: the method, with the student and teacher when the table has more than one of them (teacher-free
    rows do not count: `none` next to a teacher is no choice of teacher)."""
    frame = table.frame
    parts = [frame["method_variant"]]
    if frame["student"].nunique() > 1:
        parts.append(frame["student"])
    if frame.loc[frame["teacher"] != NO_TEACHER, "teacher"].nunique() > 1:
        parts.append(frame["teacher"])
    return [" / ".join(values) for values in zip(*parts)]


def _color(i: int):
    return colormaps["tab20"](i % 20)


def _empty(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=9, color="0.4")


def _scatter(ax: Axes, table: Table, x: pd.Series, x_std: pd.Series | None, y_label: str) -> None:
    """Each row a labelled point (error bars: std over seeds) against the ranked accuracy."""
    frame, labels = table.frame, _labels(table)
    for i, label in enumerate(labels):
        if pd.isna(x.iloc[i]) or pd.isna(frame[f"{y_label}_mean"].iloc[i]):
            continue
        ax.errorbar(
            x.iloc[i],
            frame[f"{y_label}_mean"].iloc[i],
            xerr=None if x_std is None else (x_std.fillna(0).iloc[i] or None),
            yerr=frame[f"{y_label}_std"].fillna(0).iloc[i] or None,
            fmt="o",
            color=_color(i),
            ms=5,
            capsize=2,
        )
        ax.annotate(
            label, (x.iloc[i], frame[f"{y_label}_mean"].iloc[i]), textcoords="offset points", xytext=(4, 3), fontsize=6
        ).set_in_layout(False)  # long labels must not shrink the axes
    ax.set_ylabel(f"{table.name(y_label)} accuracy (%)")
    ax.margins(x=0.12)  # room for the labels of the rightmost points
    ax.grid(alpha=0.3)


def _figure(title: str, columns: int = 1) -> tuple[Figure, list[Axes]]:
    figure = Figure(figsize=SIZE, dpi=DPI, layout="constrained")
    axes = [figure.add_subplot(1, columns, i + 1) for i in range(columns)]
    figure.suptitle(title, fontsize=9)
    return figure, axes


def pareto_figure(table: Table) -> Figure:
    y_label = table.aa_label or table.ranked_by
    figure, [ax] = _figure(f"{table.experiment}: clean vs {table.name(y_label)} ({table.selection})")
    if "clean" not in table.attack_columns:
        _empty(ax, "no clean accuracy logged")
        return figure
    frame = table.frame
    _scatter(ax, table, frame["clean_mean"], frame["clean_std"], y_label)
    front = pareto_front(list(zip(frame["clean_mean"], frame[f"{y_label}_mean"])))
    ax.plot(
        frame["clean_mean"].iloc[front],
        frame[f"{y_label}_mean"].iloc[front],
        "--",
        color="0.3",
        lw=1,
        label="Pareto frontier",
    )
    ax.set_xlabel("clean accuracy (%)")
    ax.legend(fontsize=7, loc="lower left")
    return figure


def cost_figure(table: Table) -> Figure:
    y_label = table.aa_label or table.ranked_by
    figure, axes = _figure(f"{table.experiment}: {table.name(y_label)} vs training cost ({table.selection})", 2)
    frame = table.frame
    for ax, column, name in zip(
        axes,
        ("train_seconds", "passes"),
        ("training wall time (s)", "passes per example per epoch\n(student + teacher, fwd + bwd)"),
    ):
        if frame[column].notna().any():
            _scatter(ax, table, frame[column], None, y_label)
            if frame[column].min() > 0 and frame[column].max() > 10 * frame[column].min():
                ax.set_xscale("log")  # costs span orders of magnitude (AdaAD's teacher backward passes)
                ax.xaxis.set_major_formatter(ScalarFormatter())
                ax.xaxis.set_minor_formatter(NullFormatter())
        else:
            _empty(ax, f"no {name.splitlines()[0]} logged")
        ax.set_xlabel(name, fontsize=8)
    return figure


def val_curves_figure(table: Table, history: Callable[[str], list[tuple[int, float]]]) -> Figure:
    """Per-epoch validation PGD accuracy of each row (mean over its seeds, per epoch)."""
    figure, [ax] = _figure(f"{table.experiment}: validation PGD accuracy per epoch")
    drawn = 0
    for i, (label, runs) in enumerate(zip(_labels(table), table.frame["runs"])):
        series = [pd.Series(dict(history(run_id)), dtype=float) for run_id in runs.values()]
        series = [s for s in series if not s.empty]
        if not series:
            continue
        mean = pd.concat(series, axis=1).mean(axis=1).sort_index() * 100
        ax.plot(mean.index + 1, mean.values, marker="o", ms=2, lw=1, color=_color(i), label=label)
        drawn += 1
    if drawn:
        ax.legend(fontsize=6, ncol=2 if drawn > 8 else 1, loc="best", framealpha=0.8)
    else:
        _empty(ax, f"no per-epoch {VAL_METRIC} logged")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation PGD accuracy (%)")
    ax.grid(alpha=0.3)
    return figure


def budget_curves_figure(table: Table) -> Figure:
    """Each row's expected best validation score after n = 1..N trials (the tuned view; Tang et al.'s estimator)."""
    figure, [ax] = _figure(f"{table.experiment}: expected best validation score vs trials (tuned)")
    drawn = 0
    for i, (label, curve) in enumerate(table.curves.items()):
        if curve:
            ax.plot(range(1, len(curve) + 1), curve, marker="o", ms=2, lw=1, color=_color(i), label=label)
            drawn += 1
    if drawn:
        ax.legend(fontsize=6, ncol=2 if drawn > 8 else 1, loc="best", framealpha=0.8)
    else:
        _empty(ax, "no completed trials")
    ax.set_xlabel("trials n")
    ax.set_ylabel("expected best validation score (%)")
    ax.grid(alpha=0.3)
    return figure


def figures(table: Table, history: Callable[[str], list[tuple[int, float]]]) -> dict[str, Figure]:
    """The leaderboard's plots by file stem: `pareto`, `aa_vs_cost`, `val_curves`, and `budget_curves` for the
    tuned view."""
    drawn = {
        "pareto": pareto_figure(table),
        "aa_vs_cost": cost_figure(table),
        "val_curves": val_curves_figure(table, history),
    }
    if table.curves:
        drawn["budget_curves"] = budget_curves_figure(table)
    return drawn
