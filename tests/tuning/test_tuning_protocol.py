"""A protocol's [tune] table: parsed into `protocol.tune` (sampler, seed, objective, pruner, budget, the shared space),
kept out of the protocol hash and every cell key, overridable with `--set tune.*`, and refused on bad input; the
objectives a study may maximize; the validation split tuning needs."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

import rkdbench
from rkdbench import LogUniform, Uniform
from rkdbench.config import Cell, load_protocol, to_toml
from rkdbench.config.tune import DEFAULT_OBJECTIVE, check_objective
from rkdbench.errors import ConfigError
from rkdbench.tuning.objective import check_validation_split, objective_value, validation_size
from rkdbench.tuning.plan import plan_study

DIGITS_HASH = "2146ed1f1d9c19f7"  # pinned with every shipped protocol in tests/config/test_compile.py


def _protocol_file(tmp_path: Path, tune: str) -> Path:
    base = Path(load_protocol("digits-linf").source).read_text().split("\n# How `rkdbench tune`")[0]
    path = tmp_path / "p.toml"
    path.write_text(base + "\n" + tune)
    return path


def _cell(protocol) -> Cell:
    return Cell(protocol, "rslad", {"temperature": 1.0}, "1", "cnn-small", "t", 0)


def test_digits_tune_table_is_parsed_and_leaves_the_hash_and_cell_keys_alone(tmp_path):
    protocol = load_protocol("digits-linf")
    assert protocol.hash == DIGITS_HASH and "tune" not in protocol.data
    tune = protocol.tune
    assert (tune.sampler, tune.objective, tune.pruner, tune.seed, tune.budget) == (
        "qmc",
        DEFAULT_OBJECTIVE,
        "none",
        0,
        None,
    )
    assert tune.space == {"train.lr": LogUniform(0.01, 0.25), "train.weight_decay": LogUniform(5e-5, 5e-3)}
    assert tune.space["train.lr"].contains(protocol.train.lr)
    assert tune.space["train.weight_decay"].contains(protocol.train.weight_decay)
    # the same protocol without [tune] (or with another) is the same protocol: same hash, same cell key
    bare = load_protocol(str(_protocol_file(tmp_path, "")))
    assert bare.hash == DIGITS_HASH and bare.tune.space == {}
    assert _cell(bare).key == _cell(protocol).key


def test_tune_overrides_change_the_search_not_the_protocol():
    protocol = load_protocol(
        "digits-linf",
        {"tune.sampler": "tpe", "tune.budget": 12, "tune.space.train.momentum": {"uniform": [0.5, 0.99]}},
    )
    assert protocol.hash == DIGITS_HASH and protocol.overrides == {} and protocol.experiment_name == "digits-linf"
    assert protocol.tune.sampler == "tpe" and protocol.tune.budget == 12
    assert protocol.tune.space["train.momentum"] == Uniform(0.5, 0.99) and "train.lr" in protocol.tune.space


@pytest.mark.parametrize(
    ("tune", "match"),
    [
        (
            '[tune]\nsamplr = "qmc"\n',
            r"p.toml: unknown field tune.samplr \(did you mean: sampler\?\); allowed in \[tune\]",
        ),
        ('[tune]\nsampler = "grid"\n', r"p.toml: tune.sampler = 'grid' is not allowed; allowed: qmc, random, tpe"),
        ("[tune]\nbudget = 0\n", r"p.toml: tune.budget = 0 is not allowed; allowed: an integer >= 1"),
        (
            '[tune]\nobjective = "test.aa_acc"\n',
            r"p.toml: tune.objective = 'test.aa_acc' is measured on the test split",
        ),
        ('[tune]\nobjective = "best_val.pgd20_acc"\n', r"is measured on the test split"),
        (
            '[tune]\nobjective = "val.pgd"\n',
            r"tune.objective = 'val.pgd' is not a known metric \(did you mean: val.pgd_acc",
        ),
        ('[tune]\npruner = "hyperband"\n', r"tune.pruner = 'hyperband' is not allowed; allowed: none, asha"),
        (
            '[tune.space]\n"train.lr" = {log_uniform = [0, 0.5]}\n',
            r"p.toml: \[tune.space\]: train.lr = log_uniform \[0, 0.5\]: a log range must lie above 0",
        ),
        ('[tune.space]\n"method.beta" = {uniform = [1, 2]}\n', r"no tunable field 'method.beta'"),
        (
            '[tune.space]\n"train.weight_decay" = {uniform = [-0.1, 0.1]}\n',
            r"low = -0.1 is not allowed; allowed: a number >= 0",
        ),
    ],
)
def test_bad_tune_tables_are_refused_in_one_line_naming_the_file(tmp_path, tune, match):
    with pytest.raises(ConfigError, match=match) as exc:
        load_protocol(str(_protocol_file(tmp_path, tune)))
    assert "\n" not in str(exc.value)


def test_bad_tune_overrides_name_where_they_came_from():
    with pytest.raises(
        ConfigError, match=r"\(after --set\): tune.objective = 'test.clean_acc' is measured on the test"
    ):
        load_protocol("digits-linf", {"tune.objective": "test.clean_acc"})
    with pytest.raises(ConfigError, match=r"--set: tune.seed.x: tune.seed is not a table"):
        load_protocol("digits-linf", {"tune.seed.x": 1})


def test_objectives_read_the_last_epochs_validation_metric():
    objective = check_objective("--objective", "val.pgd_acc")
    history = [{"epoch": 0, "val.pgd_acc": 0.2, "val.clean_acc": 0.9}, {"epoch": 1, "val.pgd_acc": 0.35}]
    assert objective_value(objective, history) == 0.35
    assert check_objective("--objective", "val.clean_acc").metric == "val.clean_acc"
    with pytest.raises(ConfigError, match=r"--objective = 'diag.ece_clean' is measured on the test split"):
        check_objective("--objective", "diag.ece_clean")


class _NoValidation:
    split_sizes = (1000, 0, 200)


class _HeldOut:
    val_size = 500


def test_tuning_needs_a_validation_split():
    protocol = load_protocol("digits-linf")
    digits = rkdbench.create("dataset", "digits")
    assert validation_size(digits) == 180
    check_validation_split(protocol, digits)
    assert validation_size(_HeldOut()) == 500 and validation_size(object()) is None
    with pytest.raises(ConfigError, match=r"dataset 'digits' holds out no validation split \(0 points\)"):
        check_validation_split(protocol, _NoValidation())


def test_the_shipped_protocol_file_documents_its_tune_table():
    raw = tomllib.loads(Path(load_protocol("digits-linf").source).read_text())
    assert set(raw["tune"]) == {"sampler", "objective", "space"}


def test_to_toml_writes_the_tune_table_back_as_it_was():
    raw = tomllib.loads(Path(load_protocol("digits-linf").source).read_text())
    assert tomllib.loads(to_toml(raw)) == raw  # "train.lr" stays one key: [tune.space."train.lr"]


def _plan(**options):
    from rkdbench_plugins.methods.trades import TRADES

    protocol = options.pop("protocol", None) or load_protocol("digits-linf")
    dataset = options.pop("dataset", None) or rkdbench.create("dataset", "digits")
    return plan_study(protocol, TRADES, {"beta": 6.0}, "cnn-small", "none", dataset, **options)


def test_plan_study_takes_the_protocols_defaults_and_the_options():
    plan = _plan(budget=12)
    assert plan.budget == 12 and plan.objective.metric == "val.pgd_acc"
    assert (plan.identity.sampler, plan.identity.seed, plan.identity.pruner) == ("qmc", 0, "none")
    assert plan.defaults == {"train.lr": 0.05, "train.weight_decay": 5e-4, "beta": 6.0}
    assert plan.name.startswith("trades/cnn-small/none/")
    other = _plan(budget=12, sampler="tpe", seed=3, pruner="asha", objective="val.clean_acc")
    assert other.name != plan.name and other.identity.sampler == "tpe" and other.identity.seed == 3
    assert _plan(budget=20).name == plan.name  # the budget is not part of a study's identity
    tuned = load_protocol("digits-linf", {"tune.budget": 7})
    assert _plan(protocol=tuned).budget == 7


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({}, r"--budget is required: .*digits-linf.toml sets no \[tune\] budget"),
        ({"budget": 0}, r"--budget = 0 is not allowed; allowed: an integer >= 1"),
        ({"budget": -2}, r"--budget = -2 is not allowed"),
        ({"budget": 4, "objective": "test.aa_acc"}, r"--objective = 'test.aa_acc' is measured on the test split"),
        ({"budget": 4, "objective": "val.loss"}, r"--objective = 'val.loss' is not a known metric"),
        ({"budget": 4, "sampler": "grid"}, r"--sampler = 'grid' is not allowed; allowed: qmc, random, tpe"),
        (
            {"budget": 4, "pruner": "ashaa"},
            r"--pruner = 'ashaa' is not allowed; allowed: none, asha \(did you mean: asha",
        ),
        ({"budget": 4, "seed": -1}, r"--seed = -1 is not allowed; allowed: an integer >= 0"),
        ({"budget": 4, "dataset": _NoValidation()}, r"holds out no validation split"),
        (
            {"budget": 4, "protocol": load_protocol("digits-linf", {"train.weight_decay": 0.0})},
            r"train.weight_decay = log_uniform \[5e-05, 0.005\] does not contain the configured value 0.0",
        ),
    ],
)
def test_plan_study_refuses_bad_input_in_one_line(options, match):
    with pytest.raises(ConfigError, match=match) as exc:
        _plan(**options)
    assert "\n" not in str(exc.value)
