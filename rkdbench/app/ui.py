"""`rkdbench ui`: the MLflow UI on a results store. It installs the saved headline view in each protocol's
experiment, prints each experiment's URL, and runs `mlflow server` bound to 127.0.0.1 by default; against a
tracking server (MLFLOW_TRACKING_URI=http://...) that server is the UI, so it prints its URLs and starts nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import click

__all__ = ["UiRequest", "launch_ui"]


@dataclass(frozen=True)
class UiRequest:
    """The store to browse and where the UI listens (`workers`: MLflow server processes)."""

    results: str = "rkdbench-results"
    host: str = "127.0.0.1"
    port: int = 5000
    workers: int = 1


def launch_ui(request: UiRequest) -> int:
    """Print the UI's URLs, then serve it until interrupted; returns the server's exit code (0 when remote)."""
    from ..leaderboard.mlflow_view import experiment_url, install_views, sort_labels, sorted_url
    from ..tracking import Tracker
    from ..tracking.counting import ignored_duplicates, ignored_note

    tracker = Tracker(request.results)
    tracker.check_reachable()
    host = request.host
    shown = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(host, f"[{host}]" if ":" in host else host)
    remote = tracker.uri.startswith(("http://", "https://"))  # a tracking server (rkdbench server) is the UI
    base = tracker.uri.rstrip("/") if remote else f"http://{shown}:{request.port}"
    try:
        experiments, url = install_views(tracker), experiment_url
    except Exception as exc:  # a read-only or remote store: sorted, columns as last chosen in the browser
        click.echo(f"rkdbench: warning: saved view not written ({type(exc).__name__}: {exc})", err=True)
        labelled = sort_labels(tracker)
        ranked = {experiment_id: label for _, experiment_id, label in labelled}
        experiments = [(name, experiment_id) for name, experiment_id, _ in labelled]

        def url(base: str, experiment_id: str) -> str:
            return sorted_url(base, experiment_id, ranked[experiment_id])

    click.echo(
        f"MLflow UI for {tracker.uri} at {base}"
        + ("  (served by the tracking server)" if remote else "  (Ctrl-C stops it)")
    )
    for name, experiment_id in experiments:
        click.echo(f"  {name}: {url(base, experiment_id)}")
    note = ignored_note(ignored_duplicates(tracker))
    if note:
        click.echo(f"rkdbench: {note}; MLflow's runs table still lists them", err=True)
    if remote:
        return 0
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        tracker.uri,
        # where the server keeps artifacts of experiments made in the UI: the store's folder, not ./mlartifacts
        "--artifacts-destination",
        str((tracker.results / "artifacts").resolve()),
        "--host",
        host,
        "--port",
        str(request.port),
        "--workers",
        str(request.workers),
    ]
    # MLflow's background job runner (GenAI judges, trace rollups: seven extra processes) is not needed to browse
    # runs; `MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true` turns it back on.
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}
    return subprocess.call(command, env=env)
