"""Evaluation you can trust: chunked evaluation that resumes after a kill with the numbers of an uninterrupted one,
sanity flags (pyautoattack's checks, accuracies out of order, black-box beating white-box, eps sweeps), the flags
on the leaderboard, the optional diagnostics (calibration error, robust accuracy vs eps), and a cell's run
carrying them."""

from __future__ import annotations

import copy
import logging
import math

import pandas as pd
import pytest
import torch
from torch import nn

from rkdbench.config import load_protocol
from rkdbench.diagnostics.diagnose import EPS_MULTIPLIERS, diagnose, expected_calibration_error
from rkdbench.errors import ConfigError
from rkdbench.evaluation.evaluate import chunk_bounds, evaluate
from rkdbench.evaluation.flags import eps_flags, sanity_flags, warning_flags
from rkdbench.leaderboard import build_tables, render
from rkdbench_plugins.attacks.apgd_ce import APGDCE
from rkdbench_plugins.attacks.pgd import PGD

# 24 points in chunks of 10: three chunks, the last one short
CHEAP = {
    "eval.n_examples": 24,
    "eval.chunk_size": 10,
    "eval.batch_size": 8,
    "threat.eps": 0.1,
    "eval.attacks": {"pgd20": {"attack": "pgd", "steps": 5}, "apgd": {"attack": "apgd-ce", "steps": 10}},
}


@pytest.fixture(scope="module")
def trained(tiny_mlp):
    """The 64-16-10 MLP after 200 plain-CE steps on digits, and the first 24 test points (some robust at eps 0.1)."""
    return tiny_mlp(200)


def _count_calls(monkeypatch, cls, calls: list, fail_at: int | None = None) -> None:
    original = cls.run

    def run(self, model, x, y):
        calls.append(len(y))
        if fail_at is not None and len(calls) == fail_at:
            raise KeyboardInterrupt("simulated kill")  # what Ctrl-C would raise mid-evaluation
        return original(self, model, x, y)

    monkeypatch.setattr(cls, "run", run)


def _same(a, b) -> None:
    assert a.per_example.keys() == b.per_example.keys()
    assert all(torch.equal(a.per_example[k], b.per_example[k]) for k in a.per_example)
    strip = lambda m: {k: v for k, v in m.items() if not k.endswith("_seconds")}  # noqa: E731
    assert strip(a.metrics) == strip(b.metrics)
    assert a.info == b.info and a.flags == b.flags


def test_chunk_bounds_are_fixed_by_size_alone():
    assert chunk_bounds(24, 10) == [(0, 10), (10, 20), (20, 24)]
    assert chunk_bounds(24, 0) == [(0, 24)] and chunk_bounds(24, 100) == [(0, 24)]
    assert chunk_bounds(0, 0) == []


def test_interrupted_evaluation_resumes_with_the_numbers_of_an_uninterrupted_one(trained, tmp_path, monkeypatch):
    model, x, y = trained
    protocol = load_protocol("digits-linf", CHEAP)
    reference = evaluate(model, protocol, x, y, state_dir=tmp_path / "reference")
    assert 0 < reference.metrics["apgd_acc"] < reference.metrics["clean_acc"]  # a meaningful comparison
    assert reference.info["apgd"]["chunks"] == 3 and reference.info["apgd"]["attacked"] == int(
        reference.per_example["clean"].sum()
    )

    state = tmp_path / "interrupted"
    pgd_calls, apgd_calls = [], []
    _count_calls(monkeypatch, PGD, pgd_calls)
    _count_calls(monkeypatch, APGDCE, apgd_calls, fail_at=2)  # killed in apgd's second chunk
    with pytest.raises(KeyboardInterrupt):
        evaluate(model, protocol, x, y, state_dir=state)
    assert pgd_calls == [10, 10, 4] and apgd_calls == [10, 10]
    assert sorted(p.name for p in (state / "apgd").glob("*.pt")) == ["chunk-0.pt"]

    monkeypatch.undo()  # a fresh process: the same attacks, counted, no kill
    pgd_calls.clear()
    apgd_calls.clear()
    _count_calls(monkeypatch, PGD, pgd_calls)
    _count_calls(monkeypatch, APGDCE, apgd_calls)
    resumed = evaluate(model, protocol, x, y, state_dir=state)
    assert pgd_calls == [] and apgd_calls == [10, 4]  # finished chunks are read back, never recomputed
    _same(resumed, reference)

    apgd_calls.clear()
    other = copy.deepcopy(model)
    with torch.no_grad():
        other[1].bias.add_(0.01)  # another model: saved chunks must not be reused for it
    evaluate(other, protocol, x, y, state_dir=state)
    assert apgd_calls == [10, 10, 4]


def test_one_chunk_without_state_is_the_plain_evaluation(trained, tmp_path):
    model, x, y = trained
    protocol = load_protocol("digits-linf", {**CHEAP, "eval.chunk_size": 0})
    plain = evaluate(model, protocol, x, y)
    _same(plain, evaluate(model, protocol, x, y, state_dir=tmp_path / "state"))
    assert "chunks" not in plain.info["apgd"]  # one chunk: the attack's info as it returned it


