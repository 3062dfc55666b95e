"""The CIFAR teacher zoo: every card builds its architecture, the real AutoAttack example ResNet-18 loads
offline from pyautoattack's wheel and classifies a batch, trust-on-first-use sha256, RobustBench ensembles,
missing files explained, and fetching through a robustbench package whose `__init__` is broken."""

from __future__ import annotations

import sys

import pytest
import torch

import rkdbench
from rkdbench.cli import main
from rkdbench.errors import ConfigError, MissingTeacherError
from rkdbench.teachers.card import TeacherCard
from rkdbench.teachers.load import LogitEnsemble, load_teacher
from rkdbench.teachers.model_dir import bundled_path, read_measured_card, teacher_path, teacher_status
from rkdbench.teachers.robustbench_bridge import fetch_teacher
from rkdbench.training.checkpoint import CheckpointError
from rkdbench_plugins.teachers.cifar import ZOO

EXAMPLE = "cifar10/Linf/AutoAttack-example-R18"
REQUIRED = [
    "cifar10/Linf/Zhang2019Theoretically",
    "cifar10/Linf/Chen2021LTD_WRN34_10",
    "cifar10/Linf/Chen2021LTD_WRN34_20",
    "cifar10/Linf/Wu2020Adversarial",
    "cifar10/Linf/Sehwag2021Proxy_R18",
    "cifar10/Linf/Addepalli2022Efficient_RN18",
    "cifar10/Linf/Rebuffi2021Fixing_R18_ddpm",
    "cifar10/Linf/Gowal2020Uncovering_70_16",
    "cifar10/Linf/Standard",
    "cifar100/Linf/Chen2021LTD_WRN34_10",
    "cifar100/Linf/Gowal2020Uncovering",
    "cifar100/Linf/Addepalli2022Efficient_RN18",
    "cifar100/Linf/Rebuffi2021Fixing_R18_ddpm",
]


def cli(*args: str) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    return exit_info.value.code


def test_the_zoo_lists_the_required_teachers_with_cards():
    names = rkdbench.list_components("teacher")
    assert set(REQUIRED) <= set(names) and EXAMPLE in names
    for card in ZOO:
        assert card.reported["clean_acc"] > card.reported["aa_acc"] >= 0 and card.source and card.license
        assert card.num_classes == (100 if card.dataset == "cifar100" else 10)
    trades = rkdbench.create("teacher", "cifar10/Linf/Zhang2019Theoretically")
    assert trades.arch_kwargs == {"sub_block1": True} and trades.reported["eps"] == 0.031


@pytest.mark.parametrize("card", ZOO, ids=lambda c: c.name)
def test_every_zoo_architecture_builds_with_its_card_settings(card):
    with torch.device("meta"):
        model = rkdbench.create(
            "architecture",
            card.architecture,
            num_classes=card.num_classes,
            in_channels=card.in_channels,
            **card.arch_kwargs,
        )
        assert model(torch.empty(1, 3, 32, 32)).shape == (1, card.num_classes)
    assert sum(p.numel() for p in model.parameters()) > 10_000_000


def test_the_pyautoattack_resnet18_loads_offline_and_classifies(tmp_path):
    card = rkdbench.create("teacher", EXAMPLE)
    assert bundled_path(card).name == "model_test.pt" and teacher_status(card, tmp_path) == "present"
    model = load_teacher(card, tmp_path)
    assert sum(p.numel() for p in model.parameters()) == 11_173_962
    x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(x)
    assert logits.shape == (8, 10) and torch.isfinite(logits).all()
    assert torch.equal(logits, model(x))  # eval mode: deterministic, no BN statistics updated
    assert "unmeasured" in card.source


def test_a_model_dir_copy_wins_and_is_checked_against_the_pinned_hash(tmp_path):
    card = rkdbench.create("teacher", EXAMPLE)
    local = tmp_path / f"{EXAMPLE}.pt"
    local.parent.mkdir(parents=True)
    state = torch.load(bundled_path(card), weights_only=True, map_location="cpu")
    state["linear.bias"] += 1.0
    torch.save(state, local)
    assert teacher_path(card, tmp_path) == local and teacher_status(card, tmp_path) == "hash mismatch"
    with pytest.raises(CheckpointError, match="fails its sha256 check"):
        load_teacher(card, tmp_path)


