"""The built-in methods' search spaces: every method's official defaults lie inside its space and the protocol's
(trial 0), every value the space can give builds the method, the KL-based methods search the KL reduction, and the
generated docs page shows the space."""

from __future__ import annotations

import dataclasses

import optuna
import pytest

import rkdbench
from rkdbench import Choice
from rkdbench.app.method_docs import render_method_page
from rkdbench.config import builtin_names, load_protocol, load_suite
from rkdbench.plugins import get_registry
from rkdbench.tuning.study import split_params, study_space, trial_zero

METHODS = rkdbench.list_components("method")
KL_BASED = ["kd", "ard", "rslad", "adaad", "advfunmatch", "mtard", "igdm", "fair-ard", "fair-rslad", "fair-mtard"]


@pytest.mark.parametrize("name", METHODS)
def test_trial_0_is_inside_and_every_sampled_value_builds_the_method(name):
    cls = get_registry().get("method", name).obj
    protocol = load_protocol("digits-linf")
    space = study_space(protocol, cls)
    defaults = trial_zero(protocol, dataclasses.asdict(cls().params), space)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial(defaults)
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def build(trial):
        params = {key: space[key].suggest(trial, key) for key in sorted(space)}
        protocol_set, method_set = split_params(params, defaults)
        method = cls(**method_set)  # every value the space gives is a valid parameter
        assert all(getattr(method.params, key) == value for key, value in method_set.items())
        assert load_protocol("digits-linf", protocol_set).train.lr == params["train.lr"]
        return 0.0

    study.optimize(build, n_trials=4)
    assert study.trials[0].params == defaults


@pytest.mark.parametrize("name", KL_BASED)
def test_kl_based_methods_search_the_kl_reduction(name):
    space = get_registry().get("method", name).obj.space
    assert isinstance(space["kl_reduction"], Choice)
    assert set(space["kl_reduction"].values) == {"mean", "batchmean"}


@pytest.mark.parametrize("name", ["trades", "mart"])
def test_trades_and_mart_search_beta(name):
    assert get_registry().get("method", name).obj.space["beta"].contains(6.0)


def test_the_docs_page_shows_the_space():
    assert "| `temperature` | `log_uniform [1, 50]` (default `30.0`) |" in render_method_page("ard")
    assert "declares no `space`" in render_method_page("pgd-at")


@pytest.mark.parametrize("suite_name", builtin_names("suites"))
def test_every_shipped_suites_settings_lie_inside_the_spaces(suite_name):
    """Trial 0 of every study a shipped suite can start is inside its space (e.g. MART's beta = 5 on CIFAR, IGDM's
    alpha = 20 and PeerAiD's gamma2 = 1 on CIFAR-100)."""
    suite = load_suite(suite_name)
    for method in suite.methods:
        cls = get_registry().get("method", method).obj
        params, _ = cls.resolve_params(suite.method_params.get(method, {}))
        trial_zero(suite.protocol, dataclasses.asdict(params), study_space(suite.protocol, cls))
