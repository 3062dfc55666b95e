"""No store in the current directory unless asked: MLflow 3's implicit default tracking URI is `./mlflow.db` (what
wrote the `mlflow.db` once committed at the repository root), so the tracking layer refuses to open a store it was
not given, and the one MLflow call that reads the process-wide URI (`search_runs_frame`) sets it for that call only."""

from __future__ import annotations

import mlflow
import pytest

from rkdbench.errors import TrackingError
from rkdbench.tracking import Tracker, tracking_uri
from rkdbench.tracking.store import open_client


def test_mlflow_alone_would_write_into_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert mlflow.get_tracking_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.mark.parametrize("open_store", [tracking_uri, Tracker, open_client])
def test_a_store_that_is_not_named_is_refused(tmp_path, monkeypatch, open_store):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TrackingError, match=r"no tracking store named: .*--results DIR.*\./mlflow\.db"):
        open_store("")
    assert not list(tmp_path.iterdir())


def test_searching_a_store_leaves_no_store_here_and_no_process_wide_uri(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tracker = Tracker(tmp_path / "results")
    tracker.experiment_id("toy")
    assert tracker.search_runs_frame("attributes.status = 'FINISHED'").empty
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]
    assert mlflow.get_tracking_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"  # back to MLflow's own default