@pytest.fixture
def small_zoo(register_plugin, tmp_path):
    """A zoo-style card (no recipe, no pinned hash) on a digits CNN, and an ensemble of two."""
    single = TeacherCard(
        name="digits/Linf/Zoo2099Test",
        architecture="cnn-tiny",
        dataset="digits",
        norm="Linf",
        eps=0.15,
        num_classes=10,
        in_channels=1,
        source="a test",
    )
    pair = TeacherCard(
        name="digits/Linf/Zoo2099Pair",
        architecture="cnn-tiny",
        dataset="digits",
        norm="Linf",
        eps=0.15,
        num_classes=10,
        in_channels=1,
        source="a test",
        ensemble=2,
    )

    class Plugin:
        @rkdbench.hookimpl
        def register_teachers(self, register):
            register(single)
            register(pair)

    register_plugin(Plugin(), "small-zoo")
    torch.manual_seed(0)
    members = [rkdbench.create("architecture", "cnn-tiny", num_classes=10, in_channels=1).eval() for _ in range(2)]
    folder = tmp_path / "models" / "digits" / "Linf"
    folder.mkdir(parents=True)
    torch.save(
        {"state_dict": {f"module.{k}": v for k, v in members[0].state_dict().items()}}, folder / "Zoo2099Test.pt"
    )
    for i, member in enumerate(members):
        torch.save(member.state_dict(), folder / f"Zoo2099Pair.pt_m{i}.pt")
    return single, pair, members, tmp_path / "models"


def test_sha256_is_recorded_on_first_use_and_verified_after(small_zoo):
    single, _, _, models = small_zoo
    assert read_measured_card(single, models) is None
    load_teacher(single, models)
    measured = read_measured_card(single, models)
    assert len(measured["sha256"]) == 64 and measured["sha256_recorded"] == "on first use"
    path = teacher_path(single, models)
    state = torch.load(path, weights_only=True)
    state["state_dict"]["module.classifier.bias"] += 1.0
    torch.save(state, path)  # a different file under the same name, e.g. a re-download
    assert teacher_status(single, models) == "hash mismatch"
    with pytest.raises(CheckpointError, match="fails its sha256 check"):
        load_teacher(single, models)


def test_html_page_and_truncated_files_name_the_file(small_zoo):
    single, _, _, models = small_zoo
    path = teacher_path(single, models)
    path.write_text("<!DOCTYPE html><html><body>Google Drive - Virus scan warning</body></html>")
    with pytest.raises(CheckpointError, match=f"{path}.*HTML page"):
        load_teacher(single, models)
    path.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError, match=f"checkpoint {path} cannot be loaded"):
        load_teacher(single, models)


def test_ensembles_average_their_members_logits(small_zoo):
    _, pair, members, models = small_zoo
    model = load_teacher(pair, models)
    assert isinstance(model, LogitEnsemble) and len(model.models) == 2
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        expected = (members[0](x) + members[1](x)) / 2
        assert torch.allclose(model(x), expected, atol=1e-6)
    assert set(read_measured_card(pair, models)["sha256_members"]) == {"0", "1"}
    (models / "digits" / "Linf" / "Zoo2099Pair.pt_m1.pt").unlink()
    assert teacher_status(pair, models) == "missing"
    with pytest.raises(MissingTeacherError, match=r"Zoo2099Pair\.pt_m1\.pt is missing"):
        load_teacher(pair, models)


def test_a_missing_zoo_teacher_says_where_the_file_goes_and_how_to_fetch_it(tmp_path, capsys):
    card = rkdbench.create("teacher", "cifar10/Linf/Zhang2019Theoretically")
    with pytest.raises(MissingTeacherError) as error:
        load_teacher(card, tmp_path)
    message = str(error.value)
    assert str(tmp_path / "cifar10" / "Linf" / "Zhang2019Theoretically.pt") in message
    assert "rkdbench teachers fetch cifar10/Linf/Zhang2019Theoretically" in message and "\n" not in message
    assert cli("teachers", "list", "--model-dir", str(tmp_path)) == 0
    out = capsys.readouterr().out
    assert any(
        line.startswith("cifar10/Linf/Zhang2019Theoretically") and line.endswith("missing") for line in out.splitlines()
    )
    assert any(line.startswith(EXAMPLE) and line.endswith("present") for line in out.splitlines())


