"""A store as an MLflow of long ago left it, holding runs: what the store tests and `benchmarks/store_kills.py`
migrate, repair and kill, and the check that its runs came through whole."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mlflow.tracking import MlflowClient

from rkdbench.tracking.sqlite_store import build, revisions

__all__ = ["old_store", "assert_old_runs_intact"]


def old_store(database: Path) -> None:
    """What an MLflow of long ago left: its first schema revision, with an experiment holding three runs, each
    with a param, a tag and a metric at three steps."""
    database.parent.mkdir(parents=True, exist_ok=True)
    build(database, revisions()[0])
    with sqlite3.connect(database) as conn:
        conn.execute(
            "INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage) VALUES "
            "(0, 'Default', '/tmp/a', 'active'), (1, 'digits-linf', '/tmp/b', 'active')"
        )
        for r in range(3):
            conn.execute(
                "INSERT INTO runs (run_uuid, name, user_id, source_type, status, start_time, lifecycle_stage, "
                "artifact_uri, experiment_id) VALUES (?, ?, 'me', 'LOCAL', 'FINISHED', ?, 'active', '/tmp/b', 1)",
                (f"run{r}", f"cell-{r}", 1000 + r),
            )
            conn.execute("INSERT INTO tags VALUES ('rkdbench.cell', ?, ?)", (f"cell{r}", f"run{r}"))
            conn.execute("INSERT INTO params VALUES ('cell.seed', ?, ?)", (str(r), f"run{r}"))
            for step in range(3):
                conn.execute(
                    "INSERT INTO metrics (key, value, timestamp, run_uuid, step) VALUES ('val.pgd_acc', ?, ?, ?, ?)",
                    (r + step / 10, 5000 + step, f"run{r}", step),
                )


def assert_old_runs_intact(database: Path) -> None:
    client = MlflowClient(f"sqlite:///{database}")
    runs = sorted(client.search_runs(["1"]), key=lambda run: run.info.run_id)
    assert [run.info.run_id for run in runs] == ["run0", "run1", "run2"]
    for r, run in enumerate(runs):
        assert run.info.status == "FINISHED" and run.data.params == {"cell.seed": str(r)}
        assert run.data.tags["rkdbench.cell"] == f"cell{r}"
        history = client.get_metric_history(run.info.run_id, "val.pgd_acc")
        assert sorted((m.step, m.value) for m in history) == [(s, r + s / 10) for s in range(3)]
