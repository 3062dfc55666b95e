"""The results store's sqlite file is only ever whole: it is created, upgraded and repaired on a copy beside it.

MLflow creates a sqlite store by running its alembic migrations in the file itself, and they are not
transactional (`mlflow.store.db.utils._upgrade_db` says so): a kill in the middle left a file that no later open
could use (`table _alembic_tmp_experiments already exists`). Here a new store is built and migrated in a
temporary file in the same folder (`rkdbench.atomic.temporary_sibling`) and renamed over `mlflow.db` in one
`os.replace`. An upgrade or a repair works on a consistent copy (sqlite's backup API), is checked against the
schema the installed MLflow itself builds, and replaces the live file the same way, the old one kept as
`mlflow.db.bak-<revision>`. A kill at any moment leaves the old file (or none) and a `.mlflow.db.*.tmp` leftover
that the next holder of the store lock removes (`remove_leftovers`). `inspect_store` tells, cheaply, a current
store from an older one, a half-migrated one (what older rkdbench versions left when killed), one written by a
newer MLflow, and a file that is no MLflow store. The caller holds the store lock (`tracking.store`).
"""

from __future__ import annotations

import functools
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..atomic import temporary_sibling
from ..errors import UserError

__all__ = [
    "StoreState",
    "inspect_store",
    "create_store",
    "migrate_store",
    "remove_leftovers",
    "head_revision",
    "revisions",
    "build",
]

Kind = Literal["missing", "blank", "current", "outdated", "half-migrated", "newer", "foreign"]
TMP_PREFIX = "_alembic_tmp_"  # alembic's copy of a table that a migration rebuilds (sqlite cannot alter columns)
# tables that MLflow's migrations fill by themselves: rows there are not the user's
BOOKKEEPING = {"alembic_version", "workspaces"}
DEFAULT_EXPERIMENT = 0  # created by MLflow's store on its first open


@dataclass(frozen=True)
class StoreState:
    """What a store file is (`kind`), its alembic revision and, for a broken or foreign file, what is wrong."""

    path: Path
    kind: Kind
    revision: str | None = None
    detail: str = ""

    def problem(self, fix: str = "") -> str:
        """One line: what is wrong with this store for the installed MLflow (`fix`: how to fix an older or a
        half-migrated one)."""
        import mlflow

        if self.kind == "outdated":
            return (
                f"{self.path} is at MLflow schema {self.revision}, not the installed MLflow {mlflow.__version__}'s "
                f"{head_revision()} (an older MLflow wrote it, or a migration was interrupted): {fix}"
            )
        if self.kind == "half-migrated":
            return f"{self.path} was left half-migrated by an interrupted migration ({self.detail}): {fix}"
        if self.kind == "newer":
            return (
                f"{self.path} is at MLflow schema {self.revision}, unknown to the installed MLflow "
                f"{mlflow.__version__} (a newer MLflow wrote it): upgrade MLflow (pip install -U mlflow) or use "
                f"another --results folder; nothing was changed"
            )
        return (
            f"{self.path} is not an MLflow store ({self.detail}): move it away or use another --results folder; "
            f"nothing was changed"
        )


@functools.cache
def revisions() -> tuple[str, ...]:
    """The installed MLflow's alembic revisions, oldest first."""
    from alembic.script import ScriptDirectory
    from mlflow.store.db.utils import _get_alembic_config

    script = ScriptDirectory.from_config(_get_alembic_config(""))
    return tuple(reversed([r.revision for r in script.walk_revisions()]))


def head_revision() -> str:
    return revisions()[-1]


def _tables(conn: sqlite3.Connection) -> list[str]:
    return [name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]


def _revision(conn: sqlite3.Connection, tables: list[str]) -> tuple[str | None, int]:
    """The stamped alembic revision (None: none) and how many rows `alembic_version` holds."""
    if "alembic_version" not in tables:
        return None, 0
    rows = [r for (r,) in conn.execute("SELECT version_num FROM alembic_version")]
    return (rows[0] if len(rows) == 1 else None), len(rows)


