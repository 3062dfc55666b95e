"""The results store and the team tracking server: `rkdbench store upgrade` and `rkdbench server`."""

from __future__ import annotations

from pathlib import Path

import click

from .options import RESULTS_HELP

__all__ = ["store", "server"]


@click.group()
def store() -> None:
    """The results store: `upgrade` migrates it to the installed MLflow's schema."""


@store.command("upgrade")
@click.option("--results", default="rkdbench-results", show_default=True, help=RESULTS_HELP)
def store_upgrade(results) -> None:
    """Create or migrate the sqlite store in RESULTS once, under the store lock (workers may be running). With
    MLFLOW_TRACKING_URI=http://... the server migrates its own database: this says so and exits 2."""
    from ..tracking import tracking_uri
    from ..tracking.store import upgrade_store

    click.echo(upgrade_store(tracking_uri(results)))


@click.command()
@click.option(
    "--results",
    default="rkdbench-results",
    show_default=True,
    help="Without --backend-store-uri: the sqlite store and artifacts of this folder are served.",
)
@click.option(
    "--backend-store-uri",
    default=None,
    metavar="URI",
    help="postgresql+psycopg2://USER@HOST:PORT/DB (extra rkdbench[server]); default: sqlite in --results.",
)
@click.option(
    "--artifacts-destination",
    default=None,
    metavar="DIR",
    help="Where the server keeps artifacts (checkpoints) it proxies for clients (default: RESULTS/artifacts).",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Bind address; anything beyond loopback is reachable by anyone who can reach this machine.",
)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option(
    "--app-name",
    default=None,
    type=click.Choice(["basic-auth"]),
    help="MLflow's basic-auth app: users and passwords (clients set MLFLOW_TRACKING_USERNAME/PASSWORD).",
)
@click.option("--workers", default=2, show_default=True, type=click.IntRange(min=1), help="Server worker processes.")
def server(results, backend_store_uri, artifacts_destination, host, port, app_name, workers) -> None:
    """The team tracking server: checks the store, creates or migrates its schema once (`mlflow db upgrade`), then
    runs `mlflow server` with proxied artifacts. Workers set MLFLOW_TRACKING_URI=http://HOST:PORT; every command
    (run, leaderboard, compare, evaluate, ui) then reads and writes through it (docs/scale.md)."""
    from ..app.server import ServerRequest, serve

    serve(
        ServerRequest(Path(results), backend_store_uri, artifacts_destination, host, port, app_name, workers),
        lambda line: click.echo(line, err=True),
    )