@pytest.mark.parametrize(
    "override, message",
    [
        ({"eval.chunk_size": -1}, r"eval\.chunk_size = -1 is not allowed; allowed: an integer >= 0"),
        ({"eval.diagnostics": "yes"}, r"eval\.diagnostics = 'yes' is not allowed; allowed: bool"),
    ],
)
def test_new_eval_fields_are_validated(override, message):
    with pytest.raises(ConfigError, match=message):
        load_protocol("digits-linf", override)


def test_builtin_protocol_keeps_its_hash():
    protocol = load_protocol("digits-linf")
    assert protocol.hash == "2146ed1f1d9c19f7"  # optional fields left out: existing runs stay comparable
    assert "chunk_size" not in protocol.data["eval"] and "diagnostics" not in protocol.data["eval"]
    assert (protocol.eval.chunk_size, protocol.eval.diagnostics) == (0, False)  # the declared defaults


SPECS = {"pgd20": {"attack": "pgd"}, "aa": {"attack": "autoattack"}, "sq": {"attack": "square"}}


def _specs(*labels: str) -> dict:
    return {label: SPECS[label] for label in labels}


@pytest.mark.parametrize(
    "metrics, labels, expected",
    [
        ({"clean_acc": 0.9, "pgd20_acc": 0.5, "aa_acc": 0.45}, ("pgd20", "aa"), []),
        ({"clean_acc": 0.9, "pgd20_acc": 0.5, "aa_acc": 0.55}, ("pgd20", "aa"), ["aa>pgd"]),
        ({"clean_acc": 0.4, "pgd20_acc": 0.5, "aa_acc": 0.45}, ("pgd20", "aa"), ["pgd>clean", "aa>clean"]),
        (
            {"clean_acc": 0.9, "pgd20_acc": 0.5, "aa_acc": 0.45, "sq_acc": 0.40},
            ("pgd20", "aa", "sq"),
            ["black-box<white-box"],
        ),
        ({"clean_acc": 0.9, "pgd20_acc": 0.5, "aa_acc": 0.45, "sq_acc": 0.449}, ("pgd20", "aa", "sq"), []),
        ({"clean_acc": 0.9, "sq_acc": 0.1}, ("sq",), []),  # no white-box attack to compare with
    ],
)
def test_sanity_flags_on_constructed_metrics(metrics, labels, expected):
    assert sanity_flags(metrics, _specs(*labels), {}) == expected


def test_pyautoattack_check_messages_become_stable_codes():
    from pyautoattack import checks

    logger = logging.getLogger("rkdbench-test-checks")
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logger.addHandler(handler)
    try:
        torch.manual_seed(0)
        x, y = torch.rand(8, 4), torch.randint(0, 3, (8,))
        checks.check_randomized(nn.Sequential(nn.Linear(4, 3), nn.Dropout(0.5)).train(), x, y, logger=logger)
        checks.check_range_output(nn.Sequential(nn.Linear(4, 3), nn.Softmax(1)), x, logger=logger)
        checks.check_zero_gradients(torch.zeros(2, 3), logger=logger)
        checks.check_square_sr({"clean": 0.9, "apgd-ce": 0.5, "apgd-t": 0.5, "square": 0.4}, logger=logger)
        checks.check_n_classes(3, ["apgd-t"], 9, 9, logger=logger)
    finally:
        logger.removeHandler(handler)
    assert len(records) == 5
    infos = {"aa": {"warnings": records[:3]}, "apgd": {"warnings": [*records[3:], "something new"]}}
    assert warning_flags(infos) == [
        "aa-warning:randomized",
        "aa-warning:softmax",
        "aa-warning:zero-grad",
        "aa-warning:square",
        "aa-warning:n-classes",
        "aa-warning:other",
    ]
    metrics = {"clean_acc": 0.9, "pgd20_acc": 0.5, "aa_acc": 0.6}
    assert sanity_flags(metrics, _specs("pgd20", "aa"), {"aa": {"warnings": records[1:2]}}) == [
        "aa-warning:softmax",
        "aa>pgd",
    ]


@pytest.mark.parametrize(
    "sweep, expected",
    [
        ({0.25: 0.8, 0.5: 0.6, 1.0: 0.4, 1.5: 0.2, 2.0: 0.05}, []),
        ({0.25: 0.8, 0.5: 0.6, 1.0: 0.4, 1.5: 0.5, 2.0: 0.05}, ["eps-nonmonotonic"]),
        ({0.25: 0.8, 0.5: 0.6, 1.0: 0.4, 1.5: 0.408, 2.0: 0.416}, ["eps-nonmonotonic"]),  # small rises add up
        ({0.25: 0.5, 0.5: 0.5, 1.0: 0.5, 1.5: 0.5, 2.0: 0.495}, ["eps-flat"]),
        ({0.25: 0.0, 0.5: 0.0, 1.0: 0.0, 1.5: 0.0, 2.0: 0.0}, []),
        ({1.0: 0.3}, []),
    ],
)
def test_eps_flags(sweep, expected):
    assert eps_flags(sweep) == expected


