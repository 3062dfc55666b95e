"""Exactly N finished trials over worker processes sharing one sqlite study (`trial_worker.py`: the real storage,
heartbeat, claim and cell lease, a cheap stand-in for training): two workers at once, a worker SIGKILLed inside a
trial (retried by the heartbeat, its cell resumed, not counted twice), a worker interrupted (requeued at the next
start), and a rerun after completion (does nothing)."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from trial_worker import DEFAULTS, EPOCHS, open_test_study

from rkdbench.tuning.study import DEFAULTS_ORIGIN, VERDICT, origin

WORKER = Path(__file__).with_name("trial_worker.py")
pytestmark = pytest.mark.slow


def _worker(results: Path, budget: int, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(WORKER.parent)}
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(results), str(budget), *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(process: subprocess.Popen, timeout: float = 120) -> dict:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def _trials(results: Path) -> list:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return open_test_study(results).get_trials(deepcopy=False)


def _complete(trials: list) -> list:
    return [t for t in trials if t.state == TrialState.COMPLETE]


def _epochs(results: Path) -> collections.Counter:
    """(cell key, epoch) -> how many times it was computed."""
    lines = (results / "epochs.log").read_text().splitlines()
    return collections.Counter(tuple(line.split()[:2]) for line in lines)


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request, monkeypatch):
    """The study storage the workers share: `<results>/optuna.db`, or a PostgreSQL database
    ($RKDBENCH_STUDY_STORAGE, which the workers inherit)."""
    if request.param == "postgresql":
        monkeypatch.setenv("RKDBENCH_STUDY_STORAGE", request.getfixturevalue("postgres_uri"))
    return request.param


def test_two_workers_finish_exactly_the_budget_and_trial_0_is_the_recipe(tmp_path, storage):
    budget = 8
    workers = [_worker(tmp_path, budget), _worker(tmp_path, budget)]
    for worker in workers:
        assert _finish(worker)["finished"] == budget
    trials = _trials(tmp_path)
    complete = _complete(trials)
    assert len(complete) == budget  # not one more, whatever the race at the end
    assert len({origin(t) for t in complete}) == budget
    assert len({tuple(sorted(t.params.items())) for t in complete}) == budget  # no Sobol point drawn twice
    assert all(t.state == TrialState.COMPLETE or t.user_attrs.get(VERDICT) for t in trials)  # the rest ran nothing
    zero = min(trials, key=lambda t: t.number)
    assert zero.number == 0 and origin(zero) == DEFAULTS_ORIGIN and zero.params == DEFAULTS
    assert sum(origin(t) == DEFAULTS_ORIGIN for t in trials) == 1  # enqueued once for two workers
    assert max(_epochs(tmp_path).values()) == 1  # every epoch of every cell computed once
    # a rerun after completion does nothing: no new trial
    assert _finish(_worker(tmp_path, budget))["finished"] == budget
    assert len(_trials(tmp_path)) == len(trials)


def test_a_killed_workers_trial_is_retried_and_its_cell_resumed_not_counted_twice(tmp_path):
    budget = 5
    marker = tmp_path / "hung"
    doomed = _worker(tmp_path, budget, "--hang-on", "3", "--marker", str(marker))
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert doomed.poll() is None and time.monotonic() < deadline, doomed.stderr.read() if doomed.stderr else ""
        time.sleep(0.05)
    hung = int(marker.read_text())
    survivor = _worker(tmp_path, budget)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    assert _finish(survivor)["finished"] == budget
    trials = _trials(tmp_path)
    complete = _complete(trials)
    assert len(complete) == budget and len({origin(t) for t in complete}) == budget
    killed = next(t for t in trials if t.number == hung)
    assert killed.state == TrialState.FAIL  # failed by the heartbeat, not left running
    retry = next(t for t in complete if origin(t) == str(hung))  # ... and finished under a new number
    assert retry.number != hung and retry.params == killed.params
    epochs = _epochs(tmp_path)
    assert max(epochs.values()) == 1  # the retried cell resumed at epoch 1: epoch 0 was not computed again
    cells = collections.Counter(key for key, _ in epochs)
    assert sorted(cells.values()) == [EPOCHS] * len(cells)  # and every cell trained all its epochs


def test_an_interrupted_trial_is_requeued_by_the_next_start(tmp_path):
    budget = 4
    interrupted = _worker(tmp_path, budget, "--interrupt-on", "2")
    interrupted.communicate(timeout=120)
    assert interrupted.returncode != 0  # Ctrl-C ends the worker
    failed = [t for t in _trials(tmp_path) if t.state == TrialState.FAIL]
    assert len(failed) == 1 and VERDICT not in failed[0].user_attrs
    assert _finish(_worker(tmp_path, budget))["finished"] == budget
    complete = _complete(_trials(tmp_path))
    assert len(complete) == budget
    assert any(origin(t) == str(failed[0].number) and t.params == failed[0].params for t in complete)
    assert max(_epochs(tmp_path).values()) == 1
