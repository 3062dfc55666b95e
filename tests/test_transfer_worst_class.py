"""Transferability (METHODS-2.md §2) and worst-class accuracy (§4) against hand-computed values: on hand-made
per-example results, and through `evaluate` with a teacher probe on a tiny fixed model and data (a teacher that
always answers class 0, so T(x') is known whatever the attack did); the probe's outputs are saved with the
evaluation's chunks and read back on resume."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from torch import nn

from rkdbench.config import load_protocol
from rkdbench.evaluation.evaluate import evaluate
from rkdbench.evaluation.selection_metrics import per_class_frame, selection_metrics
from rkdbench.evaluation.transfer import TeacherProbe, transfer_metrics
from rkdbench.evaluation.worst_class import per_class_table, worst_class_metrics

T = torch.tensor


def test_transferability_by_hand():
    y = T([0, 1, 2, 0, 1, 2])
    per_example = {
        "clean": T([1, 1, 1, 1, 0, 1]).bool(),  # s0
        "teacher_clean": T([1, 1, 0, 1, 1, 1]).bool(),  # t0
        "pgd20.student_pred": T([0, 2, 0, 1, 0, 2]),  # s1 = [1, 0, 0, 0, 0, 1]
        "pgd20.teacher_pred": T([0, 0, 0, 2, 1, 2]),  # t1 = [1, 0, 0, 0, 1, 1]
    }
    m = transfer_metrics(per_example, y, ["pgd20", "aa"])  # `aa` was not probed: no metric
    # fooled the student: examples 1, 2, 3, 4; of them the teacher is fooled on 1, 2, 3 -> 3/4
    assert m["transferability.pgd20"] == pytest.approx(3 / 4)
    # restricted to s0 and t0 (examples 0, 1, 3, 5): fooled the student: 1, 3; both fool the teacher -> 2/2
    assert m["transferability_clean.pgd20"] == pytest.approx(1.0)
    assert m["teacher_adv_acc.pgd20"] == pytest.approx(3 / 6)
    assert set(m) == {"transferability.pgd20", "transferability_clean.pgd20", "teacher_adv_acc.pgd20"}


def test_transferability_is_nan_when_nothing_fools_the_student():
    y = T([0, 1])
    per_example = {
        "clean": T([1, 1]).bool(),
        "teacher_clean": T([1, 1]).bool(),
        "aa.student_pred": T([0, 1]),
        "aa.teacher_pred": T([1, 0]),
    }
    m = transfer_metrics(per_example, y, ["aa"])
    assert math.isnan(m["transferability.aa"]) and m["teacher_adv_acc.aa"] == 0.0


def test_worst_class_by_hand_with_the_actual_class_counts():
    y = T([0, 0, 0, 1, 1, 2, 2, 2, 2])
    per_example = {"clean": T([1, 1, 1, 1, 1, 1, 1, 1, 0]).bool(), "aa": T([1, 1, 0, 1, 0, 1, 1, 0, 0]).bool()}
    table = per_class_table(per_example, y, ["clean", "aa"])
    assert table.to_dict("list") == {
        "class": [0, 1, 2],
        "n": [3, 2, 4],
        "clean_correct": [3, 2, 3],
        "aa_correct": [2, 1, 2],
    }
    m = worst_class_metrics(per_example, y, ["clean", "aa"])
    # aa per class: 2/3, 1/2, 2/4 -> the minimum 1/2, first reached by class 1; clean: 1, 1, 3/4 -> class 2
    assert (m["worst_class_aa_acc"], m["worst_class_aa_class"]) == (pytest.approx(0.5), 1.0)
    assert (m["worst_class_clean_acc"], m["worst_class_clean_class"]) == (pytest.approx(0.75), 2.0)


class AlwaysZero(nn.Module):
    """A 'teacher' that predicts class 0 for every input."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(T([5.0, 0.0, 0.0]))

    def forward(self, x):
        return self.bias.expand(x.shape[0], 3)


