"""Where studies live: `<results>/optuna.db` (sqlite, one machine) or a PostgreSQL URL (many machines), with the
heartbeat that turns a killed worker's trial into a retried one.

`study_storage_url` resolves `--study-storage`, else `$RKDBENCH_STUDY_STORAGE`, else the sqlite file next to the
results store. `open_storage` returns Optuna's `RDBStorage` with a heartbeat (a running trial whose worker stops
beating for `grace` seconds is failed and re-queued with the same values, `RetryHeartbeatStaleTrialCallback`). A new
sqlite file is built beside its place and renamed into it under the results store's lock (`tracking.store.store_lock`),
so a kill never leaves half a database; on PostgreSQL a server-side advisory lock serializes the creation of Optuna's
tables (`storage_lock`): two workers at once otherwise fail on a fresh database. Storage that cannot be reached, or
whose schema this Optuna cannot read, is one `UserError` line.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..atomic import temporary_sibling
from ..errors import UserError
from ..tracking.store import sqlite_path, store_lock
from .samplers import optuna_experimental

__all__ = ["STUDY_DB", "STORAGE_ENV", "Heartbeat", "study_storage_url", "open_storage", "shown_url", "storage_lock"]

STUDY_DB = "optuna.db"
EXTRAS = {"optuna": "tune", "psycopg2": "server"}  # the package a storage needs -> the extra that installs it
ADVISORY_KEY = 0x726B6462656E6368  # "rkdbench": the PostgreSQL advisory lock of study databases
STORAGE_ENV = "RKDBENCH_STUDY_STORAGE"
HEARTBEAT_ENV = "RKDBENCH_TRIAL_HEARTBEAT_SECONDS"
SCHEMES = ("sqlite:///", "postgresql://", "postgresql+")


@dataclass(frozen=True)
class Heartbeat:
    """A running trial beats every `interval` seconds; silent for `grace` seconds it is stale: failed, then re-queued
    (at most `max_retry` times) with its values and reports, so that its cell resumes instead of being lost."""

    interval: int = 30
    grace: int = 120
    max_retry: int = 3

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Heartbeat:
        """The default, or `$RKDBENCH_TRIAL_HEARTBEAT_SECONDS` as the interval (stale after four): a shorter
        heartbeat lets a restarted `rkdbench tune` take over a killed one's trials sooner (the tests use 1 s)."""
        seconds = env.get(HEARTBEAT_ENV, "")
        return cls(interval=int(seconds), grace=4 * int(seconds)) if seconds.isdigit() and int(seconds) > 0 else cls()


def study_storage_url(
    results: str | os.PathLike[str], option: str | None = None, env: Mapping[str, str] = os.environ
) -> str:
    """`--study-storage`, else `$RKDBENCH_STUDY_STORAGE`, else `sqlite:///<results>/optuna.db`; others refused."""
    url = option or env.get(STORAGE_ENV, "")
    if not url:
        return f"sqlite:///{(Path(results) / STUDY_DB).resolve()}"
    if not url.startswith(SCHEMES):
        where = "--study-storage" if option else f"${STORAGE_ENV}"
        raise UserError(
            f"{where} = {shown_url(url)!r} is not allowed; allowed: a PostgreSQL URL "
            "(postgresql+psycopg2://user@host:5432/db) or sqlite:///<path>"
        )
    return url


def shown_url(url: str) -> str:
    """The URL with its password hidden, for messages."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


def storage_lock(url: str) -> Any:
    """What serializes the creation of a study database's schema and of a study: the results store's lock for sqlite,
    a PostgreSQL advisory lock for a server (held by a connection, so a killed holder releases it)."""
    database = sqlite_path(url)
    return store_lock(database.parent) if database is not None else _advisory_lock(url)


@contextmanager
def _advisory_lock(url: str) -> Iterator[None]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_KEY})
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_KEY})
    finally:
        engine.dispose()


def _create_sqlite(database: Path) -> None:
    """Build a new study database beside `database` and rename it into place (under the store lock)."""
    from optuna.storages import RDBStorage

    with store_lock(database.parent):
        if database.exists():
            return
        for leftover in database.parent.glob(f".{database.name}.*.tmp"):
            leftover.unlink(missing_ok=True)  # a creation killed before its rename
        tmp = temporary_sibling(database)
        try:
            RDBStorage(f"sqlite:///{tmp}").engine.dispose()
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, database)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def open_storage(url: str, heartbeat: Heartbeat = Heartbeat()) -> Any:
    """Optuna's `RDBStorage` on `url` with the heartbeat and the retry of stale trials; a sqlite file is created
    atomically first. UserError when the storage is unreachable or its schema is not this Optuna's."""
    database = sqlite_path(url)
    try:
        from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

        if database is not None:
            _create_sqlite(database)
        # a fresh server database: the first worker creates Optuna's tables, the others wait and find them
        with optuna_experimental(), _advisory_lock(url) if database is None else nullcontext():
            return RDBStorage(
                url,
                # sqlite: wait for a busy database instead of failing at once (workers and heartbeats write often)
                engine_kwargs={"connect_args": {"timeout": 60}} if database is not None else None,
                heartbeat_interval=heartbeat.interval,
                grace_period=heartbeat.grace,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                    max_retry=heartbeat.max_retry, inherit_intermediate_values=True
                ),
            )
    except ModuleNotFoundError as exc:
        extra = EXTRAS.get((exc.name or "").split(".")[0], "tune")
        raise UserError(
            f"study storage {shown_url(url)} needs the {exc.name} package (pip install 'rkdbench[{extra}]')"
        ) from None
    except Exception as exc:  # sqlalchemy's OperationalError, Optuna's schema RuntimeError, an unwritable folder
        reason = " ".join(str(exc).split())[:300]
        raise UserError(
            f"study storage {shown_url(url)} cannot be opened: {reason} (--study-storage / ${STORAGE_ENV}; an old "
            f"schema: optuna storage upgrade --storage URL)"
        ) from None
