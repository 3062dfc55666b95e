"""The run package's seams: a cell's method object is built once (expansion, dry run and training all read
it), a cell sent to another process rebuilds it once there, and `Trainer.fit()` names the checkpoints it wrote
and the numerics it trained in."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

import rkdbench
from rkdbench.config import load_protocol, load_suite
from rkdbench.contracts.build import fresh_method, method_of
from rkdbench.data import Splits
from rkdbench.run.cells import expand_cells
from rkdbench.tracking import Tracker, schema
from rkdbench.training.engine import Trainer, TrainSetup

TINY = ["--set", "train.epochs=1", "--set", "eval.n_examples=6", "--set", "train.val_pgd_steps=1"]


class _Counting:
    """A plugin registering `counted-pgd-at`: PGD-AT whose constructor counts its calls."""

    def __init__(self) -> None:
        base = type(rkdbench.create("method", "pgd-at"))

        class Counted(base):
            name = "counted-pgd-at"
            built = 0

            def __init__(self, **overrides):
                Counted.built += 1
                super().__init__(**overrides)

        self.method = Counted

    @rkdbench.hookimpl
    def register_methods(self, register):
        register(self.method)


@pytest.fixture
def counted(register_plugin):
    return register_plugin(_Counting(), "counting-method").method


def _suite(tmp_path, seeds=(0, 1)) -> str:
    path = tmp_path / "counted.toml"
    path.write_text(
        '[suite]\nname = "counted"\nprotocol = "digits-linf"\nmethods = ["counted-pgd-at"]\n'
        f'students = ["cnn-tiny"]\nseeds = {list(seeds)}\n'
        "[suite.method_params.counted-pgd-at]\nattack_steps = 2\n"
    )
    return str(path)


def _cli(*args: str) -> int:
    from rkdbench.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    return exit_info.value.code


def test_cells_carry_the_one_method_object_their_key_describes(tmp_path, counted):
    cells = expand_cells(load_suite(_suite(tmp_path)))
    assert counted.built == 1 and len(cells) == 2  # one object for the method, carried by both its cells
    method = method_of(cells[0])
    assert method is cells[1].built_method and method.attack.steps == 2  # the suite's override
    assert cells[0].method_params == method.describe()
    copy = fresh_method(cells[0])
    assert copy is not method and copy.describe() == method.describe() and counted.built == 1


def test_a_cell_sent_to_another_process_rebuilds_its_method_once(tmp_path, counted):
    [cell] = expand_cells(load_suite(_suite(tmp_path, seeds=(0,))))
    arrived = pickle.loads(pickle.dumps(cell))  # as the --workers and Ray executors send it
    assert arrived.built_method is None and arrived.key == cell.key and arrived == cell
    assert counted.built == 1
    method = method_of(arrived)
    assert method_of(arrived) is method and counted.built == 2 and method.describe() == cell.method_params


@pytest.mark.slow
def test_dry_run_and_training_build_no_further_method_object(tmp_path, counted, capsys):
    suite = _suite(tmp_path)
    assert _cli("run", suite, *TINY, "--dry-run", "--json") == 0
    capsys.readouterr()
    assert counted.built == 1  # the key and the cost read the same object
    assert _cli("run", suite, *TINY, "--results", str(tmp_path / "results"), "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert [cell["status"] for cell in summary["cells"]] == ["finished", "finished"]
    assert counted.built == 2  # one more expansion; neither cell's training built its own
    # each cell logged its wall times: the next dry run on this store predicts its kind from them
    runs = Tracker(tmp_path / "results").search_runs(schema.finished_cells())
    assert len(runs) == 2
    for run in runs:
        assert run.data.metrics[schema.CELL_TRAIN_SECONDS] > 0 and run.data.metrics[schema.CELL_EVAL_SECONDS] > 0
    assert {run.data.tags[schema.THREADS] for run in runs} == {str(torch.get_num_threads())}
    assert _cli("run", suite, *TINY, "--dry-run", "--json", "--results", str(tmp_path / "results")) == 0
    planned = json.loads(capsys.readouterr().out)["cells"]
    assert [cell["predicted_seconds"]["source"] for cell in planned] == ["learned", "learned"]
    assert planned[0]["predicted_seconds"]["basis"].startswith("2 finished runs on ")


def _trainer(workdir, **settings) -> Trainer:
    protocol = load_protocol(
        "digits-linf", {"train.epochs": 2, "train.batch_size": 16, "train.val_pgd_steps": 1, **settings}
    )
    generator = torch.Generator().manual_seed(1)
    pair = lambda n: (torch.rand(n, 3, 8, 8, generator=generator), torch.randint(0, 10, (n,), generator=generator))  # noqa: E731
    torch.manual_seed(0)
    student = rkdbench.create("architecture", "cnn-tiny", num_classes=10, in_channels=3)
    return Trainer(
        TrainSetup(
            protocol,
            rkdbench.create("method", "pgd-at", attack_steps=1),
            student,
            {},
            Splits(pair(32), pair(8), pair(8), 10),
            0,
            torch.device("cpu"),
            workdir,
        )
    )


@pytest.mark.parametrize(
    "settings, precision, channels_last, averaged",
    [
        ({}, "fp32", False, False),
        (
            {
                "train.precision": "bf16",
                "train.channels_last": "on",
                "train.swa_start": 1,
                "eval.selections": ["last", "swa"],
            },
            "bf16",
            True,
            True,
        ),
    ],
)
def test_fit_names_its_checkpoints_and_precision(tmp_path, settings, precision, channels_last, averaged):
    trainer = _trainer(tmp_path, **settings)
    assert not trainer.resumes
    outcome = trainer.fit()
    assert (outcome.precision, outcome.channels_last) == (precision, channels_last)
    assert outcome.last_path == tmp_path / "last.pt" and outcome.last_path.is_file()
    assert outcome.best_path == tmp_path / "best-val.pt"
    assert torch.load(outcome.best_path, weights_only=True)["epoch"] == outcome.best_epoch
    if averaged:
        assert outcome.swa_path == tmp_path / "swa.pt" and torch.load(outcome.swa_path, weights_only=True)["count"] == 1
    else:
        assert outcome.swa_path is None and not (tmp_path / "swa.pt").exists()
    again = _trainer(tmp_path, **settings)
    assert again.resumes and again.fit().resumed_from == 2  # nothing left to train: the same files, named again


LOOSE_METHOD = """
import rkdbench

