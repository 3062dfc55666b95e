"""An epoch whose checkpoint was written but whose process died before its metrics were journaled is logged from
the checkpoint's history on resume, once; a run created by an older version (no journal of its creation) is
never backfilled, since its metrics are already in MLflow."""

from __future__ import annotations

from rkdbench.tracking.journal import Journal

HISTORY = [{"epoch": e, "train.loss": 1.0 / (e + 1), "val.clean_acc": 0.5} for e in range(3)]


def journal_with(tmp_path, *entries) -> Journal:
    journal = Journal(tmp_path)
    for entry in entries:
        journal.append(entry)
    return Journal(tmp_path)  # read back from disk, as a resuming process does


def test_epochs_without_journaled_metrics_are_missing(tmp_path):
    journal = journal_with(
        tmp_path,
        {"op": "params", "run_id": "r", "params": {}},
        {"op": "metrics", "run_id": "r", "metrics": {"train.loss": 1.0}, "step": 0, "timestamp": 1},
        {"op": "metrics", "run_id": "other", "metrics": {"train.loss": 1.0}, "step": 1, "timestamp": 1},
    )
    assert [h["epoch"] for h in journal.epochs_missing("r", HISTORY, "train.loss")] == [1, 2]


def test_final_metrics_at_the_epochs_step_do_not_count_as_the_epoch(tmp_path):
    journal = journal_with(
        tmp_path,
        {"op": "params", "run_id": "r", "params": {}},
        {"op": "metrics", "run_id": "r", "metrics": {"test.clean_acc": 0.9}, "step": 2, "timestamp": 1},
    )
    assert [h["epoch"] for h in journal.epochs_missing("r", HISTORY, "train.loss")] == [0, 1, 2]


def test_a_run_the_journal_did_not_see_created_is_never_backfilled(tmp_path):
    journal = journal_with(tmp_path, {"op": "status", "run_id": "r", "status": "RUNNING"})
    assert journal.epochs_missing("r", HISTORY, "train.loss") == []
