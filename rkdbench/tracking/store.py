"""Opening, creating and migrating the results store once, whatever the number of processes, and never in place.

Every rkdbench process opens a sqlite store under an exclusive `fcntl.flock` on `<results>/.store.lock`. The
holder first removes what a killed creation or upgrade left, then looks at the file (`sqlite_store`): a missing
one is built in a temporary file and renamed into place (a kill leaves no store or a whole one); a current one
is opened; anything else is one line (an older or half-migrated store: run `rkdbench store upgrade`; a newer
MLflow's store, or a file that is no MLflow store: nothing is changed). An open store is marked in use for the
life of the process by a shared lock on `<results>/.store.users`: `upgrade_store` swaps a migrated copy in only
while nobody holds it, since a process with the file open would go on writing to the old one. A tracking
server (http URI) owns its database: it is migrated by the server (`rkdbench server`, `mlflow db upgrade`),
never by a worker.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import TrackingError, UserError
from . import sqlite_store

__all__ = ["store_lock", "open_client", "upgrade_store", "sqlite_path", "hold_store", "writable_folder"]

LOCK_NAME = ".store.lock"
IMPLICIT_STORE = (
    "no tracking store named: give a results folder (--results DIR) or MLFLOW_TRACKING_URI; rkdbench never lets "
    "MLflow pick its implicit default (./mlflow.db in the current directory)"
)
USERS_NAME = ".store.users"
_held: dict[Path, int] = {}  # folder -> the descriptor of its users lock, held shared until this process ends


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI, else None."""
    return Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") else None


def writable_folder(folder: str | os.PathLike[str]) -> Path:
    """`folder`, created if missing; a folder rkdbench cannot write in is one line (exit 2), before anything."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"results folder {folder} cannot be created: {exc.strerror or exc}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(
            f"results folder {folder} is not writable: rkdbench keeps its store, lock files and cell checkpoints "
            f"there; give write access or pass another --results folder"
        )
    return folder


@contextmanager
def store_lock(folder: str | os.PathLike[str]) -> Iterator[None]:
    """Exclusive inter-process lock on `<folder>/.store.lock` (blocking; released on exit or when the holder dies)."""
    folder = writable_folder(folder)
    with open(folder / LOCK_NAME, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def hold_store(folder: Path) -> int:
    """Mark the store of `folder` in use by this process until it ends (a shared lock; taken once per process:
    on NFS closing any descriptor of a locked file drops its lock). Returns the descriptor, which a process that
    execs the server keeps inheritable."""
    if folder not in _held:
        fd = os.open(folder / USERS_NAME, os.O_RDWR | os.O_CREAT, 0o666)
        fcntl.flock(fd, fcntl.LOCK_SH)
        _held[folder] = fd
    return _held[folder]


@contextmanager
def _unused(folder: Path, database: Path) -> Iterator[None]:
    """Exclusive use of the store while its file is replaced; one line when a process has it open."""
    in_use = UserError(
        f"{database} is open in another rkdbench process (run, ui, server, a Ray worker): stop them, then run "
        f"`rkdbench store upgrade` again; nothing was changed"
    )
    if folder in _held:
        raise in_use
    fd = os.open(folder / USERS_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise in_use from None
        yield
    finally:
        os.close(fd)


def _upgrade_hint(database: Path) -> str:
    return (
        f"run `rkdbench store upgrade --results {database.parent}` (it works on a copy and keeps this file as "
        f"{database.name}.bak-<revision>)"
    )


def open_client(uri: str):
    """An MlflowClient on `uri`. A sqlite store is looked at under the store lock of its folder: created whole if
    missing, refused in one line unless it is at the installed MLflow's schema, and marked in use. An empty `uri` is
    refused: MLflow would fall back to its process-wide or implicit default store."""
    from mlflow.tracking import MlflowClient

    if not uri:
        raise TrackingError(IMPLICIT_STORE)
    database = sqlite_path(uri)
    if database is None:
        return MlflowClient(tracking_uri=uri)
    with store_lock(database.parent):
        sqlite_store.remove_leftovers(database)
        state = sqlite_store.inspect_store(database)
        if state.kind in ("missing", "blank"):
            sqlite_store.create_store(database)
        elif state.kind != "current":
            raise UserError(state.problem(_upgrade_hint(database)))
        hold_store(database.parent)
        client = MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)  # MLflow's own first open (the default experiment), once
    return client


def upgrade_store(uri: str) -> str:
    """Create, migrate or repair a sqlite store under the store lock (`sqlite_store`: on a copy, swapped in while
    no process has the store open); returns what was done. An http(s) tracking URI is refused: its server
    migrates its own database."""
    database = sqlite_path(uri)
    if database is None:
        raise UserError(
            f"{uri} is a tracking server: it migrates its own database (`rkdbench server` runs the "
            f"upgrade at start, or `mlflow db upgrade <database URI>` on the server's database)"
        )
    with store_lock(database.parent):
        removed = sqlite_store.remove_leftovers(database)
        left = f" (removed {len(removed)} temporary file(s) an interrupted run left)" if removed else ""
        state = sqlite_store.inspect_store(database)
        head = sqlite_store.head_revision()
        if state.kind in ("missing", "blank"):
            sqlite_store.create_store(database)
            return f"created {uri} at schema {head}{left}"
        if state.kind == "current":
            return f"{uri} is up to date (schema {head}){left}"
        if state.kind in ("newer", "foreign"):
            raise UserError(state.problem(""))
        with _unused(database.parent, database):
            return sqlite_store.migrate_store(database, state) + left
