"""The interleaved-measurement helper: pair order alternates, ratios pair up index by index, and the summary is
the median with min and max."""

from __future__ import annotations

import pytest
import torch

from rkdbench.cost.benchmarking import Comparison, Timing, interleave, interleave_many, machine_line, ratio_summary


def test_ratio_summary_is_median_min_max_of_pair_ratios():
    ratio = ratio_summary([2.0, 3.0, 10.0, 1.0], [1.0, 2.0, 4.0, 4.0])  # pair ratios 2, 1.5, 2.5, 0.25
    assert (ratio.median, ratio.low, ratio.high) == (1.75, 0.25, 2.5)
    assert str(ratio) == "1.750 (min 0.250, max 2.500)"
    with pytest.raises(ValueError, match="same non-zero number"):
        ratio_summary([1.0], [1.0, 2.0])


def test_interleave_alternates_order_and_counts_runs():
    calls: list[str] = []
    comparison = interleave(lambda: calls.append("a"), lambda: calls.append("b"), pairs=4, warmup=1)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b", "b", "a"]  # warm-up, then A B / B A alternating
    assert len(comparison.a) == len(comparison.b) == 4
    calls.clear()
    timings = interleave_many({n: (lambda n=n: calls.append(n)) for n in "xyz"}, rounds=2, warmup=0)
    assert calls == ["x", "y", "z", "z", "y", "x"] and [len(t) for t in timings.values()] == [2, 2, 2]


def test_comparison_pairs_wall_and_cpu_separately():
    comparison = Comparison(
        "engine",
        "plain",
        a=[Timing(2.0, 1.0), Timing(4.0, 3.0), Timing(3.0, 3.0)],
        b=[Timing(1.0, 1.0), Timing(4.0, 1.0), Timing(1.0, 2.0)],
    )
    assert comparison.wall.median == 2.0 and comparison.wall.low == 1.0 and comparison.wall.high == 3.0
    assert comparison.cpu.median == 1.5 and comparison.cpu.high == 3.0
    assert comparison.median_seconds("a") == Timing(3.0, 3.0)
    assert "engine / plain over 3 interleaved pairs: wall 2.000 (min 1.000, max 3.000)" in comparison.report()


def test_machine_line_names_threads_and_torch():
    line = machine_line()
    assert f"torch {torch.__version__}" in line and f"{torch.get_num_threads()} torch threads" in line
