"""MLflow tracking through `MlflowClient` (no global active-run state): the store URI, one experiment per
protocol, one run per cell found by its `rkdbench.cell` tag, and batched logging.

The URI is `$MLFLOW_TRACKING_URI` if set, else `sqlite:///<results>/mlflow.db`: never the implicit cwd
default and never the deprecated file store. Artifacts go under `<results>/artifacts`.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

from .errors import TrackingError

__all__ = ["Tracker", "tracking_uri", "git_sha", "TAG_PREFIX"]

TAG_PREFIX = "rkdbench."
MAX_PARAM_LENGTH = 6000


def tracking_uri(results: str | os.PathLike[str]) -> str:
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{Path(results).resolve() / 'mlflow.db'}"


def git_sha() -> str:
    """The harness's commit (the `rkdbench.git_sha` tag), or 'unknown' outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True,
                             timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class Tracker:
    """A thin layer over MlflowClient: experiments by protocol, runs by cell key, flat params and metrics."""

    def __init__(self, results: str | os.PathLike[str]) -> None:
        self.results = Path(results)
        self.uri = tracking_uri(self.results)
        self._client = None

    @property
    def client(self):
        if self._client is None:
            from .store import open_client

            self._client = open_client(self.uri)  # a fresh sqlite store is created once, under a lock
        return self._client

    def check_reachable(self) -> None:
        """Fail before any training when the store cannot be read (and, for sqlite, created)."""
        try:
            self.client.search_experiments(max_results=1)
        except Exception as exc:
            raise TrackingError(f"MLflow tracking store {self.uri} is unreachable: {type(exc).__name__}: "
                                f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc

    def experiment_id(self, name: str, tags: dict[str, str] | None = None) -> str:
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        location = (self.results / "artifacts").resolve().as_uri() if self.uri.startswith("sqlite:") else None
        try:
            return self.client.create_experiment(name, artifact_location=location, tags=tags or {})
        except Exception:
            experiment = self.client.get_experiment_by_name(name)  # another worker created it meanwhile
            if experiment is None:
                raise
            return experiment.experiment_id

    def find_run(self, experiment_id: str, cell_key: str):
        """The run that counts for this cell (`counting`: the newest FINISHED one, else the newest), or None."""
        from .counting import counted_runs

        runs = self.client.search_runs([experiment_id], filter_string=f"tags.`rkdbench.cell` = '{cell_key}'",
                                       order_by=["attributes.start_time DESC"], max_results=100)
        return counted_runs(runs)[0][0] if runs else None

    def create_run(self, experiment_id: str, run_name: str, tags: dict[str, str]) -> str:
        run = self.client.create_run(experiment_id, run_name=run_name, tags=tags)
        return run.info.run_id

    def mark_running(self, run_id: str) -> None:
        self.client.update_run(run_id, status="RUNNING")

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        existing = self.client.get_run(run_id).data.params
        new = [Param(k, str(v)[:MAX_PARAM_LENGTH]) for k, v in params.items() if k not in existing]
        for i in range(0, len(new), 100):
            self.client.log_batch(run_id, params=new[i:i + 100])

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0, timestamp: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000) if timestamp is None else timestamp
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items() if v is not None]
        for i in range(0, len(batch), 500):
            self.client.log_batch(run_id, metrics=batch[i:i + 500])

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifact(self, run_id: str, path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path)

    def finish(self, run_id: str, status: str) -> None:
        self.client.set_terminated(run_id, status=status)
