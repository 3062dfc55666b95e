"""Shared fixtures: an isolated results/model dir, temporary plugins (llm/datasette style), and one tiny
digits teacher built once per test session with the harness's own `build_teacher`."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

import rkdbench
from rkdbench import plugins
from support.services import mlflow_server, postgres_uri, ray_address, tracking_server  # noqa: F401  (fixtures)
from support.stray_stores import REPOSITORY, stores_in, stray_message

TEACHER = "digits/Linf/rkdbench-cnn-large"


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
def register_plugin():
    """Register a temporary plugin object (module or class with hookimpls); unregistered afterwards."""
    names = []

    def register(obj, name):
        plugins.pm.register(obj, name=name)
        names.append(name)
        plugins.reset(keep_plugins=True)
        return obj

    yield register
    for name in names:
        if plugins.pm.has_plugin(name):
            plugins.pm.unregister(name=name)
    plugins.reset(keep_plugins=True)


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
    from rkdbench.teachers.build import build_teacher
    from rkdbench.teachers.model_dir import card_path

    model_dir = tmp_path_factory.mktemp("models")
    card = rkdbench.create("teacher", TEACHER)
    small = dataclasses.replace(card, recipe={**card.recipe, "set": {**card.recipe["set"], "train.epochs": 2}})
    build_teacher(small, model_dir, torch.device("cpu"), n_examples=10)
    # the small build stands in for the card's own recipe, so it is not reported stale
    measured_card = card_path(card, model_dir)
    measured_card.write_text(json.dumps({**json.loads(measured_card.read_text()), "recipe_hash": card.recipe_hash}))
    return model_dir