def inspect_store(path: Path) -> StoreState:
    """What `path` is, read under the store lock without changing it (sqlite rolls back a hot journal a killed
    writer left: that is sqlite's own recovery, not a change)."""
    if not path.exists():
        return StoreState(path, "missing")
    if not path.is_file():
        return StoreState(path, "foreign", detail="not a file")
    try:
        with closing(sqlite3.connect(path)) as conn:
            tables = _tables(conn)
            revision, stamped = _revision(conn, tables)
    except sqlite3.DatabaseError as exc:
        return StoreState(path, "foreign", detail=f"not a sqlite database: {exc}")
    if not tables:
        return StoreState(path, "blank")
    from mlflow.store.db.utils import Base

    if revision is not None and revision not in revisions():
        if "experiments" not in tables:
            return StoreState(path, "foreign", revision, f"an alembic database of something else, at {revision}")
        return StoreState(path, "newer", revision)
    if not {"experiments", "runs"} & set(tables) and not stamped:
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        return StoreState(path, "foreign", detail=f"a sqlite database with tables {shown}")
    leftovers = sorted(t for t in tables if t.startswith(TMP_PREFIX))
    missing = sorted(set(Base.metadata.tables) - set(tables))
    if leftovers:
        return StoreState(path, "half-migrated", revision, f"leftover tables {', '.join(leftovers)}")
    if revision is None:
        return StoreState(path, "half-migrated", None, f"MLflow tables with {stamped or 'no'} schema revisions stamped")
    if revision == head_revision():
        if missing:
            return StoreState(path, "half-migrated", revision, f"tables {', '.join(missing)} missing at {revision}")
        return StoreState(path, "current", revision)
    return StoreState(path, "outdated", revision)


def remove_leftovers(path: Path) -> list[Path]:
    """Delete the temporary files (with their sqlite journals) that a killed creation or upgrade left; which."""
    removed = sorted(path.parent.glob(f".{path.name}.*.tmp"))
    for leftover in [*removed, *path.parent.glob(f".{path.name}.*.tmp-*")]:
        leftover.unlink(missing_ok=True)
    return removed


# ---- building, copying, migrating: always a temporary file ------------------------------------------------------


@contextmanager
def _engine(path: Path) -> Iterator[Any]:
    from mlflow.store.db.utils import create_sqlalchemy_engine

    engine = create_sqlalchemy_engine(f"sqlite:///{path}")
    try:
        yield engine
    finally:
        engine.dispose()  # no connection left open: the file can be renamed and its journal is gone


def _alembic(path: Path, command: str, revision: str) -> None:
    """Run alembic's `upgrade` or `stamp` on the file as MLflow's `_upgrade_db` does (MLflow's migration scripts
    and environment, one shared connection)."""
    from alembic import command as commands
    from mlflow.store.db.utils import _get_alembic_config

    with _engine(path) as engine:
        config = _get_alembic_config(str(engine.url))
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            getattr(commands, command)(config, revision)


def build(path: Path, revision: str | None = None) -> None:
    """MLflow's initial tables in `path`, migrated to `revision` (the head when None; only the initial tables for
    ""): what MLflow's own first open does, in a file nobody else opens."""
    from mlflow.store.db.utils import InitialBase

    with _engine(path) as engine:
        InitialBase.metadata.create_all(engine)
    if revision != "":
        _alembic(path, "upgrade", revision or "heads")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _backup(source: Path, target: Path) -> None:
    """A consistent copy of a live sqlite file (sqlite's backup API: pages copied under its read lock)."""
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)


def create_store(path: Path) -> None:
    """A new store at `path`, built and migrated to the installed MLflow's head beside it, renamed into place."""
    tmp = temporary_sibling(path)
    try:
        build(tmp)
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(path.parent)
    except BaseException:
        remove_leftovers(path)
        raise


