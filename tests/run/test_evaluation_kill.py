"""A real process kill in the middle of a chunked evaluation (SIGKILL, no Python cleanup): the rerun reads the
saved chunks back, attacks only what is missing, and gives exactly the numbers of an uninterrupted evaluation.
And the evaluation batch size: the protocol's, or chosen once from free memory and then fixed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from rkdbench.config import load_protocol
from rkdbench.evaluation import batching
from rkdbench.evaluation.batching import CPU_BATCH_SIZE, batch_size_for, choose_batch_size, eval_batch_size
from rkdbench.evaluation.evaluate import evaluate
from rkdbench_plugins.attacks.apgd_ce import APGDCE

CHEAP = {
    "eval.n_examples": 24,
    "eval.chunk_size": 10,
    "eval.batch_size": 8,
    "threat.eps": 0.1,
    "eval.attacks": {"pgd20": {"attack": "pgd", "steps": 5}, "apgd": {"attack": "apgd-ce", "steps": 10}},
}

# The child evaluates the saved model; every apgd chunk announces itself and then sleeps before it is saved,
# so the parent can kill it while the second chunk is finished but not yet on disk.
CHILD = textwrap.dedent("""
    import sys, time, torch
    from torch import nn
    import rkdbench
    from rkdbench.config import load_protocol
    from rkdbench.evaluation.evaluate import evaluate
    from rkdbench_plugins.attacks.apgd_ce import APGDCE

    torch.set_num_threads(1)
    saved = torch.load(sys.argv[2], weights_only=True)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    model.load_state_dict(saved["model"])
    original = APGDCE.run

    def run(self, m, x, y):
        result = original(self, m, x, y)
        print("apgd chunk done", flush=True)
        time.sleep(1 if self._chunks_seen == 0 else 60)
        self.__class__._chunks_seen += 1
        return result

    APGDCE.run = run
    APGDCE._chunks_seen = 0
    evaluate(model.eval(), load_protocol("digits-linf", saved["overrides"]), saved["x"], saved["y"],
             state_dir=sys.argv[1])
""")


def test_sigkill_mid_evaluation_resumes_with_the_uninterrupted_numbers(tiny_mlp, tmp_path, monkeypatch):
    model, x, y = tiny_mlp(200)
    protocol = load_protocol("digits-linf", CHEAP)
    reference = evaluate(model, protocol, x, y, state_dir=tmp_path / "reference")
    torch.save({"model": model.state_dict(), "x": x, "y": y, "overrides": CHEAP}, tmp_path / "saved.pt")
    (tmp_path / "child.py").write_text(CHILD)
    state = tmp_path / "killed"
    child = subprocess.Popen(
        [sys.executable, str(tmp_path / "child.py"), str(state), str(tmp_path / "saved.pt")],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        done = 0
        for line in child.stdout:  # chunk 0 is saved after its sleep; the kill lands in chunk 1's sleep
            done += line.startswith("apgd chunk done")
            if done == 2:
                break
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=60) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
    assert sorted(p.name for p in (state / "apgd").glob("*.pt")) == ["chunk-0.pt"]
    assert len(list((state / "pgd20").glob("*.pt"))) == 3

    calls = []
    original = APGDCE.run
    monkeypatch.setattr(APGDCE, "run", lambda self, m, xb, yb: calls.append(len(yb)) or original(self, m, xb, yb))
    resumed = evaluate(model, protocol, x, y, state_dir=state)
    assert calls == [10, 4]  # only the chunks the kill lost
    assert all(torch.equal(resumed.per_example[k], reference.per_example[k]) for k in reference.per_example)
    assert {k: v for k, v in resumed.metrics.items() if not k.endswith("_seconds")} == {
        k: v for k, v in reference.metrics.items() if not k.endswith("_seconds")
    }


@pytest.mark.parametrize(
    "free, per_example, expected",
    [
        (16 * 2**30, 8 * 2**20, 1024),  # half of 16 GiB / 8 MiB = 1024 exactly
        (16 * 2**30, 9 * 2**20, 512),  # 910 fit: the power of two below
        (2**20, 2**20, 16),  # nothing fits: the floor
        (2**40, 1, 4096),  # everything fits: the cap
    ],
)
def test_batch_size_for_free_memory(free, per_example, expected):
    assert batch_size_for(free, per_example) == expected


def test_protocol_batch_size_is_used_as_is(tiny_mlp, tmp_path):
    model, x, _ = tiny_mlp(200)
    record = tmp_path / "batch_size.json"
    assert eval_batch_size(load_protocol("digits-linf", {"eval.batch_size": 8}), model, x, record) == 8
    assert not record.exists()


def test_chosen_batch_size_is_recorded_and_then_fixed(tiny_mlp, tmp_path, monkeypatch):
    model, x, y = tiny_mlp(200)
    protocol = load_protocol("digits-linf", {**CHEAP, "eval.batch_size": 0})
    first = evaluate(model, protocol, x, y, state_dir=tmp_path / "state")
    assert first.batch_size == CPU_BATCH_SIZE
    record = json.loads((tmp_path / "state" / "batch_size.json").read_text())
    assert record == {"batch_size": CPU_BATCH_SIZE, "chosen_from": "CPU default"}
    # a resumed run must reuse the choice even if memory (here: the chooser) would now say otherwise
    monkeypatch.setattr(batching, "choose_batch_size", lambda *a: (7, "changed"))
    assert eval_batch_size(protocol, model, x, tmp_path / "state" / "batch_size.json") == CPU_BATCH_SIZE
    assert eval_batch_size(protocol, model, x, tmp_path / "new" / "batch_size.json") == 7


def test_cuda_choice_uses_measured_memory(monkeypatch):
    monkeypatch.setattr(batching, "measure_bytes_per_example", lambda model, shape, device: 8 * 2**20)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (16 * 2**30, 80 * 2**30))
    size, how = choose_batch_size(torch.nn.Linear(2, 2), (2,), torch.device("cuda"))
    assert size == 1024 and "16.0 GiB free" in how and "8.0 MiB/example" in how
