"""The lines printed after a cell (`rkdbench run`) and after `rkdbench evaluate` name the accuracy under every attack
at once (`test.worst_acc`, stored under that name) "all attacks", so that nobody reads it as the leaderboard's
worst-class column; per-stage and worst-class accuracies stay in MLflow."""

from __future__ import annotations

from rkdbench.app.evaluate import EvaluationReport
from rkdbench.config import load_protocol, load_suite
from rkdbench.evaluation.evaluate import Evaluation
from rkdbench.run.cells import expand_cells
from rkdbench.run.train import _done_line

METRICS = {
    "test.clean_acc": 0.9,
    "test.pgd20_acc": 0.7,
    "test.aa_acc": 0.68,
    "test.aa.apgd-ce_acc": 0.69,
    "test.worst_acc": 0.66,
    "test.worst_class_aa_acc": 0.3,
}


def test_the_cell_line_says_all_attacks_not_worst():
    cell = expand_cells(load_suite("digits-quick"))[0]
    line = _done_line(cell, METRICS, [])
    assert line == f"done {cell.label}: clean 90.0%, pgd20 70.0%, aa 68.0%, all attacks 66.0%"


def test_the_evaluate_line_says_all_attacks_not_worst():
    metrics = {k.removeprefix("test."): v for k, v in METRICS.items() if "worst_class" not in k}  # evaluate()'s
    report = EvaluationReport("m.pt", load_protocol("digits-linf"), "r1", Evaluation(metrics, {}), 8)
    assert report.summary().startswith("m.pt: clean 90.0%, pgd20 70.0%, aa 68.0%, all attacks 66.0% on 8 test points")
