"""The tuning budget: its check, and the expected best validation score after n trials (the budget curve).

With the N finished trials' scores sorted v(1) <= ... <= v(N), the expected maximum of n trials drawn from them is
Dodge et al. 2019 ("Show Your Work"), with replacement: sum_i v(i) * [(i/N)^n - ((i-1)/N)^n]; and Tang et al. 2020's
unbiased estimator, without replacement (n <= N): sum_i v(i) * C(i-1, n-1) / C(N, n), the probability that v(i) is the
maximum of a random n-subset. A reader sees from the curve whether a ranking depends on the budget (TUNING.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

from ..errors import ConfigError

__all__ = [
    "check_budget",
    "expected_max_with_replacement",
    "expected_max_without_replacement",
    "ESTIMATORS",
    "budget_curve",
]


def check_budget(what: str, budget: Any) -> int:
    """The budget (finished trials per study) as an int >= 1, or one ConfigError line."""
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ConfigError(f"{what} = {budget!r} is not allowed; allowed: an integer >= 1 (finished trials per method)")
    return budget


def _sorted(scores: Sequence[float], n: int, most: int | None) -> list[float]:
    values = sorted(float(s) for s in scores)
    if not values or any(math.isnan(v) for v in values):
        raise ValueError(f"the expected maximum needs at least one score and no NaN; got {list(scores)}")
    if n < 1 or (most is not None and n > most):
        raise ValueError(f"n = {n} trials; allowed: 1 to {most if most is not None else 'any'}")
    return values


def expected_max_with_replacement(scores: Sequence[float], n: int) -> float:
    """Dodge et al.: E[max of n scores drawn with replacement from the observed ones] (any n >= 1)."""
    values = _sorted(scores, n, None)
    size = len(values)
    return sum(v * ((i / size) ** n - ((i - 1) / size) ** n) for i, v in enumerate(values, start=1))


def expected_max_without_replacement(scores: Sequence[float], n: int) -> float:
    """Tang et al.: E[max of a random n-subset of the observed scores] (1 <= n <= N), unbiased."""
    values = _sorted(scores, n, len(scores))
    subsets = math.comb(len(values), n)
    return sum(v * math.comb(i - 1, n - 1) / subsets for i, v in enumerate(values, start=1))


Estimator = Literal["dodge", "tang"]
ESTIMATORS: dict[str, Callable[[Sequence[float], int], float]] = {
    "dodge": expected_max_with_replacement,
    "tang": expected_max_without_replacement,
}


def budget_curve(scores: Sequence[float], estimator: Estimator = "tang") -> list[float]:
    """The expected best score after n = 1 .. N trials (N = len(scores))."""
    return [ESTIMATORS[estimator](scores, n) for n in range(1, len(scores) + 1)]
