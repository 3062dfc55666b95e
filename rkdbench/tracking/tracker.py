"""MLflow tracking through `MlflowClient` (no global active-run state): the store URI, one experiment per
protocol, one run per cell found by its cell tag, batched logging, and the searches and downloads the readers of
the store need. The only module that talks to MLflow's client (with `store`, which opens it); the names it writes
and searches come from `schema`.

The URI is `$MLFLOW_TRACKING_URI` if set, else `sqlite:///<results>/mlflow.db`: never the implicit cwd
default and never the deprecated file store. Artifacts go under `<results>/artifacts`.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import TrackingError, UserError
from . import schema
from .store import IMPLICIT_STORE, open_client

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Tracker", "tracking_uri", "git_sha", "MissingArtifact"]

# MLflow's default page of search results, kept where a caller gives none
DEFAULT_MAX_RESULTS = 1000


class MissingArtifact(LookupError):
    """A run has no such artifact, or it could not be downloaded."""


def tracking_uri(results: str | os.PathLike[str]) -> str:
    """`$MLFLOW_TRACKING_URI` if set, else the sqlite store of the results folder; a TrackingError without either
    (never MLflow's implicit default, a `mlflow.db` in whatever the current directory is)."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    if results is None or not os.fspath(results):
        raise TrackingError(IMPLICIT_STORE)
    return f"sqlite:///{Path(results).resolve() / 'mlflow.db'}"


def git_sha() -> str:
    """The harness's commit (the `schema.GIT_SHA` tag), or 'unknown' outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class Tracker:
    """A thin layer over MlflowClient: experiments by protocol, runs by cell key, flat params and metrics."""

    def __init__(self, results: str | os.PathLike[str]) -> None:
        self.uri = tracking_uri(results)  # before Path(): Path("") would be the current directory
        self.results = Path(results)
        self._client = None

    @property
    def client(self):
        if self._client is None:
            self._client = open_client(self.uri)  # a fresh sqlite store is created once, under a lock
        return self._client

    def check_reachable(self) -> None:
        """Fail before any training when the store cannot be read (and, for sqlite, created)."""
        try:
            self.client.search_experiments(max_results=1)
        except UserError:
            raise  # the store is there but cannot be used as it is: its own one line says why and what to do
        except Exception as exc:
            raise TrackingError(
                f"MLflow tracking store {self.uri} is unreachable: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}"
            ) from exc

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

        runs = self.client.search_runs(
            [experiment_id], filter_string=schema.cell_runs(cell_key), order_by=schema.NEWEST_FIRST, max_results=100
        )
        return counted_runs(runs)[0][0] if runs else None

    def create_run(self, experiment_id: str, run_name: str, tags: dict[str, str]) -> str:
        run = self.client.create_run(experiment_id, run_name=run_name, tags=tags)
        return run.info.run_id

    def mark_running(self, run_id: str) -> None:
        self.client.update_run(run_id, status="RUNNING")

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        existing = self.client.get_run(run_id).data.params
        new = [Param(k, schema.param_text(v)) for k, v in params.items() if k not in existing]
        for i in range(0, len(new), 100):
            self.client.log_batch(run_id, params=new[i : i + 100])

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0, timestamp: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000) if timestamp is None else timestamp
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items() if v is not None]
        for i in range(0, len(batch), 500):
            self.client.log_batch(run_id, metrics=batch[i : i + 500])

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifact(self, run_id: str, path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path)

    def finish(self, run_id: str, status: str) -> None:
        self.client.set_terminated(run_id, status=status)

    # Reading the store: experiments, runs, artifacts, metric histories

    def experiments(self) -> dict[str, str]:
        """Id -> name of every active experiment, in MLflow's order."""
        return {e.experiment_id: e.name for e in self.client.search_experiments()}

    def experiment_tags(self, experiment_id: str) -> dict[str, str]:
        return dict(self.client.get_experiment(experiment_id).tags)

    def set_experiment_tag(self, experiment_id: str, key: str, value: str) -> None:
        self.client.set_experiment_tag(experiment_id, key, value)

    def search_runs(
        self,
        filter_string: str,
        experiment_ids: list[str] | None = None,
        order_by: list[str] | None = None,
        max_results: int = DEFAULT_MAX_RESULTS,
    ) -> list[Any]:
        """MLflow `Run`s matching a `schema` filter, in `experiment_ids` (None: every active experiment)."""
        experiments = list(self.experiments()) if experiment_ids is None else experiment_ids
        if not experiments:
            return []
        return self.client.search_runs(
            experiments, filter_string=filter_string, order_by=order_by, max_results=max_results
        )

    def search_runs_frame(self, filter_string: str, experiment_ids: list[str] | None = None) -> pd.DataFrame:
        """The same as `search_runs`, every match, as `mlflow.search_runs`' DataFrame (`tags.<name>`,
        `params.<name>`, `metrics.<name>` columns); empty without experiments."""
        import mlflow
        import pandas as pd

        experiments = list(self.experiments()) if experiment_ids is None else experiment_ids
        if not experiments:
            return pd.DataFrame()
        # mlflow.search_runs reads the process-wide tracking URI (and exports it to the environment): set it for
        # this one call only, so that a later store opened in the same process is not this one
        previous = os.environ.get("MLFLOW_TRACKING_URI")
        mlflow.set_tracking_uri(self.uri)
        try:
            return mlflow.search_runs(experiment_ids=experiments, filter_string=filter_string, output_format="pandas")
        finally:
            mlflow.set_tracking_uri(previous)

    def get_run(self, run_id: str) -> Any | None:
        """The MLflow `Run`, or None when the store has no such run."""
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_run(run_id)
        except MlflowException:
            return None

    def download_artifact(self, run_id: str, path: str, folder: str | os.PathLike[str]) -> Path:
        """Download one artifact of a run into `folder`; MissingArtifact when the run has none."""
        from mlflow.exceptions import MlflowException

        try:
            return Path(self.client.download_artifacts(run_id, path, dst_path=str(folder)))
        except (MlflowException, OSError) as exc:
            raise MissingArtifact(f"run {run_id} has no artifact {path}: {exc}") from exc

    def metric_history(self, run_id: str, key: str) -> list[Any]:
        """Every logged value of one metric, as MLflow `Metric`s (step, value, timestamp)."""
        return self.client.get_metric_history(run_id, key)

    def log_table(self, run_id: str, frame: pd.DataFrame, artifact_file: str) -> None:
        """A DataFrame as MLflow's table artifact (shown as a table in the UI)."""
        self.client.log_table(run_id, data=frame, artifact_file=artifact_file)

    def log_figure(
        self, run_id: str, figure: Any, artifact_file: str, save_kwargs: dict[str, Any] | None = None
    ) -> None:
        self.client.log_figure(run_id, figure, artifact_file, save_kwargs=save_kwargs)
