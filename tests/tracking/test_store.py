"""The results store is never broken (`rkdbench.tracking.store`, `sqlite_store`): a new store is created whole
beside its place and renamed in, so a SIGKILL or Ctrl-C inside the creation leaves no store (the next holder of
the lock removes the leftover and creates it); `rkdbench store upgrade` migrates a copy and keeps the old file,
so a kill leaves the old store working; half-migrated stores (what earlier versions left) are rebuilt when
empty, repaired on a copy when they hold runs, or refused in one line; bad store files, a store from a newer
MLflow and an unwritable results folder are one line each, exit 2, nothing changed."""

from __future__ import annotations

import fcntl
import os
import random
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rkdbench.atomic import sha256_file
from rkdbench.cli import main
from rkdbench.tracking import Tracker
from rkdbench.tracking.sqlite_store import build, head_revision, inspect_store, revisions
from support.cli import HANG_GUARD_S
from support.old_stores import assert_old_runs_intact, old_store
from support.processes import frozen

SEED = int(os.environ.get("RKDBENCH_KILL_SEED", random.randrange(1 << 30)))


def cli(*args: str) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    return exit_info.value.code


def child_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("rkdbench: error: "), err
    return lines[0]


def leftovers(results: Path) -> list[Path]:
    return sorted(results.glob(".mlflow.db.*.tmp*"))


def kill_when_temporary_file_appears(command: list[str], results: Path, sig: int, delay: float):
    """Start `command`, send `sig` `delay` s after it made the store's temporary file; its exit code, its stderr,
    and whether that file was still there when the signal went (the signal landed inside the creation)."""
    before = set(leftovers(results))
    process = subprocess.Popen(command, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not (made := set(leftovers(results)) - before):
        assert process.poll() is None, process.communicate()
        time.sleep(0.005)
    time.sleep(delay)
    with frozen(process.pid):  # held still: the signal lands where `inside` saw it, however loaded the machine
        inside = all(path.exists() for path in made if path.suffix == ".tmp")
        process.send_signal(sig)
    _, err = process.communicate(timeout=HANG_GUARD_S)
    return process.returncode, err, inside


def rkdbench_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "rkdbench.cli", *args]


# --- creation ---------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_kill_or_ctrl_c_inside_creation_leaves_no_store_and_the_next_open_creates_it(tmp_path):
    rng = random.Random(SEED)
    print(f"RKDBENCH_KILL_SEED={SEED}")
    for sig in (signal.SIGKILL, signal.SIGINT):
        results = tmp_path / signal.Signals(sig).name
        delay = rng.uniform(0.0, 0.3)  # creation takes seconds: the signal lands inside it
        code, err, inside = kill_when_temporary_file_appears(
            rkdbench_command("leaderboard", "--results", str(results)), results, sig, delay
        )
        assert inside, f"seed {SEED}: the creation ended within {delay:.2f} s"
        assert not (results / "mlflow.db").exists(), f"seed {SEED}: a store appeared ({sig.name}, {delay:.2f} s)"
        if sig == signal.SIGINT:
            assert code == 130 and "interrupted" in err and not leftovers(results), err
        else:
            assert code == -signal.SIGKILL and leftovers(results)
        tracker = Tracker(results)
        tracker.check_reachable()  # the next holder of the lock removes the leftover and creates the store
        assert not leftovers(results)
        assert inspect_store(results / "mlflow.db").kind == "current"
        assert tracker.experiments() == {"0": "Default"}