FAKE_ROBUSTBENCH = {
    "__init__.py": "raise ImportError('the real robustbench __init__ breaks like this (pkg_resources)')\n",
    "model_zoo/__init__.py": "from .models import model_dicts\n",
    "model_zoo/enums.py": (
        "import enum\nclass BenchmarkDataset(enum.Enum):\n    cifar_10 = 'cifar10'\n"
        "class ThreatModel(enum.Enum):\n    Linf = 'Linf'\n"
    ),
    "model_zoo/models.py": (
        "from .enums import BenchmarkDataset, ThreatModel\n"
        "model_dicts = {BenchmarkDataset.cifar_10: {ThreatModel.Linf: {"
        "'AutoAttack-example-R18': {'gdrive_id': 'FAKE-ID'}}}}\n"
    ),
    "utils.py": (
        "import shutil\nCALLS = []\n"
        "def download_gdrive_new(gdrive_id, fname_save):\n"
        "    CALLS.append(gdrive_id)\n"
        "    import pyautoattack, pathlib\n"
        "    shutil.copy(pathlib.Path(pyautoattack.__file__).parent / 'examples' / 'model_test.pt', fname_save)\n"
    ),
}


def test_fetch_goes_through_a_stub_package_and_never_runs_robustbench_init(tmp_path, monkeypatch):
    for relative, text in FAKE_ROBUSTBENCH.items():
        path = tmp_path / "site" / "robustbench" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    for name in [m for m in sys.modules if m == "robustbench" or m.startswith("robustbench.")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(ImportError):
        __import__("robustbench")  # the package as such cannot be imported
    for name in [m for m in sys.modules if m == "robustbench" or m.startswith("robustbench.")]:
        monkeypatch.delitem(sys.modules, name)
    card = rkdbench.create("teacher", EXAMPLE)
    models = tmp_path / "models"
    paths = fetch_teacher(card, models)
    assert paths == [models / "cifar10" / "Linf" / "AutoAttack-example-R18.pt"] and paths[0].is_file()
    assert sys.modules["robustbench.utils"].CALLS == ["FAKE-ID"]
    fetch_teacher(card, models)  # present: never downloaded again
    assert sys.modules["robustbench.utils"].CALLS == ["FAKE-ID"]
    assert load_teacher(card, models)(torch.rand(1, 3, 32, 32)).shape == (1, 10)
    unknown = rkdbench.create("teacher", "cifar10/Linf/Zhang2019Theoretically")
    with pytest.raises(ConfigError, match="not in the installed robustbench's model zoo"):
        fetch_teacher(unknown, models)


def test_fetch_without_robustbench_names_the_extra(tmp_path, monkeypatch):
    import importlib.util

    for name in [m for m in sys.modules if m == "robustbench" or m.startswith("robustbench.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ConfigError, match=r"rkdbench\[robustbench\]"):
        fetch_teacher(rkdbench.create("teacher", "cifar10/Linf/Zhang2019Theoretically"), tmp_path)


def test_example_teacher_clean_accuracy_on_real_cifar10_when_present():
    """Runs only where real CIFAR-10 files are (`$RKDBENCH_DATA_DIR/cifar-10-batches-py`); none are on the CI
    machine, so the card says `unmeasured` and `rkdbench evaluate` is how its numbers get measured."""
    import os
    from pathlib import Path

    root = Path(os.environ.get("RKDBENCH_REAL_DATA_DIR", "/nonexistent"))
    if not (root / "cifar-10-batches-py" / "test_batch").is_file():
        pytest.skip("no real CIFAR-10 under $RKDBENCH_REAL_DATA_DIR (set it to a torchvision data folder to run)")
    x, y = rkdbench.create("dataset", "cifar10").load(str(root), 0).test
    model = load_teacher(rkdbench.create("teacher", EXAMPLE), root / "no-models")
    with torch.no_grad():
        accuracy = (model(x[:1000]).argmax(1) == y[:1000]).float().mean().item()
    assert accuracy > 0.5  # a trained CIFAR-10 classifier, not noise (chance is 0.1)
