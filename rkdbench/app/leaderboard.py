"""Writing the leaderboards: collect the finished runs from the store, build one table per protocol hash, print
them, and publish them (files under `out`, a run of kind `leaderboard` in MLflow). `rkdbench leaderboard` and the
end of `rkdbench run`/`demo` build a `LeaderboardRequest` and call `print_leaderboards`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click

from ..errors import UserError

__all__ = ["LeaderboardRequest", "print_leaderboards"]


@dataclass(frozen=True)
class LeaderboardRequest:
    """What to build and where it goes. `fmt` `terminal` prints the compact table (after writing the files it names),
    any other format the full tables; `out` None writes no files; `only_hash` keeps one protocol hash (a suite's
    own); `n_points` is the evaluated subset size the terminal table mentions."""

    results: str
    fmt: str
    selection: str = "last"
    protocol: str | None = None
    out: str | None = None
    only_hash: str | None = None
    model_dir: str | None = None
    log_to_mlflow: bool = True
    ui_url: str = ""
    references: str | None = None
    n_points: int | None = None


def _build(request: LeaderboardRequest, tracker) -> list:
    """The leaderboard tables of the request's runs; a one-line error when there is nothing to rank."""
    from ..leaderboard.collect import collect_runs, config_loader, per_example_loader
    from ..leaderboard.references import load_references
    from ..leaderboard.tables import build_tables
    from ..teachers.accuracy import teacher_accuracies
    from ..teachers.card import model_dir_path

    runs = collect_runs(tracker, request.protocol)
    if request.only_hash is not None and not runs.empty:
        runs = runs[runs["protocol_hash"] == request.only_hash]
    teachers = teacher_accuracies(
        tracker, [] if runs.empty else runs["teacher"].unique(), model_dir_path(request.model_dir)
    )
    tables = build_tables(
        runs,
        request.selection,
        per_example_loader(tracker),
        config=config_loader(tracker),
        references=load_references(request.references),
        teachers=teachers,
        ui_url=request.ui_url,
    )
    if not tables:
        protocol = request.protocol
        raise UserError(
            f"no finished runs{' for protocol ' + repr(protocol) if protocol else ''} with "
            f"{request.selection} results in {request.results}; run a suite first (rkdbench demo)"
        )
    return tables


def print_leaderboards(request: LeaderboardRequest) -> None:
    """Print the tables (`terminal`: the compact table, after the files it names are written) and publish them."""
    from ..leaderboard.collect import history_loader
    from ..leaderboard.publish import folder_names, publish
    from ..leaderboard.render import render_many
    from ..leaderboard.terminal import to_terminal
    from ..tracking import Tracker
    from ..tracking.counting import ignored_note

    tracker = Tracker(request.results)
    tables = _build(request, tracker)
    terminal = request.fmt == "terminal"
    if not terminal:
        click.echo(render_many(tables, request.fmt), nl=False)
    note = ignored_note(sum(table.ignored_runs for table in tables))
    if note:
        click.echo(f"rkdbench: {note}", err=True)
    if request.out is None and not request.log_to_mlflow:
        if terminal:
            click.echo("\n".join(to_terminal(table, n_points=request.n_points) for table in tables), nl=False)
        return
    history = history_loader(tracker)
    folders = folder_names(tables)
    for i, table in enumerate(tables):
        published = publish(
            table,
            history,
            Path(request.out) / folders[i] if request.out is not None else None,
            tracker if request.log_to_mlflow else None,
        )
        if terminal:  # the table names its full versions itself
            click.echo(
                to_terminal(table, [p for p in published.paths if p.suffix in (".md", ".html")], request.n_points)
            )
        for path in published.paths if not terminal else ():
            click.echo(f"wrote {path}", err=True)
        if published.run_id is not None:
            click.echo(
                f"{'logged' if published.new_run else 'unchanged since'} leaderboard run {published.run_id} "
                f"({table.experiment}, {table.selection})",
                err=True,
            )
