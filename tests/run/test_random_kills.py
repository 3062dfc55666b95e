"""A kill at any moment is survivable: several `rkdbench run` processes on a fresh store, SIGKILLed and
interrupted (SIGINT) at seeded random moments, on purpose inside the store's creation (several times) and inside
evaluation, each replaced by a new worker. Checked from the store afterwards: one FINISHED run per cell, in the
run id it was created in; every per-epoch metric once per epoch and every final metric once; the leaderboard's n
equal to the seeds; no leftover temporary file; a final rerun trains nothing.

The seed is printed; `RKDBENCH_KILL_SEED=<seed>` replays a failure's kill schedule (the moments the workers
reach are the machine's)."""

from __future__ import annotations

import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from rkdbench.tracking import tracking_uri
from rkdbench.tracking.sqlite_store import inspect_store
from support.cli import HANG_GUARD_S
from support.processes import frozen

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("RKDBENCH_KILL_SEED", random.randrange(1 << 30)))
SEEDS = [0, 1, 2]
EPOCHS = 2
BUDGET = ["--set", f"train.epochs={EPOCHS}", "--set", "eval.n_examples=6", "--set", "train.val_pgd_steps=2"]
WORKERS = 3  # running at once
CREATION_KILLS = 3  # each lands inside the store's creation: the temporary file is there, the store is not
LATER_KILLS = 5  # at random moments of the run; every second one aimed at a worker that is evaluating a cell

RECORDER = """
import os
import rkdbench

@rkdbench.hookimpl
def run_started(run):
    with open(os.environ["RKDBENCH_TEST_STARTS"], "a") as fh:
        fh.write(f"{run.cell.key} {run.run_id} {os.getpid()}\\n")

@rkdbench.hookimpl
def epoch_finished(run, epoch, metrics):
    if epoch == run.cell.protocol.train.epochs - 1:  # evaluation comes next
        with open(os.environ["RKDBENCH_TEST_EVALUATING"], "a") as fh:
            fh.write(f"{os.getpid()}\\n")
"""


