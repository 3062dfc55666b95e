"""Leaderboard tables from fake MLflow cell runs (no training): values equal aggregates computed directly from
the runs, the paired significance marks on a constructed case, and byte-stable regeneration."""

from __future__ import annotations

import statistics

import pandas as pd
import pytest

from rkdbench.compare import mcnemar_exact
from rkdbench.leaderboard import build_tables, collect_runs, per_example_loader, render
from rkdbench.tracking import Tracker

N = 100


def _run(tracker, experiment, tmp_path, method, seed, robust):
    run_id = tracker.create_run(experiment, f"{method}-{seed}", {
        "rkdbench.kind": "cell", "rkdbench.protocol": "toy", "rkdbench.protocol_hash": "h1",
        "rkdbench.method_variant": method, "rkdbench.method": method, "rkdbench.student": "cnn-small",
        "rkdbench.teacher": "t", "rkdbench.seed": str(seed), "rkdbench.flags": ""})
    clean = [True] * N
    tracker.log_metrics(run_id, {"test.clean_acc": 1.0, "test.aa_acc": sum(robust) / N,
                                 "test.pgd20_acc": min(1.0, sum(robust) / N + 0.05)})
    path = tmp_path / f"{method}-{seed}" / "per_example.parquet"
    path.parent.mkdir()
    pd.DataFrame({"selection": "last", "index": range(N), "clean": clean, "pgd20": robust, "aa": robust,
                  "worst": robust}).to_parquet(path, index=False)
    tracker.log_artifact(run_id, path)
    tracker.finish(run_id, "FINISHED")
    return run_id


@pytest.fixture
def store(tmp_path):
    tracker = Tracker(tmp_path / "results")
    experiment = tracker.experiment_id("toy")
    best = [True] * 80 + [False] * 20
    close = [True] * 77 + [False] * 3 + [True] * 1 + [False] * 19      # 3 only-best, 1 only-close
    far = [True] * 50 + [False] * 50                                     # 30 only-best, 0 only-far
    _run(tracker, experiment, tmp_path, "best", 0, best)
    _run(tracker, experiment, tmp_path, "close", 0, close)
    _run(tracker, experiment, tmp_path, "far", 0, far)
    _run(tracker, experiment, tmp_path, "far", 1, [True] * 60 + [False] * 40)  # far on seed 1 too: n = 2
    return tracker


def test_values_are_the_aggregates_of_the_runs(store):
    [table] = build_tables(collect_runs(store), "last")
    frame = table.frame.set_index("method_variant")
    assert list(table.frame["method_variant"]) == ["best", "close", "far"]  # sorted by AutoAttack
    assert frame.loc["far", "n"] == 2 and frame.loc["best", "n"] == 1
    assert frame.loc["far", "aa_mean"] == pytest.approx(statistics.mean([50.0, 60.0]))
    assert frame.loc["far", "aa_std"] == pytest.approx(statistics.stdev([50.0, 60.0]))
    assert pd.isna(frame.loc["best", "aa_std"])
    assert frame.loc["close", "aa_mean"] == pytest.approx(78.0)


def test_rows_not_significantly_different_from_the_best_are_marked(store):
    [table] = build_tables(collect_runs(store), "last", per_example_loader(store))
    p = dict(zip(table.frame["method_variant"], table.frame["p_vs_best"]))
    assert p["best"] == 1.0
    assert p["close"] == pytest.approx(mcnemar_exact(3, 1)) and p["close"] >= 0.05   # a tie
    assert p["far"] == pytest.approx(mcnemar_exact(30, 0)) and p["far"] < 1e-6      # only seed 0 is shared
    text = render(table, "md")
    close_line = next(line for line in text.splitlines() if "| close" in line)
    far_line = next(line for line in text.splitlines() if "| far" in line)
    assert "≈" in close_line and "≈" not in far_line


def test_regeneration_is_byte_stable(store):
    first = [render(t, fmt) for fmt in ("md", "csv") for t in build_tables(collect_runs(store), "last",
                                                                            per_example_loader(store))]
    second = [render(t, fmt) for fmt in ("md", "csv") for t in build_tables(collect_runs(store), "last",
                                                                             per_example_loader(store))]
    assert first == second
