"""Search-space declarations: the TOML forms, Optuna's distributions, and every refusal (one line naming the
declaration, the parameter, the value and what is allowed) for protocol fields and method parameters alike."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import optuna
import pytest

from rkdbench import Choice, IntRange, LogUniform, Method, Uniform
from rkdbench.config.protocol import TUNABLE
from rkdbench.config.space import parse_distribution, space_hash
from rkdbench.config.tune import check_contains, parse_space
from rkdbench.errors import ConfigError

WHERE = "p.toml: [tune.space]"


def refused(match: str):
    """pytest.raises for a ConfigError matching `match` (a regex)."""
    return pytest.raises(ConfigError, match=match)


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("raw", "expected", "optuna_distribution"),
    [
        (
            {"log_uniform": [0.01, 0.5]},
            LogUniform(0.01, 0.5),
            optuna.distributions.FloatDistribution(0.01, 0.5, log=True),
        ),
        ({"uniform": [0, 1]}, Uniform(0, 1), optuna.distributions.FloatDistribution(0.0, 1.0)),
        ({"int": [1, 8]}, IntRange(1, 8), optuna.distributions.IntDistribution(1, 8)),
        ({"log_int": [1, 64]}, IntRange(1, 64, log=True), optuna.distributions.IntDistribution(1, 64, log=True)),
        (
            {"choice": ["mean", "batchmean"]},
            Choice("mean", "batchmean"),
            optuna.distributions.CategoricalDistribution(["mean", "batchmean"]),
        ),
    ],
)
def test_toml_forms_parse_to_the_distributions_and_their_optuna_forms(raw, expected, optuna_distribution):
    dist = parse_distribution("x", raw)
    assert dist == expected
    assert dist.to_toml() == raw
    assert dist.to_optuna() == optuna_distribution


def test_contains_is_inclusive_and_typed():
    assert LogUniform(0.01, 0.5).contains(0.01) and LogUniform(0.01, 0.5).contains(0.5)
    assert not LogUniform(0.01, 0.5).contains(0.6) and not LogUniform(0.01, 0.5).contains(True)
    assert IntRange(1, 4).contains(4) and not IntRange(1, 4).contains(2.5)
    assert Choice(1.0, 2.0).contains(1) and not Choice(1, 0).contains(True) and not Choice("1").contains(1)


def test_space_hash_is_the_canonical_form():
    a = {"train.lr": LogUniform(0.01, 0.5), "beta": Uniform(1, 2)}
    assert space_hash(a) == space_hash(dict(reversed(list(a.items()))))
    assert space_hash(a) != space_hash({**a, "beta": Uniform(1, 3)})
    assert space_hash(a) != space_hash({**a, "train.lr": Uniform(0.01, 0.5)})


@pytest.mark.parametrize(
    ("table", "match"),
    [
        ({"train.lrr": {"log_uniform": [0.01, 0.5]}}, r"no tunable field 'train.lrr' \(did you mean: train.lr"),
        ({"eval.seed": {"int": [0, 3]}}, r"no tunable field 'eval.seed'.*allowed: fields of \[train\], \[data\]"),
        ({"train.lr": {"log_unifrom": [0.01, 0.5]}}, r"unknown distribution 'log_unifrom' \(did you mean: log_uniform"),
        ({"train.lr": [0.01, 0.5]}, r"train.lr = \[0.01, 0.5\] is not allowed; allowed: a table with one of"),
        ({"train.lr": {"log_uniform": [0.01]}}, r"log_uniform takes \[low, high\]"),
        ({"train.lr": {"log_uniform": [0.5, 0.01]}}, r"low must be below high"),
        ({"train.lr": {"log_uniform": [0.0, 0.5]}}, r"a log range must lie above 0 \(low 0\)"),
        ({"train.weight_decay": {"log_uniform": [-1e-4, 1e-3]}}, r"a log range must lie above 0"),
        (
            {"train.lr": {"uniform": [0.0, 0.5]}},
            r"train.lr = uniform \[0, 0.5\]: low = 0.0 is not allowed; allowed: a number > 0",
        ),
        ({"train.weight_decay": {"uniform": [-1e-4, 1e-3]}}, r"allowed: a number >= 0"),
        (
            {"train.lr": {"int": [1, 3]}},
            r"an integer range over a parameter of type float; allowed: log_uniform/uniform, choice",
        ),
        (
            {"train.epochs": {"uniform": [1, 3]}},
            r"a float range over a parameter of type int; allowed: int/log_int, choice",
        ),
        ({"train.epochs": {"int": [0, 3]}}, r"low = 0 is not allowed; allowed: an integer >= 1"),
        ({"train.optimizer": {"uniform": [0, 1]}}, r"has fixed choices; allowed: choice = \['sgd', 'adam'\]"),
        (
            {"train.optimizer": {"choice": ["sgd", "adamw"]}},
            r"'adamw' is not allowed; allowed: sgd, adam \(did you mean: adam",
        ),
        ({"train.nesterov": {"choice": [True, "yes"]}}, r"choice = 'yes' is not allowed; allowed: bool"),
        ({"train.nesterov": {"choice": [True, True]}}, r"a value is listed twice"),
        ({"train.momentum": {"choice": []}}, r"needs at least one value"),
    ],
)
def test_protocol_space_refusals_are_one_line(table, match):
    with refused(match) as exc:
        parse_space(WHERE, table, TUNABLE)
    assert one_line(exc).startswith(WHERE)


def test_protocol_space_accepts_fields_of_train_and_data():
    space = parse_space(
        WHERE,
        {
            "train.lr": {"log_uniform": [0.01, 0.5]},
            "train.epochs": {"int": [10, 30]},
            "train.nesterov": {"choice": [True, False]},
            "data.augment": {"choice": ["none", "pad1-crop"]},
        },
        TUNABLE,
    )
    assert space["train.epochs"] == IntRange(10, 30) and space["data.augment"] == Choice("none", "pad1-crop")


def test_check_contains_names_the_value_outside():
    with refused(r"x: train.lr = log_uniform \[0.1, 0.5\] does not contain the configured value 0.05") as exc:
        check_contains("x", {"train.lr": LogUniform(0.1, 0.5)}, {"train.lr": 0.05}, what="the configured value")
    one_line(exc)


@dataclass(frozen=True)
class ToyParams:
    temperature: float = 1.0
    kl_reduction: Literal["mean", "batchmean", "sum"] = "mean"
    steps: int = 3
    begin_fraction: float | None = None


class Toy(Method):
    name = "toy"
    Params = ToyParams
    space = {"temperature": LogUniform(0.5, 4.0), "kl_reduction": Choice("mean", "batchmean"), "steps": IntRange(1, 5)}


def test_a_method_space_is_checked_when_the_class_is_defined():
    assert Toy.space["steps"] == IntRange(1, 5)  # a good one defines fine

    def define(space):
        return type("Bad", (Method,), {"name": "bad", "Params": ToyParams, "space": space, "__module__": __name__})

    cases = [
        ({"temprature": LogUniform(0.5, 4.0)}, r"no parameter 'temprature' \(did you mean: temperature\?\); allowed: "),
        ({"kl_reduction": Choice("mean", "meen")}, r"'meen' is not allowed; allowed: mean, batchmean, sum"),
        ({"temperature": LogUniform(2.0, 4.0)}, r"does not contain the default 1.0: trial 0 \(the official recipe\)"),
        ({"temperature": LogUniform(0.0, 4.0)}, r"a log range must lie above 0"),
        ({"temperature": IntRange(1, 4)}, r"an integer range over a parameter of type float"),
        ({"steps": Uniform(1, 5)}, r"a float range over a parameter of type int"),
        ({"steps": Choice(1, 2.5)}, r"steps = choice \[1, 2.5\]: choice: method 'bad' parameter 'steps' must be int"),
        ({"begin_fraction": Uniform(0.1, 0.5)}, r"does not contain the default None"),
        ({"temperature": (0.5, 4.0)}, r"temperature = \(0.5, 4.0\) is not a distribution"),
    ]
    for space, match in cases:
        with refused(match) as exc:
            define(space)
        assert one_line(exc).startswith(f"{__name__}.Bad.space (method 'bad'): ")


def test_a_parameter_rule_declared_with_optional_bounds_the_space():
    from dataclasses import dataclass as dc

    from rkdbench.config.fields import above, optional

    @dc(frozen=True)
    class Ruled:
        temperature: float = optional(1.0, above(0))

    with refused(r"low = 0.0 is not allowed; allowed: a number > 0"):
        type("Ruled", (Method,), {"name": "ruled", "Params": Ruled, "space": {"temperature": Uniform(0.0, 2.0)}})
