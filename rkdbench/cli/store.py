"""The results store and the team tracking server: `rkdbench store upgrade` and `rkdbench server`."""

from __future__ import annotations

from pathlib import Path

import click

from .options import RESULTS_HELP

__all__ = ["store", "server"]


@click.group()
def store() -> None:
    """The results store (RESULTS/mlflow.db). Every command creates a missing store whole (built beside it, renamed
    into place: a kill leaves none or a complete one) and opens only a store at the installed MLflow's schema;
    `upgrade` migrates or repairs any other on a copy."""


@store.command("upgrade")
@click.option("--results", default="rkdbench-results", show_default=True, help=RESULTS_HELP)
def store_upgrade(results) -> None:
    """Create, migrate or repair the sqlite store in RESULTS (after upgrading MLflow, or when a command says so).

    A missing store is created whole. An older one is copied (sqlite's backup API), the copy is migrated and checked
    against the tables the installed MLflow builds, then swapped in with one rename; the old file is kept as
    mlflow.db.bak-<revision>, and a kill or Ctrl-C leaves it as it was. A half-migrated store (what an interrupted
    migration of an earlier version left) is rebuilt when it holds no runs, repaired on the copy when it does, or
    refused in one line that says how to recover its runs. Nothing is swapped under a running process: while any
    process has the store open (run, ui, server) it changes nothing and says so. A newer MLflow's store, or a file
    that is no MLflow store, is one line and left as it is (exit 2). With MLFLOW_TRACKING_URI=http://... the
    server migrates its own database: this says so and exits 2."""
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
    """The team tracking server: checks the store, creates or migrates its schema once (a sqlite one as `rkdbench
    store upgrade` does, PostgreSQL by `mlflow db upgrade`), then runs `mlflow server` with proxied artifacts.
    Workers set MLFLOW_TRACKING_URI=http://HOST:PORT; every command (run, leaderboard, compare, evaluate, ui) then
    reads and writes through it (docs/scale.md)."""
    from ..app.server import ServerRequest, serve

    serve(
        ServerRequest(Path(results), backend_store_uri, artifacts_destination, host, port, app_name, workers),
        lambda line: click.echo(line, err=True),
    )