def tiny_case():
    torch.manual_seed(0)
    student = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    with torch.no_grad():
        student[1].weight.copy_(T([[4.0, 0, 0, 0], [0, 4.0, 0, 0], [0, 0, 4.0, 0]]))
        student[1].bias.zero_()
    x = torch.zeros(9, 1, 2, 2)
    y = T([0, 1, 2, 0, 1, 2, 0, 1, 2])
    for i, label in enumerate(y.tolist()):  # a margin that shrinks with i: the attack breaks the later points
        x[i, 0].view(-1)[label] = 0.05 + 0.1 * i
    protocol = load_protocol(
        "digits-linf",
        {
            "threat.eps": 0.3,
            "eval.n_examples": 0,
            "eval.batch_size": 4,
            "eval.chunk_size": 4,
            "eval.attacks": {
                "pgd20": {"attack": "pgd", "steps": 5, "step_size": 0.25, "init": "uniform", "loss": "ce"}
            },
        },
    )
    return student, x, y, protocol


def test_evaluate_with_a_teacher_probe_stores_predictions_and_gives_hand_checkable_metrics(tmp_path):
    student, x, y, protocol = tiny_case()
    probe = TeacherProbe(AlwaysZero(), batch_size=4)
    evaluation = evaluate(student, protocol, x, y, state_dir=tmp_path, probe=probe)
    pe = evaluation.per_example
    assert pe["teacher_clean"].tolist() == (y == 0).tolist()
    assert pe["pgd20.teacher_pred"].tolist() == [0] * 9  # the teacher's answer on every adversarial point
    s1 = pe["pgd20.student_pred"] == y
    assert s1.tolist() == pe["pgd20"].tolist()  # [S(x') = y] agrees with the attack's robust flag
    assert 0 < int((~s1).sum()) < 9, "the case must have broken and robust points"
    metrics = selection_metrics(evaluation, y)
    fooled = ~s1
    by_hand = int((fooled & (y != 0)).sum()) / int(fooled.sum())  # T(x') = 0: fooled exactly where y != 0
    assert metrics["transferability.pgd20"] == pytest.approx(by_hand)
    assert metrics["teacher_adv_acc.pgd20"] == pytest.approx(3 / 9)
    rates = [float(pe["pgd20"][y == c].float().mean()) for c in range(3)]
    assert metrics["worst_class_pgd20_acc"] == pytest.approx(min(rates))
    assert metrics["worst_class_pgd20_class"] == float(rates.index(min(rates)))
    assert "worst_class_worst_acc" in metrics and "worst_class_clean_acc" in metrics
    frame = per_class_frame({"last": evaluation}, y)
    assert list(frame.columns) == ["selection", "class", "n", "clean_correct", "pgd20_correct", "worst_correct"]
    assert frame["n"].tolist() == [3, 3, 3]

    # resumed from the saved chunks: the probe's values come back without attacking again
    again = evaluate(student, protocol, x, y, state_dir=tmp_path, probe=probe)
    for name in ("pgd20.student_pred", "pgd20.teacher_pred", "pgd20"):
        assert torch.equal(again.per_example[name], pe[name])
    # another teacher never reuses chunks saved with this one
    other = TeacherProbe(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)))
    assert other.identity != probe.identity
    assert evaluate(student, protocol, x, y, state_dir=tmp_path, probe=other).per_example[
        "pgd20.teacher_pred"
    ].shape == (9,)


def test_evaluate_without_a_probe_has_no_transferability():
    student, x, y, protocol = tiny_case()
    evaluation = evaluate(student, protocol, x, y)
    assert not any("." in name for name in evaluation.per_example) and "teacher_clean" not in evaluation.per_example
    metrics = selection_metrics(evaluation, y)
    assert not any(k.startswith("transferability") for k in metrics) and "worst_class_pgd20_acc" in metrics
    pd.testing.assert_frame_equal(
        per_class_frame({"last": evaluation}, y).drop(columns="selection"),
        per_class_table(evaluation.per_example, y, ["clean", "pgd20", "worst"]),
    )


def test_teacher_free_cells_use_the_protocols_teacher_or_say_why_not(tmp_path):
    from rkdbench.config import load_suite
    from rkdbench.run.cells import expand_cells
    from rkdbench.run.options import RunOptions
    from rkdbench.run.selections import reference_teacher

    cells = {c.method: c for c in expand_cells(load_suite("digits-quick"))}
    options = RunOptions(results=tmp_path, model_dir=tmp_path / "models")
    own = nn.Linear(2, 2)
    assert reference_teacher(cells["ard"], {"robust": own}, options, torch.device("cpu")) == (own, "")
    teacher, why = reference_teacher(cells["pgd-at"], {}, options, torch.device("cpu"))
    assert teacher is None
    assert "has no teacher" in why and "digits/Linf/rkdbench-cnn-large" in why and str(tmp_path / "models") in why