Base = type(rkdbench.create("method", "pgd-at"))


class Loose(Base):
    name = "loose-pgd-at"


@rkdbench.hookimpl
def register_methods(register):
    register(Loose)
"""

WORKER = """
import pickle, sys
from rkdbench.plugins import load_plugins_dir
from rkdbench.contracts.build import method_of

cell = pickle.loads(open(sys.argv[2], "rb").read())  # as a worker gets it: before its plugins are loaded
load_plugins_dir(sys.argv[1])
print(type(method_of(cell)).__name__, cell.key)
"""


def test_a_loose_plugin_methods_cell_reaches_a_fresh_process(tmp_path):
    """What `--workers` and Ray do: the cell is unpickled before the worker loads `--plugins-dir`, whose classes
    do not exist until then; it must arrive without its method object and build it afterwards."""
    import subprocess
    import sys

    from rkdbench import plugins
    from rkdbench.plugins import load_plugins_dir, pm

    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "loose_method.py").write_text(LOOSE_METHOD)
    load_plugins_dir(folder)
    try:
        suite = tmp_path / "loose.toml"
        suite.write_text(
            '[suite]\nname = "loose"\nprotocol = "digits-linf"\nmethods = ["loose-pgd-at"]\n'
            'students = ["cnn-tiny"]\nseeds = [0]\n'
        )
        [cell] = expand_cells(load_suite(str(suite)))
        (tmp_path / "cell.pickle").write_bytes(pickle.dumps(cell))
        done = subprocess.run(
            [sys.executable, "-c", WORKER, str(folder), str(tmp_path / "cell.pickle")],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.split() == ["Loose", cell.key]
    finally:
        pm.unregister(name="plugins-dir:loose_method")
        plugins._origins.pop("plugins-dir:loose_method", None)