class Workers:
    """The worker processes, their logs, and every signal sent to them."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.results = tmp_path / "results"
        plugins = tmp_path / "plugins"
        plugins.mkdir()
        (plugins / "recorder.py").write_text(RECORDER)
        suite = tmp_path / "mini.toml"
        suite.write_text(
            f'[suite]\nname = "mini"\nprotocol = "digits-linf"\nmethods = ["pgd-at"]\nstudents = ["cnn-tiny"]\n'
            f"seeds = {SEEDS}\n"
        )
        self.command = [
            *(sys.executable, "-m", "rkdbench.cli", "--plugins-dir", str(plugins)),
            *("run", str(suite), "--results", str(self.results), *BUDGET),
        ]
        self.starts = tmp_path / "starts.txt"
        self.evaluating = tmp_path / "evaluating.txt"
        self.env = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "RKDBENCH_WAIT_POLL_SECONDS": "1",
            "RKDBENCH_TEST_STARTS": str(self.starts),
            "RKDBENCH_TEST_EVALUATING": str(self.evaluating),
        }
        self.processes: list[subprocess.Popen] = []
        self.signalled: dict[int, str] = {}  # pid -> where the signal landed

    def start(self, *extra: str) -> subprocess.Popen:
        log = open(self.tmp / f"worker-{len(self.processes)}.log", "w")  # noqa: SIM115 (closed with the process)
        process = subprocess.Popen([*self.command, *extra], env=self.env, stdout=log, stderr=subprocess.STDOUT)
        process.log = log
        self.processes.append(process)
        return process

    def alive(self) -> list[subprocess.Popen]:
        return [p for p in self.processes if p.poll() is None]

    def signal(self, pid: int, sig: signal.Signals, where: str) -> None:
        os.kill(pid, sig)
        self.signalled[pid] = f"{sig.name} {where}"
        self.start()  # a replacement

    def evaluating_since(self, seen: int) -> list[int]:
        """The pids that began evaluating a cell after the first `seen` such records."""
        lines = self.evaluating.read_text().split() if self.evaluating.exists() else []
        return [int(line) for line in lines[seen:]]

    def temporary_files(self) -> list[Path]:
        return sorted(self.results.glob(".mlflow.db.*.tmp"))

    def creator(self) -> int | None:
        """The pid holding `.store.lock` (Linux's /proc/locks), i.e. the one creating the store now."""
        try:
            inode = (self.results / ".store.lock").stat().st_ino
        except FileNotFoundError:
            return None
        for line in Path("/proc/locks").read_text().splitlines():
            fields = line.split()
            if fields[1] != "->" and int(fields[5].rsplit(":", 1)[1]) == inode:
                return int(fields[4])
        return None

    def wait(self, condition, what: str):
        """Until `condition()` is true (an event: no clock, which a loaded machine would only outrun); a test whose
        every worker has ended without it fails."""
        while not (found := condition()):
            assert self.alive(), f"seed {SEED}: no {what}, and every worker has ended; {self.signalled}"
            time.sleep(0.005)
        return found

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait()
            process.log.close()


@pytest.fixture
def workers(tmp_path):
    pool = Workers(tmp_path)
    yield pool
    pool.close()


def test_workers_killed_at_random_moments_leave_every_cell_finished_once(workers):
    rng = random.Random(SEED)
    print(f"RKDBENCH_KILL_SEED={SEED}")
    started = time.monotonic()
    results = workers.results
    for _ in range(WORKERS):
        workers.start()

    # inside the store's creation: the temporary file is there and the store is not, several times
    inside_creation = 0
    store = results / "mlflow.db"
    killed_files: set[Path] = set()  # a killed creator's temporary files, until the next holder removes them

    def creation_under_way():
        """The holder of the store lock that no signal has reached, and the temporary files it has made; or
        "finished" once the store is there. Files are told apart by the kill (taken while the killed creator was
        held still), never by a later look: the next holder may have made its own file by then."""
        if store.exists():
            return "finished"
        pid = workers.creator()
        made = set(workers.temporary_files()) - killed_files
        return (pid, made) if pid is not None and pid not in workers.signalled and made else None

    for _ in range(CREATION_KILLS):
        found = workers.wait(creation_under_way, "store creation")
        if found == "finished":
            break  # a creation finished unkilled: the count below says so
        pid, made = found
        time.sleep(rng.uniform(0.0, 0.3))  # the creation takes seconds
        sig = rng.choice([signal.SIGKILL, signal.SIGINT])
        with frozen(pid):  # held still: the signal lands inside the creation the check saw, however loaded
            if all(path.exists() for path in made) and not store.exists():
                inside_creation += 1
            killed_files |= set(workers.temporary_files())
            workers.signal(pid, sig, "in store creation")
        assert not store.exists() or inspect_store(store).kind == "current"
    assert inside_creation == CREATION_KILLS, f"seed {SEED}: {workers.signalled}"
    workers.wait(lambda: (results / "mlflow.db").exists(), "store")

    # later: anywhere, and aimed at workers that have just begun evaluating a cell
    in_evaluation = 0
    for k in range(LATER_KILLS):
        sig = rng.choice([signal.SIGKILL, signal.SIGINT])
        if k % 2:
            time.sleep(rng.uniform(0.0, 2.0))
            seen = len(workers.evaluating_since(0))  # wait for an evaluation that begins from now on
            fresh = workers.wait(lambda seen=seen: workers.evaluating_since(seen) or not workers.alive(), "evaluation")
            if fresh is True:
                break  # every worker is done
            time.sleep(rng.uniform(0.0, 0.5))
            targets = [p for p in workers.alive() if p.pid in fresh and p.pid not in workers.signalled]
            if targets:
                workers.signal(rng.choice(targets).pid, sig, "in evaluation")
                in_evaluation += 1
            continue
        time.sleep(rng.uniform(0.5, 6.0))
        alive = workers.alive()
        if not alive:
            break
        workers.signal(rng.choice(alive).pid, sig, "anywhere")

    for process in workers.processes:
        code = process.wait(timeout=HANG_GUARD_S)
        if process.pid not in workers.signalled:
            assert code == 0, f"seed {SEED}: worker {process.pid} exited {code}: {Path(process.log.name).read_text()}"
    took = time.monotonic() - started
    print(
        f"seed {SEED}: {len(workers.signalled)} signals ({inside_creation} inside store creation, {in_evaluation} "
        f"in evaluation), {len(workers.processes)} workers, {took:.0f} s: {sorted(workers.signalled.values())}"
    )

    # the store: one FINISHED run per cell, in the run id it was created in
    client = MlflowClient(tracking_uri(results))
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, filter_string="tags.`rkdbench.kind` = 'cell'")
    keys = Counter(run.data.tags["rkdbench.cell"] for run in runs)
    assert len(keys) == len(SEEDS) and set(keys.values()) == {1}, f"seed {SEED}: {keys}"
    assert {run.info.status for run in runs} == {"FINISHED"}, f"seed {SEED}"
    run_of = {run.data.tags["rkdbench.cell"]: run.info.run_id for run in runs}
    for line in workers.starts.read_text().splitlines():
        key, run_id, _ = line.split()
        assert run_of[key] == run_id, f"seed {SEED}: cell {key} was started in run {run_id}, not {run_of[key]}"
    # every per-epoch metric once per epoch, every final metric once (at step EPOCHS)
    for run in runs:
        for key in run.data.metrics:
            steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, key))
            assert steps in (list(range(EPOCHS)), [EPOCHS]), f"seed {SEED}: {key} of {run.info.run_id}: {steps}"
    assert not workers.temporary_files() and inspect_store(results / "mlflow.db").kind == "current"

    # the leaderboard counts each seed once; a rerun trains nothing
    board = subprocess.run(
        [sys.executable, "-m", "rkdbench.cli", "leaderboard", "--results", str(results), "--format", "csv"],
        env=workers.env,
        capture_output=True,
        text=True,
    )
    assert board.returncode == 0, board.stderr
    assert pd.read_csv(io.StringIO(board.stdout))["n"].tolist() == [len(SEEDS)]
    before = workers.starts.read_text()
    rerun = subprocess.run(
        [*workers.command, "--json"], env=workers.env, capture_output=True, text=True, timeout=HANG_GUARD_S
    )
    assert rerun.returncode == 0, rerun.stderr
    assert [cell["status"] for cell in json.loads(rerun.stdout)["cells"]] == ["skipped"] * len(SEEDS)
    assert workers.starts.read_text() == before