def _swap(path: Path, tmp: Path, kept: Path) -> None:
    """Keep the live file as `kept` (a hard link: the old store stays in place), then rename `tmp` over it."""
    os.chmod(tmp, path.stat().st_mode & 0o7777)
    _fsync(tmp)
    link = temporary_sibling(path)
    link.unlink()
    try:
        os.link(path, link)
    except OSError:  # a filesystem without hard links: a copy then
        _backup(path, link)
    os.replace(link, kept)
    os.replace(tmp, path)
    _fsync(path.parent)


# ---- what a schema is, and which revision a half-migrated file is at ---------------------------------------------

Schema = dict[str, tuple[tuple[str, ...], tuple[str, ...]]]


def _schema(path: Path) -> Schema:
    """Each table's column names and named indexes: what a migration adds, drops or renames. Types, defaults and
    the SQL text are left out: they depend on the SQLAlchemy version that wrote the file, not on its revision."""
    with closing(sqlite3.connect(path)) as conn:
        schema: Schema = {}
        for table in _tables(conn):
            if table.startswith(("sqlite_", TMP_PREFIX)) or table == "alembic_version":
                continue
            quoted = table.replace('"', '""')
            columns = tuple(sorted(row[1] for row in conn.execute(f'PRAGMA table_info("{quoted}")')))
            indexes = tuple(
                sorted(
                    row[1]
                    for row in conn.execute(f'PRAGMA index_list("{quoted}")')
                    if not row[1].startswith("sqlite_autoindex_")
                )
            )
            schema[table] = (columns, indexes)
    return schema


@functools.cache
def _reference(revision: str | None) -> Schema:
    """The schema MLflow's own migrations give at `revision` (None: its initial tables only)."""
    with tempfile.TemporaryDirectory(prefix="rkdbench-schema-") as folder:
        path = Path(folder) / "reference.db"
        build(path, "" if revision is None else revision)
        return _schema(path)


def _difference(have: Schema, want: Schema) -> str:
    """The first differences between two schemas, for a one-line message."""
    missing = sorted(set(want) - set(have))
    extra = sorted(set(have) - set(want))
    changed = sorted(t for t in set(have) & set(want) if have[t] != want[t])
    parts = [f"{label} {', '.join(names[:3])}" for label, names in (("missing", missing), ("extra", extra)) if names]
    return "; ".join(parts + ([f"table {', '.join(changed[:3])} differs"] if changed else [])) or "no difference"


def _finish_interrupted_copies(path: Path) -> None:
    """An interrupted table rebuild left `_alembic_tmp_X`: while X exists X still holds every row (the copy is
    dropped); once X was dropped the copy holds them, and renaming it finishes that rebuild."""
    with closing(sqlite3.connect(path)) as conn:
        tables = _tables(conn)
        for table in (t for t in tables if t.startswith(TMP_PREFIX)):
            original = table.removeprefix(TMP_PREFIX)
            if original in tables:
                conn.execute(f'DROP TABLE "{table}"')
            else:
                conn.execute(f'ALTER TABLE "{table}" RENAME TO "{original}"')
        conn.commit()


def _undo_additions(path: Path, want: Schema) -> bool:
    """Take back what an interrupted migration added to the file beyond `want` (tables, columns, indexes: its
    next run adds them again); False, and nothing changed, when it also took something away."""
    have = _schema(path)
    lost = [t for t in want if t not in have or not set(want[t][0]) <= set(have[t][0])]
    if lost:
        return False
    with closing(sqlite3.connect(path)) as conn:
        for table, (columns, indexes) in have.items():
            for index in set(indexes) - set(want.get(table, ((), ()))[1]):
                conn.execute(f'DROP INDEX "{index}"')
            if table not in want:
                conn.execute(f'DROP TABLE "{table}"')
                continue
            for column in set(columns) - set(want[table][0]):
                conn.execute(f'ALTER TABLE "{table}" DROP COLUMN "{column}"')
        conn.commit()
    return True


