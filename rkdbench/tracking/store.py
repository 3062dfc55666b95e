"""Opening, creating and migrating the results store once, whatever the number of processes.

MLflow creates (and migrates) a sqlite store on the first open; two processes opening a fresh store at once
race its alembic migration and can leave it permanently broken (`table _alembic_tmp_experiments already
exists`). Every rkdbench process therefore opens a sqlite store under an exclusive `fcntl.flock` on
`<results>/.store.lock`: the first creates the tables, the others wait for it and find them. A tracking server
(http URI) owns its database: it is migrated by the server (`rkdbench server`, `mlflow db upgrade`), never by a
worker. `upgrade_store` is the explicit migration behind `rkdbench store upgrade`.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import TrackingError, UserError

__all__ = ["store_lock", "open_client", "upgrade_store", "sqlite_path"]

LOCK_NAME = ".store.lock"
IMPLICIT_STORE = (
    "no tracking store named: give a results folder (--results DIR) or MLFLOW_TRACKING_URI; rkdbench never lets "
    "MLflow pick its implicit default (./mlflow.db in the current directory)"
)


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI, else None."""
    return Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") else None


@contextmanager
def store_lock(folder: str | os.PathLike[str]) -> Iterator[None]:
    """Exclusive inter-process lock on `<folder>/.store.lock` (blocking; released on exit or when the holder dies)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_NAME, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def open_client(uri: str):
    """An MlflowClient on `uri`; a sqlite store is created (first open) under the store lock of its folder. An
    empty `uri` is refused: MLflow would fall back to its process-wide or implicit default store."""
    from mlflow.tracking import MlflowClient

    if not uri:
        raise TrackingError(IMPLICIT_STORE)
    database = sqlite_path(uri)
    if database is None:
        return MlflowClient(tracking_uri=uri)
    with store_lock(database.parent):  # the client may open (and create) the store as soon as it is made
        client = MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)  # creates the tables on a fresh store, once
    return client


def upgrade_store(uri: str) -> str:
    """Migrate a sqlite store to the installed MLflow's schema under the store lock; returns what was done.
    An http(s) tracking URI is refused: its server migrates its own database."""
    database = sqlite_path(uri)
    if database is None:
        raise UserError(
            f"{uri} is a tracking server: it migrates its own database (`rkdbench server` runs the "
            f"upgrade at start, or `mlflow db upgrade <database URI>` on the server's database)"
        )
    from mlflow.store.db.utils import (
        _all_tables_exist,
        _get_latest_schema_revision,
        _get_schema_version,
        _initialize_tables,
        _upgrade_db,
        create_sqlalchemy_engine,
    )

    with store_lock(database.parent):
        engine = create_sqlalchemy_engine(uri)
        try:
            head = _get_latest_schema_revision()
            if not _all_tables_exist(engine):
                _initialize_tables(engine)
                return f"created {uri} at schema {head}"
            before = _get_schema_version(engine)
            if before == head:
                return f"{uri} is up to date (schema {head})"
            _upgrade_db(engine)
            return f"upgraded {uri} from schema {before} to {head}"
        finally:
            engine.dispose()
