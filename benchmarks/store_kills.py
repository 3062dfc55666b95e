"""Why the results store is created and upgraded on a copy, measured: MLflow's own in-place creation and upgrade of a
sqlite store (what rkdbench did before) SIGKILLed at random moments, then what `rkdbench store upgrade` makes of
each file it left.

Run:  python benchmarks/store_kills.py [--kills 30] [--seed S]
Two series of `--kills` each. Creation: a fresh file, MLflow's `_initialize_tables` on it in a child process,
SIGKILLed uniformly 0-3 s after the child is ready (its imports done). Upgrade: a store at MLflow's first schema
revision holding 3 runs (a param, a tag, a metric at 3 steps each; `tests/support/old_stores.py`), MLflow's
`_upgrade_db` on it, killed the same way. Each file is then classified (`sqlite_store.inspect_store`), offered to
MLflow as a worker opened it (on a copy: `MlflowClient.search_experiments`), and given to `migrate_store` (what
`rkdbench store upgrade` runs); the upgrade series' runs are checked afterwards. Prints each file's outcome, the
counts, and the seed.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from rkdbench.errors import UserError  # noqa: E402
from rkdbench.tracking.sqlite_store import inspect_store, migrate_store  # noqa: E402
from support.old_stores import assert_old_runs_intact, old_store  # noqa: E402

IN_PLACE = """
import sys
from mlflow.store.db.utils import _initialize_tables, _upgrade_db, create_sqlalchemy_engine
engine = create_sqlalchemy_engine(f"sqlite:///{sys.argv[2]}")
print("ready", flush=True)
(_initialize_tables if sys.argv[1] == "create" else _upgrade_db)(engine)
print("done", flush=True)
"""


def kill_in_place(what: str, database: Path, delay: float) -> bool:
    """Run MLflow's in-place `what` on `database`, SIGKILL it `delay` s after it is ready; whether it had ended."""
    command = [sys.executable, "-c", IN_PLACE, what, str(database)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert child.stdout.readline().strip() == b"ready"
    try:
        child.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGKILL)
    child.wait()
    return child.returncode == 0


def mlflow_opens(database: Path) -> str:
    """'yes', or the first line of MLflow's error, when a worker opens (a copy of) the file as rkdbench did."""
    from mlflow.tracking import MlflowClient

    copy = database.with_name(f"mlflow-open-{database.name}")
    shutil.copy(database, copy)
    try:
        MlflowClient(f"sqlite:///{copy}").search_experiments(max_results=1)
        return "yes"
    except Exception as exc:
        return f"no: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:90]}"


def series(what: str, kills: int, rng: random.Random, folder: Path) -> Counter:
    counts: Counter = Counter()
    for k in range(kills):
        database = folder / f"{what}-{k}" / "mlflow.db"
        database.parent.mkdir(parents=True)
        if what == "upgrade":
            old_store(database)
        if kill_in_place(what, database, rng.uniform(0.0, 3.0)):
            counts["ended before the kill"] += 1
            continue
        state = inspect_store(database)
        opens = mlflow_opens(database)
        counts[f"left {state.kind}"] += 1
        counts[f"MLflow opens it: {opens.split(':')[0]}"] += 1
        try:
            done = migrate_store(database, state) if state.kind not in ("current", "missing", "blank") else "as is"
            if what == "upgrade":
                assert_old_runs_intact(database)
            counts[f"store upgrade: {done.split()[0]}"] += 1
        except (UserError, AssertionError) as exc:
            done = f"FAILED: {exc}"
            counts["store upgrade: failed"] += 1
        print(f"{what} {k}: {state.kind} {state.revision} {state.detail} | MLflow opens: {opens} | {done}", flush=True)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=30, help="kills per series")
    parser.add_argument("--seed", type=int, default=random.randrange(1 << 30))
    options = parser.parse_args()
    print(f"seed {options.seed}; {os.cpu_count()} CPUs, load average {os.getloadavg()}")
    rng = random.Random(options.seed)
    with tempfile.TemporaryDirectory(prefix="store-kills-") as folder:
        for what in ("create", "upgrade"):
            counts = series(what, options.kills, rng, Path(folder))
            print(f"{what}: " + ", ".join(f"{name} {n}" for name, n in sorted(counts.items())), flush=True)


if __name__ == "__main__":
    main()