def test_expected_calibration_error_by_hand():
    probabilities = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.45, 0.55], [0.7, 0.3]])
    y = torch.tensor([0, 1, 1, 0])
    logits = probabilities.log() + 3.0  # softmax is shift-invariant
    # 15 bins: 0.9 -> (13/15, 14/15] with accuracy 1/2; 0.55 -> (8/15, 9/15] and 0.7 -> (10/15, 11/15], both correct
    expected = 2 / 4 * abs(0.5 - 0.9) + 1 / 4 * abs(1 - 0.55) + 1 / 4 * abs(1 - 0.7)
    assert expected_calibration_error(logits, y) == pytest.approx(0.3875, abs=1e-6) == expected
    assert expected_calibration_error(logits, y, bins=1) == pytest.approx(abs(0.75 - 0.7625), abs=1e-6)
    assert expected_calibration_error(torch.tensor([[5.0, -5.0]] * 3), torch.zeros(3, dtype=torch.long)) < 1e-4


def test_diagnostics_metrics_and_rng(trained):
    model, x, y = trained
    protocol = load_protocol("digits-linf", CHEAP)
    state = torch.get_rng_state()
    report = diagnose(model, protocol, x, y)
    assert torch.equal(torch.get_rng_state(), state)
    sweep = [report.metrics[f"diag.eps_x{m:g}_acc"] for m in EPS_MULTIPLIERS]
    assert set(report.metrics) == {"diag.ece_clean", "diag.ece_adv", *(f"diag.eps_x{m:g}_acc" for m in EPS_MULTIPLIERS)}
    assert sweep[0] >= sweep[-1] and sweep[-1] < 0.5  # a plain MLP: robust accuracy falls as eps grows
    assert 0 <= report.metrics["diag.ece_clean"] <= 1 and 0 <= report.metrics["diag.ece_adv"] <= 1
    assert report.flags == eps_flags(dict(zip(EPS_MULTIPLIERS, sweep)))


def _runs(flags_by_seed: dict[int, str | None]) -> pd.DataFrame:
    rows = [
        {
            "protocol": "p",
            "protocol_hash": "h" * 16,
            "experiment": "p",
            "method_variant": "ard",
            "student": "cnn-tiny",
            "teacher": "t",
            "seed": str(seed),
            "run_id": f"run{seed}",
            "metrics.test.clean_acc": 0.9,
            "metrics.test.aa_acc": 0.5,
            **({} if flags is None else {"flags": flags}),
        }
        for seed, flags in flags_by_seed.items()
    ]
    return pd.DataFrame(rows)


def test_leaderboard_shows_the_union_of_flags_over_seeds():
    [table] = build_tables(_runs({0: "aa>pgd,aa-warning:square", 1: "", 2: "aa>pgd"}))
    assert table.frame.loc[0, "flags"] == "aa-warning:square,aa>pgd"
    assert "`aa-warning:square`, `aa>pgd`" in render(table, "md")
    csv = pd.read_csv(__import__("io").StringIO(render(table, "csv")))
    assert csv.loc[0, "flags"] == "aa-warning:square,aa>pgd"
    [old] = build_tables(_runs({0: None}))  # runs logged before flags existed
    assert old.frame.loc[0, "flags"] == "" and "flags" in render(old, "md").splitlines()[4]


def test_a_cell_logs_its_flags_diagnostics_and_resumable_evaluation(tmp_path):
    from mlflow.tracking import MlflowClient

    from rkdbench.config import load_suite
    from rkdbench.run.executor import run_suite
    from rkdbench.run.options import RunOptions
    from rkdbench.tracking import tracking_uri

    suite_path = tmp_path / "mini.toml"
    suite_path.write_text(
        '[suite]\nname = "mini"\nprotocol = "digits-linf"\nmethods = ["standard"]\n'
        'students = ["cnn-tiny"]\nseeds = [0]\n'
    )
    overrides = {
        "train.epochs": 1,
        "train.val_pgd_steps": 1,
        "eval.n_examples": 8,
        "eval.chunk_size": 4,
        "eval.diagnostics": True,
        "eval.selections": ["last"],
        "eval.attacks": {"pgd20": {"attack": "pgd", "steps": 3}},
    }
    results = tmp_path / "results"
    [outcome] = run_suite(
        load_suite(str(suite_path), overrides), RunOptions(results=results, model_dir=tmp_path / "models")
    )
    assert outcome.status == "finished", outcome.error
    run = MlflowClient(tracking_uri(results)).get_run(outcome.run_id)
    assert "rkdbench.flags" in run.data.tags and "rkdbench.best_val.flags" not in run.data.tags
    assert all(code for code in run.data.tags["rkdbench.flags"].split(",") if run.data.tags["rkdbench.flags"])
    assert {"diag.ece_clean", "diag.ece_adv", "diag.eps_x2_acc"} <= set(run.data.metrics)
    assert not math.isnan(run.data.metrics["diag.eps_x0.25_acc"])
    chunks = sorted(p.name for p in (results / "cells" / outcome.cell.key / "eval-last" / "pgd20").glob("*.pt"))
    assert chunks == ["chunk-0.pt", "chunk-1.pt"]
