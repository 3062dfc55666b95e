"""Teacher cards, the RobustBench model-dir layout, verified loading, and the `teachers` commands."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import rkdbench
from rkdbench.errors import UserError
from rkdbench.teachers.load import load_teacher
from rkdbench.teachers.model_dir import card_path, teacher_path
from rkdbench.training.checkpoint import CheckpointError
from support.cli import cli

TEACHER = "digits/Linf/rkdbench-cnn-large"


def test_built_teacher_has_a_measured_card_and_loads_verified(teacher_dir):
    card = rkdbench.create("teacher", TEACHER)
    assert teacher_path(card, teacher_dir) == teacher_dir / "digits" / "Linf" / "rkdbench-cnn-large.pt"
    measured = json.loads(card_path(card, teacher_dir).read_text())
    assert measured["parameters"] == 94_186 and len(measured["sha256"]) == 64
    assert measured["protocol"] == "digits-linf" and measured["n_examples"] == 10
    for key in ("clean_acc", "pgd20_acc", "aa_acc"):
        assert 0.0 <= measured[key] <= 1.0
    model = load_teacher(card, teacher_dir)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 10)


def test_teachers_list_and_verify(teacher_dir, capsys):
    assert cli("teachers", "list", "--model-dir", str(teacher_dir)) == 0
    out = capsys.readouterr().out
    assert f"{TEACHER} " in out and "present" in out and "missing" in out  # the natural teacher is not built
    assert cli("teachers", "verify", TEACHER, "--model-dir", str(teacher_dir)) == 0
    assert "94,186 parameters" in capsys.readouterr().out


def test_tampered_checkpoint_is_refused(teacher_dir, tmp_path, capsys):
    copy = tmp_path / "models"
    shutil.copytree(teacher_dir, copy)
    path = teacher_path(rkdbench.create("teacher", TEACHER), copy)
    state = torch.load(path, weights_only=True)
    state["state_dict"]["classifier.bias"] += 1.0
    torch.save(state, path)
    assert cli("teachers", "list", "--model-dir", str(copy)) == 0
    assert "hash mismatch" in capsys.readouterr().out
    assert cli("teachers", "verify", TEACHER, "--model-dir", str(copy)) == 2
    assert "fails its sha256 check" in capsys.readouterr().err


def test_prefixed_state_dicts_load_strictly(teacher_dir, tmp_path):
    card = rkdbench.create("teacher", TEACHER)
    state = torch.load(teacher_path(card, teacher_dir), weights_only=True)["state_dict"]
    target = teacher_path(card, tmp_path)
    target.parent.mkdir(parents=True)
    torch.save({f"module.{k}": v for k, v in state.items()}, target)  # DataParallel-style keys, no card: no hash
    model = load_teacher(card, tmp_path)
    assert torch.equal(model.classifier.bias, state["classifier.bias"])
    card_path(card, tmp_path).unlink()  # the hash recorded on first use would refuse the edited file first
    torch.save({k: v for k, v in state.items() if k != "classifier.bias"}, target)
    with pytest.raises(
        CheckpointError, match=r"does not fit the DigitsCNN model: 1 missing key\(s\) \(first: classifier\.bias\)"
    ):
        load_teacher(card, tmp_path)


def test_a_teacher_without_recipe_cannot_be_built(tmp_path):
    import dataclasses

    from rkdbench.teachers.build import build_teacher

    card = dataclasses.replace(rkdbench.create("teacher", TEACHER), recipe=None, source="https://example.org/x.pt")
    with pytest.raises(UserError, match="no build recipe"):
        build_teacher(card, tmp_path, torch.device("cpu"))


def test_a_natural_teacher_recipe_keeps_its_last_epoch_not_the_best_validation_pgd_one(tmp_path):
    """Clean training has ~0 validation PGD accuracy at every epoch, so `best-val` would keep a barely trained
    epoch; the natural teacher's recipe asks for the last one, and the saved weights are that checkpoint's."""
    import dataclasses

    from rkdbench.teachers.build import build_teacher
    from rkdbench.teachers.model_dir import read_measured_card
    from rkdbench.training.checkpoint import load_verified

    card = rkdbench.create("teacher", "digits/Linf/rkdbench-cnn-large-standard")
    assert card.recipe["selection"] == "last" and "last epoch" in card.source
    tiny = dataclasses.replace(
        card,
        recipe={
            **card.recipe,
            "set": {
                **card.recipe["set"],
                "train.epochs": 3,
                "eval.attacks.aa.version": "custom",
                "eval.attacks.aa.attacks": ["apgd-ce"],
            },
        },
    )
    measured = build_teacher(tiny, tmp_path, torch.device("cpu"), n_examples=5)
    assert measured["selected_epoch"] == 2 == read_measured_card(tiny, tmp_path)["selected_epoch"]
    workdir = tmp_path / ".build" / card.name
    best = workdir / "best.pt"  # premise (seeded): best-val is absent or another epoch, so the two differ here
    assert not best.is_file() or load_verified(best)["epoch"] != 2
    last = load_verified(workdir / "last.pt")["model"]
    saved = torch.load(teacher_path(tiny, tmp_path), weights_only=True)["state_dict"]
    assert all(torch.equal(saved[k], last[k]) for k in saved)


def test_a_recipe_selection_outside_the_choices_is_refused():
    from rkdbench.errors import ConfigError
    from rkdbench.teachers.build import recipe_selection

    assert recipe_selection({}) == "best-val"
    with pytest.raises(ConfigError, match="selection = 'best' is not one of best-val, last"):
        recipe_selection({"selection": "best"})


def test_a_cached_teacher_built_from_another_recipe_is_stale(teacher_dir, tmp_path, capsys):
    from rkdbench.teachers.model_dir import card_path, teacher_status

    card = rkdbench.create("teacher", TEACHER)
    copy = tmp_path / "models"
    shutil.copytree(teacher_dir, copy)
    assert teacher_status(card, copy) == "present"
    measured = json.loads(card_path(card, copy).read_text())
    card_path(card, copy).write_text(json.dumps({**measured, "recipe_hash": "0" * 16}))  # an older recipe
    assert teacher_status(card, copy) == "stale recipe"
    # a run refuses it before anything is recorded, naming the rebuild command, rather than use it silently
    results = tmp_path / "results"
    assert (
        cli("run", "digits-quick", "--results", str(results), "--model-dir", str(copy), "--set", "train.epochs=1") == 2
    )
    err = capsys.readouterr().err
    assert "was built from an older recipe" in err and f"rkdbench teachers build {TEACHER}" in err
    assert len(err.strip().splitlines()) == 1


def test_a_teacher_build_never_resumes_epochs_trained_under_another_recipe(tmp_path):
    import dataclasses

    from rkdbench.teachers.build import build_teacher

    card = rkdbench.create("teacher", TEACHER)
    tiny = dataclasses.replace(
        card,
        recipe={
            **card.recipe,
            "set": {
                **card.recipe["set"],
                "train.epochs": 1,
                "eval.attacks.aa.version": "custom",
                "eval.attacks.aa.attacks": ["apgd-ce"],
            },
        },
    )
    workdir = tmp_path / ".build" / card.name
    workdir.mkdir(parents=True)
    (workdir / "recipe_hash").write_text("0" * 16)
    (workdir / "last.pt").write_bytes(b"epochs of another recipe")  # resuming it would fail to load
    build_teacher(tiny, tmp_path, torch.device("cpu"), n_examples=5)
    assert (workdir / "recipe_hash").read_text().strip() == tiny.recipe_hash
