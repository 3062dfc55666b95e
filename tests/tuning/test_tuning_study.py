"""Studies in one process, on Optuna's real storages: the claim rule, trial 0, the identity and the recorded sampler,
exactly N finished trials (pruned ones included), a larger budget extending a study, a rerun doing nothing, the
selected trial, the mapping of a trial to its cell, and the study storage (sqlite created atomically, PostgreSQL,
unreachable storage)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from rkdbench import Choice, LogUniform, Uniform
from rkdbench.config import load_protocol
from rkdbench.errors import ConfigError, UserError
from rkdbench.tuning.storage import (
    STORAGE_ENV,
    Heartbeat,
    open_storage,
    storage_lock,
    study_storage_url,
)
from rkdbench.tuning.study import (
    DEFAULTS_ORIGIN,
    ORIGIN,
    RETRIED_FROM,
    VERDICT,
    StudyIdentity,
    Tally,
    Verdict,
    best_trial,
    claim,
    finished_trials,
    open_study,
    run_trials,
    split_params,
    study_space,
    tally,
    trial_cell_key,
    trial_zero,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)
SPACE = {"train.lr": LogUniform(0.01, 0.25), "beta": Uniform(1.0, 10.0), "kl_reduction": Choice("mean", "batchmean")}
DEFAULTS = {"train.lr": 0.05, "beta": 6.0, "kl_reduction": "mean"}


def identity(**changes) -> StudyIdentity:
    base = StudyIdentity(
        protocol_hash="2146ed1f1d9c19f7",
        method="trades",
        method_version="1",
        method_params={"beta": 6.0, "kl_reduction": "mean"},
        student="cnn-small",
        teacher="none",
        space=SPACE,
        sampler="qmc",
        seed=0,
        objective="val.pgd_acc",
        pruner="none",
    )
    return dataclasses.replace(base, **changes)


def sqlite_study(tmp_path, ident=None, name="res"):
    url = study_storage_url(tmp_path / name)
    return open_study(open_storage(url, Heartbeat(1, 2)), ident or identity(), DEFAULTS, storage_lock(url))


def score(run) -> float:
    return -abs(run.params["train.lr"] - 0.1) + run.params["beta"] / 100


# ---- the claim rule on hand-made trial lists -----------------------------------------------------------------------


def _trials(*specs):
    """Trials numbered 0.. from (state, user attrs, system attrs)."""
    study = optuna.create_study()
    for state, user, system in specs:
        study.add_trial(
            create_trial(
                state=state, value=0.5 if state == TrialState.COMPLETE else None, user_attrs=user, system_attrs=system
            )
        )
    return study.get_trials(deepcopy=False)


C, R, W, F, P = TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING, TrialState.FAIL, TrialState.PRUNED


def test_claim_counts_distinct_origins_ahead():
    trials = _trials((C, {ORIGIN: DEFAULTS_ORIGIN}, {}), (R, {}, {}), (R, {}, {}))
    assert claim(trials, 1, budget=2) is Verdict.RUN
    assert claim(trials, 2, budget=2) is Verdict.SURPLUS  # 0 finished and 1 running take both slots
    assert claim(trials, 2, budget=3) is Verdict.RUN
    # failed trials free their slot; their retry (same origin) takes it, and a doubled retry is a duplicate
    trials = _trials((P, {}, {}), (F, {}, {}), (R, {}, {RETRIED_FROM: 1}), (W, {}, {RETRIED_FROM: 1}))
    assert claim(trials, 2, budget=2) is Verdict.RUN
    assert claim(trials, 3, budget=5) is Verdict.DUPLICATE
    # trial 0 enqueued twice by two workers at once: the second copy is a duplicate
    trials = _trials((R, {ORIGIN: DEFAULTS_ORIGIN}, {}), (W, {ORIGIN: DEFAULTS_ORIGIN}, {}))
    assert claim(trials, 1, budget=5) is Verdict.DUPLICATE
    assert tally(trials) == Tally(finished=0, live=1, waiting=1)  # one origin held, by two trials


# ---- studies -------------------------------------------------------------------------------------------------------


def test_open_study_records_the_sampler_and_enqueues_trial_0_once(tmp_path):
    study = sqlite_study(tmp_path)
    again = sqlite_study(tmp_path)  # a second worker opening the same study
    assert again.study_name == study.study_name == identity().name
    attrs = again.user_attrs
    assert attrs["rkdbench.sampler"] == {
        "class": "NumberedQMCSampler",
        "qmc_type": "sobol",
        "scramble": True,
        "seed": 0,
        "warn_independent_sampling": False,
        "optuna": optuna.__version__,
    }
    assert attrs["rkdbench.identity"]["space_hash"] and attrs["rkdbench.space"]["train.lr"] == {
        "log_uniform": [0.01, 0.25]
    }
    trials = again.get_trials(deepcopy=False)
    assert (
        len(trials) == 1 and trials[0].state == TrialState.WAITING and trials[0].user_attrs[ORIGIN] == DEFAULTS_ORIGIN
    )


def test_the_identity_names_every_thing_that_makes_studies_incomparable():
    names = {
        identity().name,
        identity(seed=1).name,
        identity(sampler="tpe").name,
        identity(space={**SPACE, "beta": Uniform(1.0, 20.0)}).name,
        identity(protocol_hash="x").name,
        identity(method_params={"beta": 5.0, "kl_reduction": "mean"}).name,
        identity(objective="val.clean_acc").name,
        identity(pruner="asha").name,
        identity(student="cnn-tiny").name,
        identity(method_version="2").name,
    }
    assert len(names) == 10 and identity().name == identity().name
    assert identity().name.startswith("trades/cnn-small/none/")


def test_exactly_the_budget_then_a_larger_budget_extends_and_a_rerun_does_nothing(tmp_path):
    study = sqlite_study(tmp_path)
    assert run_trials(study, SPACE, 4, score).finished == 4
    complete = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    assert len(complete) == 4 and complete[0].number == 0 and complete[0].params == DEFAULTS
    assert run_trials(study, SPACE, 4, score).finished == 4 and len(study.get_trials()) == 4  # nothing new
    assert run_trials(study, SPACE, 6, score).finished == 6 and len(study.get_trials()) == 6
    # the selection: the best value, and its values are a complete configuration
    best = best_trial(study)
    assert best.value == max(t.value for t in study.get_trials()) and set(best.params) == set(SPACE)
    assert [t.number for t in finished_trials(study)] == list(range(6))


def test_ties_select_the_official_recipe(tmp_path):
    study = sqlite_study(tmp_path)
    run_trials(study, SPACE, 3, lambda run: 0.5)
    assert best_trial(study).number == 0 and best_trial(study).params == DEFAULTS


def test_no_completed_trial_is_a_user_error(tmp_path):
    with pytest.raises(ConfigError, match="has no completed trial yet"):
        best_trial(sqlite_study(tmp_path))


def test_qmc_is_reproducible_and_random_samples_differ_by_seed(tmp_path):
    def params(name, **changes):
        study = sqlite_study(tmp_path, identity(**changes), name=name)
        run_trials(study, SPACE, 4, score)
        return [t.params for t in study.get_trials()]

    assert params("a", seed=0) == params("b", seed=0) != params("e", seed=7)  # Sobol scrambled by the study's seed
    random_a, random_b = params("c", sampler="random", seed=1), params("d", sampler="random", seed=2)
    assert random_a[0] == random_b[0] == DEFAULTS and random_a[1:] != random_b[1:]  # trial 0 whatever the sampler


def test_qmc_never_repeats_the_official_recipe_of_a_space_centred_on_it(tmp_path):
    """Spaces are centred on the official values (log-uniform 0.01..0.25 around lr 0.05): the plain Sobol sequence's
    point 1 is that centre, which would make trial 1 a second trial 0."""
    centred = {"train.lr": LogUniform(0.01, 0.25)}
    url = study_storage_url(tmp_path / "centred")
    defaults = {"train.lr": 0.05}
    study = open_study(open_storage(url), identity(space=centred), defaults, storage_lock(url))
    run_trials(study, centred, 6, lambda run: run.params["train.lr"])
    drawn = [t.params["train.lr"] for t in study.get_trials()]
    assert drawn[0] == 0.05 and all(abs(lr - 0.05) > 1e-6 for lr in drawn[1:]) and len(set(drawn)) == 6


def test_asha_pruned_trials_count_in_the_budget(tmp_path):
    study = sqlite_study(tmp_path, identity(pruner="asha", sampler="random"))

    def evaluate(run):
        quality = run.params["beta"] / 10  # trials with a low beta are worse at every epoch
        for epoch in range(8):
            run.report(epoch, quality * (epoch + 1) / 8)
        return quality

    assert run_trials(study, SPACE, 12, evaluate).finished == 12
    states = [t.state for t in study.get_trials()]
    assert (
        states.count(TrialState.PRUNED) >= 1
        and states.count(TrialState.COMPLETE) + states.count(TrialState.PRUNED) == 12
    )


def test_an_interrupted_trial_is_requeued_with_its_values(tmp_path):
    study = sqlite_study(tmp_path)
    calls = []

    def interrupted_once(run):
        calls.append(run.params)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return score(run)

    with pytest.raises(KeyboardInterrupt):
        run_trials(study, SPACE, 3, interrupted_once)
    failed = next(t for t in study.get_trials() if t.state == TrialState.FAIL)
    assert VERDICT not in failed.user_attrs
    assert run_trials(study, SPACE, 3, interrupted_once).finished == 3
    retry = next(t for t in study.get_trials() if t.system_attrs.get(RETRIED_FROM) == failed.number)
    assert retry.state == TrialState.COMPLETE and retry.params == failed.params == calls[1]


# ---- trial 0 and the trial's cell ------------------------------------------------------------------------------------


def test_trial_zero_reads_the_protocol_and_the_method_and_must_lie_inside():
    from rkdbench_plugins.methods.rslad import RSLAD

    protocol = load_protocol("digits-linf")
    space = study_space(protocol, RSLAD)
    assert set(space) == {"train.lr", "train.weight_decay", "adv_weight", "nat_weight", "temperature", "kl_reduction"}
    method_params = dataclasses.asdict(RSLAD().params)
    zero = trial_zero(protocol, method_params, space)
    assert zero == {
        "train.lr": 0.05,
        "train.weight_decay": 5e-4,
        "adv_weight": 5 / 6,
        "nat_weight": 1 / 6,
        "temperature": 1.0,
        "kl_reduction": "mean",
    }
    moved = load_protocol("digits-linf", {"train.lr": 1.0})
    with pytest.raises(
        ConfigError, match=r"train.lr = log_uniform \[0.01, 0.25\] does not contain the configured value 1.0"
    ):
        trial_zero(moved, method_params, space)
    with pytest.raises(
        ConfigError, match=r"temperature = log_uniform \[0.5, 10\] does not contain the configured value 30"
    ):
        trial_zero(protocol, {**method_params, "temperature": 30.0}, space)


def test_a_trial_maps_to_one_cell_per_configuration():
    params = {"train.lr": 0.1, "beta": 6.0, "kl_reduction": "batchmean"}
    assert split_params(params) == ({"train.lr": 0.1}, {"beta": 6.0, "kl_reduction": "batchmean"})
    assert split_params(params, DEFAULTS) == ({"train.lr": 0.1}, {"kl_reduction": "batchmean"})
    assert split_params(DEFAULTS, DEFAULTS) == ({}, {})  # trial 0 is the official configuration itself
    assert trial_cell_key("s", "k") == trial_cell_key("s", "k") != trial_cell_key("s2", "k") != "k"


# ---- storage -------------------------------------------------------------------------------------------------------


def test_storage_url_resolution(tmp_path):
    assert study_storage_url(tmp_path, env={}) == f"sqlite:///{tmp_path.resolve()}/optuna.db"
    url = "postgresql+psycopg2://u@db:5432/studies"
    assert study_storage_url(tmp_path, env={STORAGE_ENV: url}) == url
    assert study_storage_url(tmp_path, "sqlite:////x/o.db", env={STORAGE_ENV: url}) == "sqlite:////x/o.db"
    with pytest.raises(UserError, match=r"--study-storage = 'redis://h' is not allowed; allowed: a PostgreSQL URL"):
        study_storage_url(tmp_path, "redis://h")
    with pytest.raises(UserError, match=rf"\${STORAGE_ENV} = 'mysql://u:\*\*\*@h/d' is not allowed"):
        study_storage_url(tmp_path, env={STORAGE_ENV: "mysql://u:secret@h/d"})


def test_the_sqlite_study_file_is_created_whole_under_the_store_lock(tmp_path):
    url = study_storage_url(tmp_path / "res")
    open_storage(url)
    files = sorted(p.name for p in (tmp_path / "res").iterdir())
    assert files == [".store.lock", "optuna.db"]  # no temporary sibling left
    assert optuna.get_all_study_summaries(url) == []  # a valid, empty study database


KILLED_CREATION = """
import os, signal, sys
from rkdbench.tuning.storage import open_storage
def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
setattr(os, sys.argv[2], die)
open_storage(sys.argv[1])
"""


@pytest.mark.parametrize("point", ["fsync", "replace"])
def test_a_killed_creation_of_the_study_file_leaves_none_and_the_next_open_creates_it(tmp_path, point):
    url = study_storage_url(tmp_path / "res")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = subprocess.run([sys.executable, "-c", KILLED_CREATION, url, point], env=env, capture_output=True)
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]  # killed with the tables built, before the rename
    assert not (tmp_path / "res" / "optuna.db").exists()
    assert len(list((tmp_path / "res").glob(".optuna.db.*.tmp"))) == 1
    open_storage(url)  # the next holder removes the leftover and creates the file whole
    assert sorted(p.name for p in (tmp_path / "res").iterdir()) == [".store.lock", "optuna.db"]
    assert optuna.get_all_study_summaries(url) == []


def test_unreachable_storage_is_one_user_error_line(tmp_path):
    with pytest.raises(
        UserError, match=r"study storage postgresql\+psycopg2://u:\*\*\*@127.0.0.1:1/x cannot be opened"
    ) as exc:
        open_storage("postgresql+psycopg2://u:secret@127.0.0.1:1/x")
    assert "\n" not in str(exc.value) and "secret" not in str(exc.value)
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match="cannot be opened"):
        open_storage(f"sqlite:///{tmp_path}/file/optuna.db")  # its folder is a file


def test_a_study_on_postgresql(postgres_uri):
    study = open_study(open_storage(postgres_uri, Heartbeat(1, 2)), identity(), DEFAULTS, storage_lock(postgres_uri))
    assert run_trials(study, SPACE, 3, score).finished == 3
    assert [t.params for t in study.get_trials()][0] == DEFAULTS


def test_trials_turned_away_run_nothing_and_log_no_failure(caplog):
    study = optuna.create_study(direction="maximize")
    space = {"train.lr": LogUniform(0.01, 0.25)}
    run_trials(study, space, 1, lambda run: 0.5)  # trial 0 is drawn: no trial 0 was enqueued in this bare study
    first = study.trials[0]
    copy = create_trial(
        state=TrialState.WAITING, params=first.params, distributions=first.distributions, user_attrs={ORIGIN: "0"}
    )
    study.add_trial(copy)  # a doubled retry of trial 0
    optuna.logging.enable_propagation()
    try:
        with caplog.at_level("WARNING", logger="optuna"):
            assert run_trials(study, space, 1, lambda run: 0.5).finished == 1  # the budget is met: nothing popped
            assert study.trials[1].state == TrialState.WAITING
            evaluated = []
            assert run_trials(study, space, 2, lambda run: evaluated.append(run.number) or 0.7).finished == 2
    finally:
        optuna.logging.disable_propagation()
    assert study.trials[1].state == TrialState.FAIL and study.trials[1].user_attrs[VERDICT] == "duplicate"
    assert evaluated == [2] and not [r for r in caplog.records if "failed" in r.getMessage()]


def test_a_missing_optuna_names_the_extra_and_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna.storages", None)  # as if the `tune` extra were not installed
    with pytest.raises(UserError, match=r"needs the optuna.storages package \(pip install 'rkdbench\[tune\]'\)"):
        open_storage(study_storage_url(tmp_path / "res"))
    assert not (tmp_path / "res").exists()


def test_a_smaller_budget_selects_among_the_first_trials_only():
    study = optuna.create_study(direction="maximize")
    for value in (0.1, 0.2, 0.9):
        study.add_trial(create_trial(value=value))
    assert best_trial(study).number == 2
    assert best_trial(study, budget=2).number == 1  # the third trial is beyond a budget of two
    assert [t.number for t in finished_trials(study, 2)] == [0, 1]
