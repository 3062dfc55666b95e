"""Writing the leaderboards: collect the finished runs from the store, build one table per protocol hash, print
them, and publish them (files under `out`, a run of kind `leaderboard` in MLflow). `rkdbench leaderboard` and the
end of `rkdbench run`/`demo` build a `LeaderboardRequest` and call `print_leaderboards`. Where the store holds
equal-budget studies (`rkdbench tune`), the tuned view (`leaderboard.tuned`) is printed with `tuned` and written next
to the official one under `out` (`<experiment>/tuned/`); cells only a tuned configuration produced stay out of the
official tables.
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
    tuned: bool = False  # print the tuned view (each method's selected configuration) instead of the official one


def _build(request: LeaderboardRequest, tracker) -> tuple[list, list]:
    """The official and the tuned leaderboard tables of the request's runs; a one-line error when the view asked
    for has nothing to rank."""
    from ..leaderboard.collect import collect_runs, config_loader, per_example_loader
    from ..leaderboard.references import load_references
    from ..leaderboard.tables import build_tables
    from ..leaderboard.tuned import collect_studies, official_runs, score_loader, tuned_tables
    from ..teachers.accuracy import teacher_accuracies
    from ..teachers.card import model_dir_path

    runs = collect_runs(tracker, request.protocol)
    studies = collect_studies(tracker, request.protocol)
    official, left_out = official_runs(runs, studies)
    if request.only_hash is not None and not official.empty:
        official = official[official["protocol_hash"] == request.only_hash]
    if request.only_hash is not None and not studies.empty:
        studies = studies[studies["protocol_hash"] == request.only_hash]
    teachers = teacher_accuracies(
        tracker, [] if runs.empty else runs["teacher"].unique(), model_dir_path(request.model_dir)
    )
    loaders = {"config": config_loader(tracker), "teachers": teachers, "ui_url": request.ui_url}
    per_example = per_example_loader(tracker)
    tables = build_tables(
        official, request.selection, per_example, references=load_references(request.references), **loaders
    )
    tuned = tuned_tables(runs, studies, score_loader(tracker), request.selection, per_example, **loaders)
    if left_out and not request.tuned:
        click.echo(
            f"rkdbench: {left_out} cell run{'s' if left_out != 1 else ''} of tuned configurations left out of the "
            "official tables (rkdbench leaderboard --tuned shows them)",
            err=True,
        )
    if not (tuned if request.tuned else tables):
        protocol = request.protocol
        what = "tuned studies (rkdbench tune SUITE --budget N)" if request.tuned else "finished runs"
        where = f"{' for protocol ' + repr(protocol) if protocol else ''} with {request.selection} results"
        if tuned and request.out is not None:  # a store of `rkdbench tune` only: --out writes its tuned view
            click.echo(f"rkdbench: no official table{where}: every run is a tuned configuration", err=True)
        elif tuned:
            raise UserError(
                f"no official table{where} in {request.results}: every run is a tuned configuration "
                "(rkdbench leaderboard --tuned prints them)"
            )
        else:
            raise UserError(f"no {what}{where} in {request.results}; run a suite first (rkdbench demo)")
    return tables, tuned


def print_leaderboards(request: LeaderboardRequest) -> None:
    """Print the tables (`terminal`: the compact table, after the files it names are written) and publish them."""
    from ..leaderboard.collect import history_loader
    from ..leaderboard.publish import publish
    from ..leaderboard.render import render_many
    from ..leaderboard.table import OFFICIAL
    from ..leaderboard.terminal import to_terminal
    from ..tracking import Tracker
    from ..tracking.counting import ignored_note

    tracker = Tracker(request.results)
    official, tuned = _build(request, tracker)
    tables = tuned if request.tuned else official
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
    folders = _folders(official, tuned)
    shown_tables = {id(table) for table in tables}
    for table in [*official, *tuned]:
        if id(table) not in shown_tables and request.out is None:
            continue  # the other view is only written into files
        published = publish(
            table,
            history,
            Path(request.out) / folders[id(table)] if request.out is not None else None,
            tracker if request.log_to_mlflow and table.view == OFFICIAL else None,
        )
        if id(table) not in shown_tables:
            for path in published.paths:
                click.echo(f"wrote {path}", err=True)
            continue
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


def _folders(official: list, tuned: list) -> dict[int, str]:
    """The folder of each table under `out`: the official one's (`publish.folder_names`), and `<that>/tuned` for a
    tuned one (`tuned-<setup>` when the experiment has tables of several search setups)."""
    from ..leaderboard.publish import folder_names
    from ..leaderboard.tuned import setup_name

    folders = {id(table): name for table, name in zip(official, folder_names(official).values())}
    tuned_names = folder_names(tuned)
    setups: dict[str, int] = {}
    for i in tuned_names:
        setups[tuned_names[i]] = setups.get(tuned_names[i], 0) + 1
    for i, table in enumerate(tuned):
        base = tuned_names[i]
        folders[id(table)] = f"{base}/tuned" if setups[base] == 1 else f"{base}/tuned-{setup_name(table)}"
    return folders
