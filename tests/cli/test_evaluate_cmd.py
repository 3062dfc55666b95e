"""`rkdbench evaluate`: a checkpoint file or a teacher id evaluated under a protocol alone, logged as an MLflow run of
kind `evaluation` (kept off the leaderboard), the teacher's measured card updated, and one-line errors with
exit code 2 for a missing checkpoint or a missing --architecture."""

from __future__ import annotations

import json
import tomllib
from importlib import resources

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import rkdbench
from rkdbench.attacks.base import preserved_rng
from rkdbench.config import load_protocol, to_toml
from rkdbench.leaderboard import collect_runs
from rkdbench.teachers.model_dir import card_path, teacher_path
from rkdbench.tracking import Tracker
from rkdbench.training.checkpoint import save_atomic
from support.cli import cli, runs_of

TEACHER = "digits/Linf/rkdbench-cnn-large"


@pytest.fixture
def protocol_file(tmp_path):
    """digits-linf with 10 test points and only a 5-step PGD: seconds, not minutes."""
    source = resources.files("rkdbench") / "configs" / "protocols" / "digits-linf.toml"
    data = tomllib.loads(source.read_text())
    data["eval"]["n_examples"] = 10
    data["eval"]["attacks"] = {"pgd20": {"attack": "pgd", "steps": 5, "step_size": 0.25}}
    path = tmp_path / "digits-linf-tiny.toml"
    path.write_text(to_toml(data))
    return path


def _model(name: str, steps: int):
    splits = rkdbench.create("dataset", "digits").load(None, 0)
    with preserved_rng():
        torch.manual_seed(0)
        model = rkdbench.create("architecture", name)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        for step in range(steps):
            i = torch.arange(step * 64, (step + 1) * 64) % len(splits.train[1])
            loss = F.cross_entropy(model(splits.train[0][i]), splits.train[1][i])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def test_evaluate_a_checkpoint_file(tmp_path, protocol_file, capsys):
    checkpoint = tmp_path / "student.pt"
    save_atomic({"model": _model("cnn-tiny", 30).state_dict(), "epoch": 3}, checkpoint)  # rkdbench's own layout
    results = tmp_path / "results"
    code = cli(
        "evaluate",
        str(checkpoint),
        "--protocol",
        str(protocol_file),
        "--results",
        str(results),
        "--architecture",
        "cnn-tiny",
        "--device",
        "cpu",
    )
    assert code == 0
    [line] = capsys.readouterr().out.strip().splitlines()
    assert line.startswith(f"{checkpoint}: clean ") and "pgd20 " in line and "on 10 test points" in line

    client, [run] = runs_of(results, "evaluation")
    tags, metrics, params = run.data.tags, run.data.metrics, run.data.params
    protocol = load_protocol(str(protocol_file))
    assert run.info.status == "FINISHED" and run.info.run_id in line
    assert client.get_experiment(run.info.experiment_id).name == "digits-linf"
    assert tags["rkdbench.kind"] == "evaluation" and tags["rkdbench.protocol_hash"] == protocol.hash
    assert tags["rkdbench.architecture"] == "cnn-tiny" and "rkdbench.flags" in tags
    assert metrics["test.n_examples"] == 10
    assert 0 <= metrics["test.pgd20_acc"] <= metrics["test.clean_acc"] <= 1 and "test.worst_acc" in metrics
    assert params["model.architecture"] == "cnn-tiny" and params["protocol.eval.n_examples"] == "10"
    local = client.download_artifacts(run.info.run_id, "per_example.parquet", str(tmp_path))
    assert pd.read_parquet(local)["pgd20"].mean() == pytest.approx(metrics["test.pgd20_acc"])
    assert collect_runs(Tracker(results)).empty  # an evaluation never lands on the leaderboard

    # the attack chunks were kept: the same evaluation again reads them back with the same numbers
    assert (
        cli(
            "evaluate",
            str(checkpoint),
            "--protocol",
            str(protocol_file),
            "--results",
            str(results),
            "--architecture",
            "cnn-tiny",
            "--device",
            "cpu",
        )
        == 0
    )
    _, runs = runs_of(results, "evaluation")
    assert len(runs) == 2 and runs[0].data.metrics["test.pgd20_acc"] == metrics["test.pgd20_acc"]


def test_evaluate_a_teacher_records_the_numbers_on_its_card(tmp_path, protocol_file, capsys):
    model_dir = tmp_path / "models"
    card = rkdbench.create("teacher", TEACHER)
    digest = save_atomic({"state_dict": _model("cnn-large", 0).state_dict()}, teacher_path(card, model_dir))
    card_path(card, model_dir).write_text(json.dumps({"id": TEACHER, "sha256": digest, "clean_acc": 0.99}))
    results = tmp_path / "results"
    assert (
        cli(
            "evaluate",
            TEACHER,
            "--protocol",
            str(protocol_file),
            "--results",
            str(results),
            "--model-dir",
            str(model_dir),
            "--n-examples",
            "8",
            "--device",
            "cpu",
        )
        == 0
    )
    _, [run] = runs_of(results, "evaluation")
    assert run.data.tags["rkdbench.teacher"] == TEACHER and run.data.metrics["test.n_examples"] == 8
    measured = json.loads(card_path(card, model_dir).read_text())
    assert measured["clean_acc"] == 0.99 and measured["sha256"] == digest  # existing keys are kept
    protocol = load_protocol(str(protocol_file), {"eval.n_examples": 8})
    entry = measured["evaluations"][protocol.hash]
    assert entry["run_id"] == run.info.run_id and entry["n_examples"] == 8
    assert entry["pgd20_acc"] == pytest.approx(run.data.metrics["test.pgd20_acc"])


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.pt", "--architecture", "cnn-tiny"], "is neither a registered teacher id nor an existing checkpoint"),
        (["{checkpoint}"], "give --architecture (one of: cnn-large, cnn-small, cnn-tiny"),
        (
            ["{checkpoint}", "--architecture", "cnn-small"],
            "(--architecture cnn-small) does not fit the DigitsCNN model: 16 wrongly shaped key(s)",
        ),
    ],
)
def test_bad_model_arguments_exit_2_with_one_line(tmp_path, protocol_file, capsys, args, message):
    checkpoint = tmp_path / "student.pt"
    torch.save(_model("cnn-tiny", 0).state_dict(), checkpoint)  # a bare state dict, no sidecar
    args = [a.format(checkpoint=checkpoint) for a in args]
    code = cli("evaluate", *args, "--protocol", str(protocol_file), "--results", str(tmp_path / "results"))
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "results" / "evaluations").exists()