def test_a_new_store_is_current_and_readable_like_any_new_file(tmp_path):
    results = tmp_path / "results"
    Tracker(results).check_reachable()
    database = results / "mlflow.db"
    state = inspect_store(database)
    assert (state.kind, state.revision) == ("current", head_revision())
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(database.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600: a shared folder's group
    assert not leftovers(results)


# --- upgrade ----------------------------------------------------------------------------------------------------


def test_store_upgrade_migrates_a_copy_and_keeps_the_old_file(tmp_path, capsys):
    results = tmp_path / "results"
    database = results / "mlflow.db"
    old_store(database)
    before = sha256_file(database)
    assert cli("store", "upgrade", "--results", str(results)) == 0
    out = capsys.readouterr().out
    assert f"upgraded {database} from schema {revisions()[0]} to {head_revision()}" in out
    kept = results / f"mlflow.db.bak-{revisions()[0]}"
    assert f"kept as {kept.name}" in out and sha256_file(kept) == before
    assert inspect_store(database).kind == "current" and not leftovers(results)
    assert_old_runs_intact(database)


def test_ctrl_c_inside_a_migration_statement_is_an_interruption_not_a_failed_migration(tmp_path, monkeypatch):
    """SQLAlchemy turns a Ctrl-C inside a statement into its own error raised during cleanup, with the interrupt as
    context (seen in CI: "failed (PendingRollbackError ...)", exit 2); the upgrade is still an interruption."""
    import rkdbench.tracking.sqlite_store as sqlite_store

    results = tmp_path / "results"
    database = results / "mlflow.db"
    old_store(database)
    before = sha256_file(database)
    alembic = sqlite_store._alembic

    def interrupted(path, command, revision):
        if command != "upgrade":
            return alembic(path, command, revision)
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise RuntimeError("Can't reconnect until invalid transaction is rolled back")  # noqa: B904 (as SQLAlchemy)

    monkeypatch.setattr(sqlite_store, "_alembic", interrupted)
    assert cli("store", "upgrade", "--results", str(results)) == 130
    assert sha256_file(database) == before and not leftovers(results)


@pytest.mark.slow
def test_a_kill_or_ctrl_c_during_store_upgrade_leaves_the_old_store_as_it_was(tmp_path):
    rng = random.Random(SEED + 1)
    print(f"RKDBENCH_KILL_SEED={SEED}")
    results = tmp_path / "results"
    database = results / "mlflow.db"
    old_store(database)
    before = sha256_file(database)
    for sig in (signal.SIGINT, signal.SIGKILL):
        delay = rng.uniform(0.0, 1.0)  # copying, migrating and checking the copy take seconds
        code, err, inside = kill_when_temporary_file_appears(
            rkdbench_command("store", "upgrade", "--results", str(results)), results, sig, delay
        )
        assert inside, f"seed {SEED}: the upgrade ended within {delay:.2f} s"
        assert sha256_file(database) == before, f"seed {SEED}: {sig.name} after {delay:.2f} s changed the store"
        assert inspect_store(database).revision == revisions()[0]
        assert code == (130 if sig == signal.SIGINT else -signal.SIGKILL), err
        assert bool(leftovers(results)) == (sig == signal.SIGKILL)  # Ctrl-C cleans up; a SIGKILL cannot
    done = subprocess.run(
        rkdbench_command("store", "upgrade", "--results", str(results)), env=child_env(), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "upgraded" in done.stdout and "removed 1 temporary file" in done.stdout
    assert not leftovers(results) and inspect_store(database).kind == "current"
    assert_old_runs_intact(database)


def test_store_upgrade_refuses_while_another_process_has_the_store_open(tmp_path, capsys):
    results = tmp_path / "results"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom rkdbench.tracking import Tracker\nTracker(sys.argv[1]).check_reachable()\n"
            "print('open', flush=True)\ntime.sleep(600)",
            str(results),
        ],
        env=child_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        database = results / "mlflow.db"
        with sqlite3.connect(database) as conn:  # as if MLflow had been upgraded under the running worker
            conn.execute("UPDATE alembic_version SET version_num = ?", (revisions()[-2],))
        before = sha256_file(database)
        assert cli("store", "upgrade", "--results", str(results)) == 2
        assert "is open in another rkdbench process" in one_line(capsys.readouterr().err)
        assert sha256_file(database) == before and not leftovers(results)
    finally:
        holder.kill()
        holder.wait()
    assert cli("store", "upgrade", "--results", str(results)) == 0  # the holder is gone
    assert inspect_store(results / "mlflow.db").kind == "current"


# --- half-migrated stores ---------------------------------------------------------------------------------------


def half_migrated_at(database: Path, done: int, stamped: int) -> None:
    """An old store holding runs whose in-place migration ran to revision `done` but was killed before stamping
    more than `stamped`, and left a copy of `runs` from a table rebuild it had not finished."""
    old_store(database)
    from alembic import command
    from mlflow.store.db.utils import _get_alembic_config

    command.upgrade(_get_alembic_config(f"sqlite:///{database}"), revisions()[done])
    with sqlite3.connect(database) as conn:
        conn.execute("UPDATE alembic_version SET version_num = ?", (revisions()[stamped],))
        conn.execute("CREATE TABLE _alembic_tmp_runs AS SELECT * FROM runs")


def test_run_on_a_half_migrated_store_says_in_one_line_to_run_store_upgrade(tmp_path, capsys):
    results = tmp_path / "results"
    database = results / "mlflow.db"
    half_migrated_at(database, 3, 2)
    before = sha256_file(database)
    suite = tmp_path / "mini.toml"
    suite.write_text(
        '[suite]\nname = "mini"\nprotocol = "digits-linf"\nmethods = ["pgd-at"]\nstudents = ["cnn-tiny"]\nseeds = [0]\n'
    )
    assert cli("run", str(suite), "--results", str(results)) == 2
    line = one_line(capsys.readouterr().err)
    assert "half-migrated" in line and "_alembic_tmp_runs" in line
    assert f"run `rkdbench store upgrade --results {results}`" in line
    assert cli("leaderboard", "--results", str(results)) == 2
    assert "rkdbench store upgrade" in one_line(capsys.readouterr().err)
    assert sha256_file(database) == before and not (results / "cells").exists()


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param("", id="migration-done-not-stamped"),
        # and one more column and index half-added by the next migration: taken back, that migration runs again
        pytest.param(
            "ALTER TABLE runs ADD COLUMN half_added TEXT; CREATE INDEX ix_half ON runs (half_added)", id="undo"
        ),
    ],
)
def test_a_half_migrated_store_holding_runs_is_repaired_on_a_copy(tmp_path, capsys, extra):
    results = tmp_path / "results"
    database = results / "mlflow.db"
    half_migrated_at(database, 3, 2)  # revision 3 creates experiment_tags; 2 is stamped
    with sqlite3.connect(database) as conn:
        conn.executescript(extra)
    before = sha256_file(database)
    assert cli("store", "upgrade", "--results", str(results)) == 0
    out = capsys.readouterr().out
    start = revisions()[3] if not extra else revisions()[2]
    assert f"repaired {database} from schema {start} to {head_revision()}" in out
    assert sha256_file(results / f"mlflow.db.bak-{revisions()[2]}") == before
    assert inspect_store(database).kind == "current"
    assert_old_runs_intact(database)