def _migration_start(path: Path, revision: str | None, shown: Path) -> tuple[str | None, bool]:
    """The revision to migrate the file from: its stamped one or the next one, whichever its tables match (a
    migration done when the kill came, before its stamp), else its stamped one once what an interrupted migration
    added is taken back; and whether the file needed a repair. A file that is none of these is one line about
    `shown` (the live file `path` is a copy of)."""
    order = revisions()
    following = order[:1] if revision is None else order[order.index(revision) + 1 :][:1]
    have = _schema(path)
    for candidate in (revision, *following):
        if have == _reference(candidate):
            return candidate, candidate != revision
    try:
        if _undo_additions(path, _reference(revision)) and _schema(path) == _reference(revision):
            return revision, True
    except sqlite3.DatabaseError:
        pass
    raise UserError(
        f"{shown} holds runs but an interrupted migration left it between schema {revision} and the next "
        f"({_difference(have, _reference(revision))}); nothing was changed. To recover its runs, restore a copy "
        f"taken before that migration (a {shown.name}.bak-* beside it, if any), or move it away and run the suite "
        f"again (each cell resumes from its checkpoint into a new run: nothing is retrained)"
    )


def _holds_data(path: Path) -> bool:
    """Whether any table holds a row of the user's (an experiment other than the default one, a run, ...)."""
    with closing(sqlite3.connect(path)) as conn:
        for table in _tables(conn):
            name = table.removeprefix(TMP_PREFIX)
            if table.startswith("sqlite_") or name in BOOKKEEPING:
                continue
            quoted = table.replace('"', '""')
            where = f" WHERE experiment_id != {DEFAULT_EXPERIMENT}" if name == "experiments" else ""
            if conn.execute(f'SELECT 1 FROM "{quoted}"{where} LIMIT 1').fetchone():
                return True
    return False


def _interrupted(exc: BaseException) -> bool:
    """Whether a Ctrl-C is behind `exc`: SQLAlchemy lets a KeyboardInterrupt inside a statement invalidate the
    connection, and the cleanup that follows raises its own error (`PendingRollbackError`) with the interrupt as
    its context; that is an interruption (exit 130), not a failed migration."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def migrate_store(path: Path, state: StoreState) -> str:
    """Bring an older or half-migrated store to the installed MLflow's head on a copy, check the copy has the
    tables MLflow builds, and swap it in, keeping the old file as `<name>.bak-<revision>`; returns what was done.
    A store that holds no runs is built anew. One that does is migrated from the revision its tables match (the
    stamped one, or the next when a migration was done but not stamped), after finishing an interrupted table
    rebuild; one stuck inside a migration raises a one-line `UserError`, and nothing is changed."""
    head = head_revision()
    kept = path.with_name(f"{path.name}.bak-{state.revision or 'none'}")
    tmp = temporary_sibling(path)
    try:
        _backup(path, tmp)
        if not _holds_data(tmp):
            tmp.unlink()
            build(tmp)
            was = f"half-migrated: {state.detail}" if state.detail else f"at schema {state.revision}"
            done = f"rebuilt {path} at schema {head} ({was}; it held no runs)"
        else:
            _finish_interrupted_copies(tmp)
            start, repaired = _migration_start(tmp, state.revision, path)
            if start != state.revision:
                _alembic(tmp, "stamp", start)  # its tables are at the next revision already
            try:
                _alembic(tmp, "upgrade", "heads")
            except Exception as exc:
                if _interrupted(exc):
                    raise KeyboardInterrupt from exc
                first = next(iter(str(exc).strip().splitlines()), "")
                raise UserError(
                    f"migrating a copy of {path} from schema {start} to {head} failed ({type(exc).__name__}: "
                    f"{first}); nothing was changed"
                ) from None
            verb = "repaired" if repaired or state.kind == "half-migrated" else "upgraded"
            done = f"{verb} {path} from schema {start} to {head}"
        have, want = _schema(tmp), _reference(head)
        if have != want:
            raise UserError(
                f"a copy of {path} migrated to schema {head} does not have the tables MLflow builds "
                f"({_difference(have, want)}); nothing was changed"
            )
        _swap(path, tmp, kept)
    except BaseException:
        remove_leftovers(path)
        raise
    return f"{done}; the previous file is kept as {kept.name}"
