"""The tuned leaderboard view, from a store written by hand: each method's row is its study's selected cells (found
whatever protocol hash their overrides gave them) under the suite protocol's hash, with the study's budget, trials,
sampler and selected values; the budget curve is Tang et al.'s estimator on the study's trial values; the trade-off
note appears beyond the clean-accuracy margin; the official view leaves the tuned-only cells out; studies of another
budget never share a table."""

from __future__ import annotations

import json

import pytest

from rkdbench.leaderboard import collect_runs, render
from rkdbench.leaderboard.shown import shown
from rkdbench.leaderboard.tuned import (
    TRADEOFF_MARGIN,
    collect_studies,
    official_runs,
    score_loader,
    tuned_tables,
)
from rkdbench.tracking import Tracker, schema


def _cell(tracker, experiment, key, method, seed, protocol_hash, clean, aa):
    run_id = tracker.create_run(
        experiment,
        f"{method}-{seed}",
        schema.cell_tags(
            cell=key,
            protocol="toy",
            protocol_hash=protocol_hash,
            protocol_overrides="{}",
            method=method,
            variant=method,
            student="s",
            teacher="none",
            seed=seed,
            suite="tiny",
            plugin="p",
            extra_teachers={},
            plugin_version="1",
            git_sha="g",
        ),
    )
    tracker.log_metrics(run_id, {"test.clean_acc": clean, "test.aa_acc": aa})
    tracker.finish(run_id, "FINISHED")


def _study(tracker, experiment, method, selected, overrides, cells, values, budget=3):
    run_id = tracker.create_run(
        experiment,
        f"study-{method}",
        schema.study_tags(
            cell=f"study-{method}-{budget}",
            protocol="toy",
            protocol_hash="h1",
            study=f"{method}/s/none/x",
            method=method,
            variant=method,
            student="s",
            teacher="none",
            suite="tiny",
            sampler="qmc",
            sampler_seed=0,
            objective="val.pgd_acc",
            pruner="none",
            budget=budget,
            selected_trial=selected,
            selected_values="{}",
            selected_overrides=json.dumps(overrides),
            tuned_cells=",".join(cells),
            git_sha="g",
        ),
    )
    tracker.log_metrics(run_id, {"study.trials": float(budget), "study.best_value": max(values), "study.epochs": 6.0})
    for step, value in enumerate(values):
        tracker.log_metrics(run_id, {"study.trial_value": value}, step=step)
    tracker.finish(run_id, "FINISHED")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    with pytest.MonkeyPatch.context() as env:
        env.delenv("MLFLOW_TRACKING_URI", raising=False)
        tracker = Tracker(tmp_path_factory.mktemp("tuned") / "results")
    base = tracker.experiment_id("toy")
    tuned = tracker.experiment_id("toy@h2")  # a selected configuration that overrides train.lr
    for seed in (0, 1):
        _cell(tracker, base, f"pgd{seed}", "pgd-at", seed, "h1", 0.90, 0.50)  # pgd-at: trial 0 selected
        _cell(tracker, base, f"trades-official{seed}", "trades", seed, "h1", 0.80, 0.40)
        _cell(tracker, tuned, f"trades-tuned{seed}", "trades", seed, "h2", 0.70, 0.55)
    _study(tracker, base, "pgd-at", 0, {}, ["pgd0", "pgd1"], [0.5, 0.4, 0.45])
    _study(
        tracker, base, "trades", 2, {"train.lr": 0.1, "beta": 3.0}, ["trades-tuned0", "trades-tuned1"], [0.2, 0.5, 0.4]
    )
    _cell(tracker, base, "mart0", "mart", 0, "h1", 0.85, 0.45)  # tuned with another budget: a table of its own
    _study(tracker, base, "mart", 0, {}, ["mart0"], [0.3, 0.35, 0.3, 0.2], budget=4)
    return tracker


def _table(store):
    [table] = [
        t for t in tuned_tables(collect_runs(store), collect_studies(store), score_loader(store)) if len(t.frame) == 2
    ]
    return table


def test_tuned_rows_are_the_selected_cells_with_their_studies(store):
    table = _table(store)
    frame = table.frame.set_index("method_variant")
    assert list(table.frame["method_variant"]) == ["trades", "pgd-at"]  # ranked by AutoAttack: 55 over 50
    assert table.protocol_hash == "h1" and table.view == "tuned" and "tuned with an equal budget" in table.title
    assert frame.loc["trades", "aa_mean"] == pytest.approx(55.0) and frame.loc["trades", "n"] == 2
    assert frame.loc["trades", "selected"] == "trial 2: beta=3, train.lr=0.1"
    assert frame.loc["pgd-at", "selected"] == "official (trial 0)"
    assert set(table.frame["budget"]) == {3} and set(table.frame["trials"]) == {3}
    assert frame.loc["trades", "best_val"] == pytest.approx(50.0)
    # Tang et al. on (0.2, 0.5, 0.4): n=1 the mean, n=2 (0.4*1 + 0.5*2)/3, n=3 the max
    assert table.curves["trades / s / none"] == pytest.approx([110 / 3, 140 / 3, 50.0])
    assert {"budget", "trials", "sampler", "best val", "selected"} <= set(shown(table))


def test_tradeoff_note_beyond_the_margin_and_the_curves_in_every_form(store):
    table = _table(store)
    assert 90 - 70 > TRADEOFF_MARGIN
    [_, tradeoff] = table.notes
    assert "differ by 20.0 points" in tradeoff and "trades 70.0 to pgd-at 90.0" in tradeoff
    markdown, page = render(table, "md"), render(table, "html")
    for text in (markdown, page):
        assert "expected best val % after n trials" in text and "Trade-off" in text
    # (0.5, 0.4, 0.45): n=1 the mean, n=2 (0.45*1 + 0.5*2)/3, n=3 the max; JSON at 4 decimals
    assert json.loads(render(table, "json"))["budget_curves"]["pgd-at / s / none"] == pytest.approx(
        [45.0, 145 / 3, 50.0], abs=1e-3
    )


def test_the_official_view_leaves_out_cells_only_a_tuned_configuration_made(store):
    runs, studies = collect_runs(store), collect_studies(store)
    official, left_out = official_runs(runs, studies)
    assert left_out == 2 and not official["cell"].str.startswith("trades-tuned").any()
    assert official["cell"].str.startswith("pgd").sum() == 2  # trial 0 selected: the official cells stay
    assert official["cell"].str.startswith("trades-official").sum() == 2


def test_studies_of_another_budget_never_share_a_table(store):
    tables = tuned_tables(collect_runs(store), collect_studies(store), score_loader(store))
    assert sorted(sorted(t.frame["method_variant"]) for t in tables) == [["mart"], ["pgd-at", "trades"]]