def test_a_store_stuck_inside_a_migration_is_refused_in_one_line_and_left_as_it_was(tmp_path, capsys):
    results = tmp_path / "results"
    database = results / "mlflow.db"
    half_migrated_at(database, 3, 2)
    with sqlite3.connect(database) as conn:  # a migration that took a column away, then died
        conn.execute("ALTER TABLE runs DROP COLUMN source_name")
    before = sha256_file(database)
    assert cli("store", "upgrade", "--results", str(results)) == 2
    line = one_line(capsys.readouterr().err)
    assert "holds runs but an interrupted migration left it between schema" in line
    assert "nothing was changed" in line and "mlflow.db.bak-*" in line and "runs" in line
    assert sha256_file(database) == before and not leftovers(results)
    assert sorted(p.name for p in results.iterdir() if p.name.startswith("mlflow.db")) == ["mlflow.db"]


def test_a_half_migrated_empty_store_is_rebuilt(tmp_path, capsys):
    results = tmp_path / "results"
    database = results / "mlflow.db"
    results.mkdir()
    build(database, revisions()[10])  # what a kill inside the first open left: no runs yet
    with sqlite3.connect(database) as conn:
        conn.execute("CREATE TABLE _alembic_tmp_experiments AS SELECT * FROM experiments")
    assert inspect_store(database).kind == "half-migrated"
    assert cli("store", "upgrade", "--results", str(results)) == 0
    assert f"rebuilt {database} at schema {head_revision()}" in capsys.readouterr().out
    assert inspect_store(database).kind == "current"
    assert Tracker(results).experiments() == {"0": "Default"}


