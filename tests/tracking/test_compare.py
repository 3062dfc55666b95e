"""`rkdbench compare`: the exact McNemar test and the paired Wald interval against hand-computed values, and the
command on two fake MLflow cell runs (no training)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from rkdbench.cli import main
from rkdbench.leaderboard.compare import mcnemar_exact, paired_difference_ci
from rkdbench.tracking import Tracker

Z95 = 1.959963984540054


def test_mcnemar_exact_matches_the_binomial_tail():
    assert mcnemar_exact(1, 9) == 0.021484375  # 2 * (C(10,0) + C(10,1)) / 2^10 = 22 / 1024
    assert mcnemar_exact(9, 1) == mcnemar_exact(1, 9)
    assert mcnemar_exact(0, 5) == 0.0625  # 2 / 2^5
    assert mcnemar_exact(5, 5) == 1.0
    assert mcnemar_exact(3, 4) == 1.0  # 2 * 64 / 128: capped at 1
    assert mcnemar_exact(0, 0) == 1.0
    assert 0 < mcnemar_exact(400, 600) < 1e-9  # C(1000, k) overflows a float: exact integers until the division
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 3)


def test_paired_difference_ci_is_the_wald_interval_on_the_differences():
    # 10 points: 3 only A gets right, 1 only B, 4 both, 2 neither
    a = np.array([1, 1, 1, 0, 1, 1, 1, 1, 0, 0], dtype=bool)
    b = np.array([0, 0, 0, 1, 1, 1, 1, 1, 0, 0], dtype=bool)
    difference, low, high = paired_difference_ci(a, b)
    half = Z95 * math.sqrt(4 - 2**2 / 10) / 10  # sqrt((n10 + n01) - (n10 - n01)^2 / n) / n
    assert difference == pytest.approx(0.2)
    assert (low, high) == pytest.approx((0.2 - half, 0.2 + half))
    assert half == pytest.approx(Z95 * np.std(a.astype(int) - b.astype(int)) / math.sqrt(10))  # same thing
    narrower = paired_difference_ci(a, b, level=0.9)
    assert low < narrower[1] < narrower[2] < high
    assert paired_difference_ci(a, a) == (0.0, 0.0, 0.0)
    assert paired_difference_ci([True] * 5, [False] * 5) == (1.0, 1.0, 1.0)  # clipped to [-1, 1]
    with pytest.raises(ValueError):
        paired_difference_ci(a, b[:5])


def _frame(aa: list[bool]) -> pd.DataFrame:
    """per_example.parquet as the runner writes it: selection, index, clean, attack labels..., worst."""
    n = len(aa)
    rows = []
    for selection in ("last", "best-val"):
        rows.append(
            pd.DataFrame(
                {"selection": selection, "index": range(n), "clean": [True] * n, "pgd20": aa, "aa": aa, "worst": aa}
            )
        )
    return pd.concat(rows, ignore_index=True)


def _cell_run(tracker: Tracker, experiment_id: str, name: str, protocol_hash: str, aa: list[bool], tmp_path) -> str:
    run_id = tracker.create_run(experiment_id, name, {"rkdbench.kind": "cell", "rkdbench.protocol_hash": protocol_hash})
    path = tmp_path / name / "per_example.parquet"
    path.parent.mkdir()
    _frame(aa).to_parquet(path, index=False)
    tracker.log_artifact(run_id, path)
    tracker.finish(run_id, "FINISHED")
    return run_id


@pytest.fixture
def store(tmp_path):
    """A results folder with three cell runs: A and B under one protocol (40 points, A only right on 1, B only
    on 9), C under another."""
    results = tmp_path / "results"
    tracker = Tracker(results)
    experiment = tracker.experiment_id("digits-linf-test")
    a = [True] * 20 + [True] + [False] * 9 + [False] * 10
    b = [True] * 20 + [False] + [True] * 9 + [False] * 10
    runs = {
        "A": _cell_run(tracker, experiment, "A", "hash-1", a, tmp_path),
        "B": _cell_run(tracker, experiment, "B", "hash-1", b, tmp_path),
        "C": _cell_run(tracker, experiment, "C", "hash-2", b, tmp_path),
    }
    return results, runs


def _cli(capsys, *args) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", *args])
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def test_compare_reports_accuracies_interval_and_mcnemar(store, capsys):
    results, runs = store
    code, out, _ = _cli(capsys, runs["A"], runs["B"], "--results", str(results), "--json")
    assert code == 0
    report = json.loads(out)
    assert (report["n"], report["only_a"], report["only_b"]) == (40, 1, 9)
    assert report["accuracy_a"] == pytest.approx(21 / 40) and report["accuracy_b"] == pytest.approx(29 / 40)
    assert report["difference"] == pytest.approx(-0.2)
    half = Z95 * math.sqrt(10 - 8**2 / 40) / 40
    assert (report["ci_low"], report["ci_high"]) == pytest.approx((-0.2 - half, -0.2 + half))
    assert report["mcnemar_p"] == 0.021484375
    assert (report["attack"], report["selection"], report["protocol_hash"]) == ("aa", "last", "hash-1")

    code, out, _ = _cli(capsys, runs["A"], runs["B"], "--results", str(results), "--selection", "best-val")
    assert code == 0
    assert "52.50%" in out and "72.50%" in out and "-20.00 points" in out and "p = 0.02148" in out


def test_compare_refuses_different_protocols_and_unknown_columns(store, capsys):
    results, runs = store
    code, _, err = _cli(capsys, runs["A"], runs["C"], "--results", str(results))
    assert code == 2 and "different protocols" in err and "hash-1" in err and "hash-2" in err
    code, _, err = _cli(capsys, runs["A"], runs["B"], "--results", str(results), "--attack", "square")
    assert code == 2 and "'square'" in err and "aa" in err
    code, _, err = _cli(capsys, runs["A"], "0" * 32, "--results", str(results))
    assert code == 2 and "no MLflow run" in err


def test_compare_without_a_store_is_a_user_error(tmp_path, capsys):
    code, _, err = _cli(capsys, "a", "b", "--results", str(tmp_path / "nothing"))
    assert code == 2 and "no MLflow store" in err
    assert not (tmp_path / "nothing").exists()  # reading never creates a store
