"""Shared fixtures: an isolated results/model dir, temporary plugins (llm/datasette style), and one tiny
digits teacher built once per test session with the harness's own `build_teacher`."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch

import rkdbench
from rkdbench import plugins
from support.services import (  # noqa: F401  (fixtures: services)
    mlflow_server,
    postgres_uri,
    ray_address,
    slurm_cluster,
    tracking_server,
)
from support.stray_stores import REPOSITORY, stores_in, stray_message

pytest_plugins = ["rkdbench.pytest_plugin"]  # the fixtures plugin authors get: the suite uses them too

TEACHER = "digits/Linf/rkdbench-cnn-large"


def pytest_configure(config):
    """Tests send SIGINT (Ctrl-C) to the commands they start. A shell starts a background job (`pytest ... &`,
    nohup) with SIGINT ignored, children inherit that, and Python then installs no KeyboardInterrupt handler: the
    commands would ignore the tests' Ctrl-C (measured: a Ray driver ran its cell to the end). A handler set here
    becomes the default disposition in every child after its exec."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session", autouse=True)
def _no_store_left_here():
    """Fails the session (an error at the last test's teardown) when the run leaves an MLflow store or a default
    results folder in the repository root or the starting directory that was not there before (see
    `support.stray_stores`)."""
    folders = {REPOSITORY, Path.cwd()}
    before = stores_in(folders)
    yield
    left = stores_in(folders) - before
    if left:
        pytest.fail(stray_message(left), pytrace=False)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch, tmp_path):
    """No test sees the user's MLflow server, model dir or plugin filters."""
    for var in ("MLFLOW_TRACKING_URI", "RKDBENCH_STRICT_PLUGINS", "RKDBENCH_LOAD_PLUGINS", "RKDBENCH_DISABLE_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("RKDBENCH_MODEL_DIR", str(tmp_path / "no-models-here"))
    monkeypatch.setenv("RKDBENCH_CALIBRATION_DIR", str(tmp_path / "calibration"))  # no user's timings in a dry run
    # One intra-op thread: the tests' tensors are tiny, and two threads on a busy 2-core machine spin against
    # each other (measured: fab-t on 24 points 0.33 s with one thread, 14.5 s with two under load).
    torch.set_num_threads(1)
    load_broken = list(plugins._load_broken)  # a test's broken loose plugin must not leak into the next test
    yield
    plugins._load_broken[:] = load_broken
    plugins.reset(keep_plugins=True)


@pytest.fixture
def register_plugin(rkdbench_register):
    """Register a temporary plugin object (module or class with hookimpls); unregistered afterwards."""
    return rkdbench_register


def _train_tiny_mlp(steps: int):
    """A 64-16-10 MLP after `steps` plain-CE Adam steps on digits, and the first 24 test points: cheap enough
    for AutoAttack in seconds, trained enough that some points stay robust at eps 0.1."""
    import torch.nn.functional as F
    from torch import nn

    from rkdbench.attacks.base import preserved_rng

    splits = rkdbench.create("dataset", "digits").load(None, 0)
    (x_train, y_train), (x_test, y_test) = splits.train, splits.test
    with preserved_rng():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        i = torch.randint(0, len(y_train), (64,), generator=generator)
        loss = F.cross_entropy(model(x_train[i]), y_train[i])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), x_test[:24], y_test[:24]


@pytest.fixture(scope="session")
def tiny_mlp():
    """`tiny_mlp(steps)` -> (model, x, y), see `_train_tiny_mlp`; trained once per step count per session."""
    cache: dict[int, tuple] = {}

    def get(steps: int):
        if steps not in cache:
            torch.set_num_threads(1)
            cache[steps] = _train_tiny_mlp(steps)
        return cache[steps]

    return get


@pytest.fixture(scope="session")
def teacher_dir(tmp_path_factory) -> Path:
    """A model dir holding the digits teacher, built by the harness with a tiny recipe (2 epochs, AA on 10 points)."""
    from rkdbench.pytest_plugin import build_tiny_teacher  # here: imported by `pytest_plugins` first, for its asserts

    model_dir = tmp_path_factory.mktemp("models")
    build_tiny_teacher(TEACHER, model_dir, recipe_set={"train.epochs": 2}, n_examples=10)
    return model_dir


@pytest.fixture(scope="session")
def rkdbench_teacher_dir(teacher_dir) -> Path:
    """The pytest plugin's `rkdbench_cell` trains with the session's one digits teacher."""
    return teacher_dir
