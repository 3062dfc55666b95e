"""Every file the harness owns that a kill must not leave half-written goes through `rkdbench.atomic`: the
journal's delivery count, calibration caches, the eval batch-size record and teacher cards. Each is written once,
then a second write is SIGKILLed at a seeded point (after the data went to the temporary file, or just before
the rename); the first version must be intact, and the next write must succeed over the leftover."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

SEED = int(os.environ.get("RKDBENCH_KILL_SEED", random.randrange(1 << 30)))

# Runs `first`, then patches the kill point, then runs `second` (which never returns: the process is SIGKILLed)
HARNESS = """
import os, signal, sys
from pathlib import Path
folder = Path(sys.argv[1])
point = sys.argv[2]
{setup}
{first}
def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
setattr(os, point, die)
{second}
"""

CASES = {
    "journal-delivered": (
        "from rkdbench.tracking.journal import Journal\njournal = Journal(folder)",
        "journal.mark_delivered(1)",
        "journal.mark_delivered(2)",
        "journal.delivered",
    ),
    "calibration-cache": (
        "from rkdbench.cost.calibration.store import Calibration\n"
        "cache = Calibration({'device': 'test'}, path=folder / 'calibration.json')",
        "cache.train['a'] = {'seconds': 1.0}\ncache.save()",
        "cache.train['b'] = {'seconds': 2.0}\ncache.save()",
        "calibration.json",
    ),
    "eval-batch-size": (
        "import torch\nfrom torch import nn\nfrom rkdbench.evaluation.batching import eval_batch_size\n"
        "from rkdbench.config import load_protocol\n"
        "protocol = load_protocol('digits-linf', {'eval.batch_size': 0})\n"
        "model, x = nn.Linear(64, 10), torch.zeros(4, 64)",
        "",  # the record is written once, when the batch size is first chosen: the kill comes then
        "eval_batch_size(protocol, model, x, folder / 'eval_batch.json')",
        "eval_batch.json",
    ),
    "teacher-card": (
        "import rkdbench\nfrom rkdbench.teachers.model_dir import write_measured_card\n"
        "card = rkdbench.create('teacher', 'digits/Linf/rkdbench-cnn-large')",
        "write_measured_card(card, folder, {'id': card.name, 'clean': 0.9})",
        "write_measured_card(card, folder, {'id': card.name, 'clean': 0.1})",
        "digits/Linf/rkdbench-cnn-large.json",
    ),
}


def files_in(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` but the leftovers (`.<name>.*.tmp`), by path."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file() and p.suffix != ".tmp"}


def run_here(folder: Path, *snippets: str) -> None:
    """The same writes in this process, unkilled."""
    folder.mkdir(exist_ok=True)
    scope = {"folder": folder}
    for snippet in snippets:
        exec(snippet, scope)


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_write_killed_midway_leaves_the_previous_file_whole(tmp_path, case):
    setup, first, second, target = CASES[case]
    point = random.Random(f"{SEED}-{case}").choice(["fsync", "replace"])  # data written / just before the rename
    print(f"RKDBENCH_KILL_SEED={SEED}: killed at os.{point}")
    folder = tmp_path / "killed"
    folder.mkdir()
    script = HARNESS.format(setup=setup, first=first, second=second)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = subprocess.run([sys.executable, "-c", script, str(folder), point], env=env, capture_output=True)
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    assert len(list(folder.rglob(".*.tmp"))) == 1, f"seed {SEED}: the kill came elsewhere than at os.{point}"
    run_here(tmp_path / "first", setup, first)
    assert files_in(folder) == files_in(tmp_path / "first")  # exactly the first version (or nothing yet)
    run_here(folder, setup, second)  # the next writer is not disturbed by the leftover
    run_here(tmp_path / "second", setup, first, second)
    assert files_in(folder)[target] == files_in(tmp_path / "second")[target]
