"""Leaderboard columns for the precision, the worst-class accuracy and the transferability: values are the seeds'
aggregates, the worst-class column sits next to AutoAttack, a table mixing bf16 and fp32 rows marks them and says
so, and runs logged before these metrics existed still build a table without the columns."""

from __future__ import annotations

import pandas as pd
import pytest

from rkdbench.leaderboard import build_tables, collect_runs, render
from rkdbench.leaderboard.columns import run_precision
from rkdbench.leaderboard.shown import note, shown
from rkdbench.tracking import Tracker


def _runs(tmp_path, rows):
    """Cell runs of one protocol hash: (method, seed, extra metrics, tags, params)."""
    with pytest.MonkeyPatch.context() as env:
        env.delenv("MLFLOW_TRACKING_URI", raising=False)
        tracker = Tracker(tmp_path / "results")
    experiment = tracker.experiment_id("toy")
    for method, seed, metrics, tags, params in rows:
        run_id = tracker.create_run(
            experiment,
            f"{method}-{seed}",
            {
                "rkdbench.kind": "cell",
                "rkdbench.protocol": "toy",
                "rkdbench.protocol_hash": "h1",
                "rkdbench.method_variant": method,
                "rkdbench.student": "s",
                "rkdbench.teacher": "t",
                "rkdbench.seed": str(seed),
                **tags,
            },
        )
        if params:
            tracker.log_params(run_id, params)
        tracker.log_metrics(run_id, {"test.clean_acc": 0.9, "test.pgd20_acc": 0.6, "test.aa_acc": 0.5, **metrics})
        tracker.finish(run_id, "FINISHED")
    [table] = build_tables(collect_runs(tracker), "last")
    return table


def test_worst_class_and_transferability_columns_are_seed_means(tmp_path):
    def diag(worst: float, tas: float) -> dict[str, float]:
        return {
            "test.worst_class_aa_acc": worst,
            "test.worst_class_aa_class": 3.0,
            "test.worst_class_pgd20_acc": worst + 0.1,
            "test.transferability.aa": tas,
            "test.transferability.pgd20": tas / 2,
            "test.worst_class_clean_acc": 0.7,
        }

    table = _runs(
        tmp_path,
        [
            ("a", 0, diag(0.30, 0.8), {"rkdbench.precision": "fp32"}, None),
            ("a", 1, diag(0.40, 0.6), {"rkdbench.precision": "fp32"}, None),
        ],
    )
    assert table.attack_columns == ["clean", "pgd20", "aa"]  # worst_class_* are not attacks
    row = table.frame.iloc[0]
    assert row["worst_class_aa_mean"] == pytest.approx(35.0) and row["worst_class_aa_std"] == pytest.approx(
        7.0711, rel=1e-4
    )
    assert row["tas_aa_mean"] == pytest.approx(70.0) and row["tas_pgd20_mean"] == pytest.approx(35.0)
    headers = list(shown(table))
    assert headers.index("AutoAttack worst-class") == headers.index("AutoAttack") + 1
    assert {"TAS PGD-20", "TAS AutoAttack", "precision"} <= set(headers)
    assert shown(table)["AutoAttack worst-class"][0].text == "35.0 ± 7.1"
    assert shown(table)["precision"][0].text == "fp32" and "MIXES" not in note(table)
    csv = render(table, "csv")
    assert "worst_class_aa_mean" in csv.splitlines()[0] and "tas_aa_mean" in csv.splitlines()[0]


def test_runs_without_the_new_metrics_still_build_a_table(tmp_path):
    table = _runs(tmp_path, [("old", 0, {}, {}, None)])  # no precision tag, no params, no diagnostics
    headers = list(shown(table))
    assert not any("worst-class" in h or h.startswith("TAS") for h in headers)
    assert table.frame.iloc[0]["precision"] == "fp32"  # absent from the protocol = fp32
    assert "| old " in render(table, "md")


def test_a_table_mixing_bf16_and_fp32_marks_the_bf16_rows(tmp_path):
    auto = {"protocol.train.precision": "auto"}
    table = _runs(
        tmp_path,
        [
            ("gpu", 0, {}, {"rkdbench.device": "cuda:0"}, auto),
            ("cpu", 0, {}, {"rkdbench.device": "cpu"}, auto),
            ("tagged", 0, {}, {"rkdbench.precision": "bf16"}, None),
        ],
    )
    cells = {row: cell.text for row, cell in zip(table.frame["method_variant"], shown(table)["precision"])}
    assert cells == {"gpu": "bf16 †", "cpu": "fp32", "tagged": "bf16 †"}
    assert "MIXES bf16- AND fp32-TRAINED ROWS" in note(table)
    assert "bf16 †" in render(table, "md") and "MIXES" in render(table, "html")


def test_run_precision_from_tags_and_legacy_params():
    assert run_precision(pd.Series({"precision": "bf16"})) == "bf16"
    assert run_precision(pd.Series({"params.protocol.train.precision": "fp32"})) == "fp32"
    assert run_precision(pd.Series({"params.protocol.train.precision": "auto", "device": "cuda:1"})) == "bf16"
    assert (
        run_precision(pd.Series({"params.protocol.train.precision": "auto", "params.protocol.train.device": "cpu"}))
        == "fp32"
    )
    assert (
        run_precision(pd.Series({"params.protocol.train.precision": "auto", "params.protocol.train.device": "auto"}))
        == ""
    )  # cannot be told
