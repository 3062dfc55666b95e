"""The budget's check and the expected maximum after n trials against values computed by hand."""

from __future__ import annotations

import itertools
import statistics

import pytest

from rkdbench.errors import ConfigError
from rkdbench.tuning.budget import (
    budget_curve,
    check_budget,
    expected_max_with_replacement,
    expected_max_without_replacement,
)

# Four scores given unsorted: sorted they are v(1..4) = 1, 2, 3, 4 and N = 4.
SCORES = [3.0, 1.0, 4.0, 2.0]


def test_dodge_with_replacement_by_hand():
    # weight of v(i) = (i/4)^n - ((i-1)/4)^n
    # n = 1: 1/4 each                            -> (1 + 2 + 3 + 4) / 4              = 2.5
    # n = 2: (2i - 1)/16 = 1, 3, 5, 7 (/16)        -> (1 + 6 + 15 + 28) / 16          = 50/16 = 3.125
    # n = 3: (i^3 - (i-1)^3)/64 = 1, 7, 19, 37     -> (1 + 14 + 57 + 148) / 64        = 220/64 = 3.4375
    # n = 4: (i^4 - (i-1)^4)/256 = 1, 15, 65, 175  -> (1 + 30 + 195 + 700) / 256      = 926/256 = 3.6171875
    # n = 8 (more draws than scores: fine with replacement): 1 - (3/4)^8 of the mass on v(4) and so on
    expected = [2.5, 3.125, 3.4375, 3.6171875]
    assert [expected_max_with_replacement(SCORES, n) for n in (1, 2, 3, 4)] == pytest.approx(expected, abs=1e-12)
    assert budget_curve(SCORES, "dodge") == pytest.approx(expected, abs=1e-12)
    by_hand_8 = sum(v * ((i / 4) ** 8 - ((i - 1) / 4) ** 8) for i, v in enumerate([1, 2, 3, 4], start=1))
    assert expected_max_with_replacement(SCORES, 8) == pytest.approx(by_hand_8) and 3.6171875 < by_hand_8 < 4


def test_tang_without_replacement_by_hand():
    # weight of v(i) = C(i-1, n-1) / C(4, n)
    # n = 1: 1/4 each                      -> 2.5
    # n = 2: C(i-1, 1)/6 = 0, 1, 2, 3 (/6)   -> (0 + 2 + 6 + 12) / 6 = 20/6 = 3.3333...
    # n = 3: C(i-1, 2)/4 = 0, 0, 1, 3 (/4)   -> (3 + 12) / 4         = 3.75
    # n = 4: only v(4)                     -> 4.0
    expected = [2.5, 20 / 6, 3.75, 4.0]
    assert [expected_max_without_replacement(SCORES, n) for n in (1, 2, 3, 4)] == pytest.approx(expected, abs=1e-12)
    assert budget_curve(SCORES) == pytest.approx(expected, abs=1e-12)


def test_tang_is_the_mean_maximum_over_subsets_with_ties():
    # three scores with a tie: subsets of 2 are {0.5, 0.5} -> 0.5, {0.5, 0.8} -> 0.8 twice: (0.5 + 0.8 + 0.8)/3 = 0.7
    assert expected_max_without_replacement([0.8, 0.5, 0.5], 2) == pytest.approx(0.7, abs=1e-12)
    scores = [0.61, 0.42, 0.77, 0.42, 0.58]
    for n in range(1, 6):
        brute = statistics.mean(max(c) for c in itertools.combinations(scores, n))
        assert expected_max_without_replacement(scores, n) == pytest.approx(brute, abs=1e-12)


def test_estimators_refuse_what_they_cannot_estimate():
    with pytest.raises(ValueError, match="allowed: 1 to 4"):
        expected_max_without_replacement(SCORES, 5)
    with pytest.raises(ValueError, match="no NaN"):
        expected_max_with_replacement([1.0, float("nan")], 1)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "12"])
def test_a_budget_must_be_a_positive_integer(bad):
    with pytest.raises(ConfigError, match=rf"--budget = {bad!r} is not allowed; allowed: an integer >= 1"):
        check_budget("--budget", bad)
    assert check_budget("--budget", 12) == 12