# --- bad input ---------------------------------------------------------------------------------------------------


def text_file(database: Path) -> str:
    database.write_text("my notes\n")
    return "is not an MLflow store (not a sqlite database"


def foreign_sqlite(database: Path) -> str:
    with sqlite3.connect(database) as conn:
        conn.execute("CREATE TABLE songs (title TEXT)")
    return "is not an MLflow store (a sqlite database with tables songs)"


def newer_mlflow(database: Path) -> str:
    build(database)
    with sqlite3.connect(database) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'f00dfeedbeef'")
    return "is at MLflow schema f00dfeedbeef, unknown to the installed MLflow"


@pytest.mark.parametrize("make", [text_file, foreign_sqlite, newer_mlflow])
def test_a_store_file_rkdbench_cannot_use_is_one_line_and_left_as_it_was(tmp_path, capsys, make):
    results = tmp_path / "results"
    results.mkdir()
    database = results / "mlflow.db"
    expected = make(database)
    before = sha256_file(database)
    for command in (("store", "upgrade"), ("leaderboard",), ("compare", "run-a", "run-b")):
        assert cli(*command, "--results", str(results)) == 2, command
        line = one_line(capsys.readouterr().err)
        assert expected in line and "nothing was changed" in line, command
    assert sha256_file(database) == before
    assert sorted(p.name for p in results.iterdir()) == [".store.lock", "mlflow.db"]


def make_unwritable(folder: Path) -> bool:
    """chmod for a user; root writes anywhere, except in an immutable folder (chattr +i) where that works."""
    folder.chmod(0o555)
    if not os.access(folder, os.W_OK):
        return True
    return subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0


def test_an_unwritable_results_folder_is_one_line_and_nothing_is_written(tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    if not make_unwritable(results):
        pytest.skip("cannot make a folder unwritable here (root without chattr)")
    try:
        for command in (("store", "upgrade"), ("leaderboard",)):
            assert cli(*command, "--results", str(results)) == 2, command
            assert f"results folder {results} is not writable" in one_line(capsys.readouterr().err)
        assert cli("store", "upgrade", "--results", str(results / "sub")) == 2
        assert f"results folder {results / 'sub'} cannot be created" in one_line(capsys.readouterr().err)
        assert list(results.iterdir()) == []
    finally:
        subprocess.run(["chattr", "-i", str(results)], capture_output=True)
        results.chmod(0o755)


def test_rkdbench_server_creates_its_sqlite_store_whole_and_keeps_it_marked_in_use(tmp_path):
    from support.processes import free_port, stop_group, wait_healthy

    results, log, port = tmp_path / "results", tmp_path / "server.log", free_port()
    with log.open("w") as out:
        server = subprocess.Popen(
            rkdbench_command("server", "--results", str(results), "--port", str(port), "--workers", "1"),
            env=child_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_healthy(f"http://127.0.0.1:{port}", server, log, 300, "rkdbench server")
        assert f"rkdbench: created sqlite:///{results / 'mlflow.db'}" in log.read_text()
        assert inspect_store(results / "mlflow.db").kind == "current"
        # the server (this process after its exec) holds the store open: an upgrade would not swap it under it
        users = os.open(results / ".store.users", os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(users)
    finally:
        stop_group(server)
