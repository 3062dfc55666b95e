"""The headline view of `rkdbench ui`: an MLflow *saved view* per protocol experiment, and the URL that opens it.

MLflow's runs table shows the columns chosen in the browser (kept in its local storage); the page's URL carries
only the search facets (`searchFilter`, `orderByKey`, `orderByAsc`, `startTime`, `lifecycleFilter`,
`modelVersionFilter`, `datasetsFilter`), never the columns. What carries columns is a saved view (MLflow >= 3.15:
"Views -> Save as new view" on the Runs tab), stored as the experiment tag `mlflow.sharedViewState.<id>` =
`{"name", "createdAt", "updatedAt", "state"}`, `state` being the JSON of the search facets and the runs table's UI
state (`selectedColumns`, ...); the UI lists it under the views menu and opens it from `?viewStateShareKey=<id>`.
`install_views` writes one such view per experiment holding rkdbench runs: AutoAttack accuracy descending, the
headline metrics and the cell's tags as columns; rewritten only when it changed, so reruns are no-ops. It also sets
`mlflow.experimentKind` (what the UI's experiment-type choice writes) to model training where it is unset: MLflow 3
otherwise opens an experiment on its GenAI traces overview. Older MLflow ignores the view (default columns).
"""

from __future__ import annotations

import json
import re
import time
from urllib.parse import quote

from .tracking import Tracker, schema

__all__ = ["VIEW_ID", "VIEW_NAME", "VIEW_TAG", "HEADLINE_METRICS", "view_state", "install_views", "experiment_url",
           "sorted_url"]

VIEW_ID = "rkdbench-headline"
VIEW_NAME = "rkdbench: headline metrics"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_ID}"
KIND_TAG, KIND_TRAINING = "mlflow.experimentKind", "custom_model_development"
HEADLINE_METRICS = ("test.clean_acc", "test.pgd20_acc", "test.aa_acc")
SORT_METRIC = "test.aa_acc"
TAG_COLUMNS = ("method_variant", "student", "teacher", "seed", "flags")
_ATTACK_METRIC = re.compile(r"^test\.([^.]+)_acc$")


def _column(kind: str, key: str) -> str:
    """MLflow's canonical column key: kind and the backquoted name (`metrics.`test.aa_acc``)."""
    return f"{kind}.`{key}`"


def _metric_columns(metric_keys: set[str]) -> list[str]:
    """clean, pgd20, the other attacks (sorted), then AutoAttack; `test.worst_acc` and AutoAttack stages left out."""
    labels = {m.group(1) for key in metric_keys if (m := _ATTACK_METRIC.match(key))} - {"worst"}
    headline = [key[len("test."):-len("_acc")] for key in HEADLINE_METRICS]  # always shown, even when missing
    others = sorted(labels - set(headline))
    return [f"test.{label}_acc" for label in headline[:-1] + others + headline[-1:]]


def view_state(metric_keys: set[str] = frozenset()) -> dict:
    """The saved view's state: AutoAttack accuracy descending, the headline metrics (and any other attack's
    `test.<label>_acc`) and the cell tags as columns."""
    columns = [_column("metrics", key) for key in _metric_columns(set(metric_keys))]
    columns += [_column("tags", schema.tag(name)) for name in TAG_COLUMNS]
    return {"orderByKey": _column("metrics", SORT_METRIC), "orderByAsc": False, "selectedColumns": columns}


def _rkdbench_experiments(tracker: Tracker) -> list[tuple[str, str, set[str]]]:
    """(name, id, metric keys) of every active experiment with at least one rkdbench run."""
    found = []
    for experiment_id, name in tracker.experiments().items():
        runs = tracker.search_runs(schema.RKDBENCH_RUNS, [experiment_id], max_results=1000)
        if runs:
            keys = {key for run in runs for key in run.data.metrics}
            found.append((name, experiment_id, keys))
    return found


def install_views(tracker: Tracker) -> list[tuple[str, str]]:
    """Write (or refresh) the headline saved view on every experiment with rkdbench runs; (name, id) of each,
    sorted by name."""
    installed = []
    for name, experiment_id, metric_keys in _rkdbench_experiments(tracker):
        state = view_state(metric_keys)
        tags = tracker.experiment_tags(experiment_id)
        if KIND_TAG not in tags:  # what the UI's "experiment type" choice writes; the user's choice is kept
            tracker.set_experiment_tag(experiment_id, KIND_TAG, KIND_TRAINING)
        current = tags.get(VIEW_TAG)
        created = None
        if current:
            try:
                envelope = json.loads(current)
                created = int(envelope["createdAt"])
                unchanged = envelope.get("name") == VIEW_NAME and json.loads(envelope["state"]) == state
            except (ValueError, KeyError, TypeError):
                unchanged = False
            if unchanged:
                installed.append((name, experiment_id))
                continue
        now = int(time.time() * 1000)
        envelope = {"name": VIEW_NAME, "createdAt": created or now, "updatedAt": now,
                    "state": json.dumps(state, separators=(",", ":"))}
        tracker.set_experiment_tag(experiment_id, VIEW_TAG, json.dumps(envelope, separators=(",", ":")))
        installed.append((name, experiment_id))
    return sorted(installed)


def experiment_url(base: str, experiment_id: str) -> str:
    """The experiment's runs table in the headline saved view."""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning" \
           f"&viewStateShareKey={VIEW_ID}"


def sorted_url(base: str, experiment_id: str) -> str:
    """Without a saved view (a read-only store): the runs table sorted by AutoAttack accuracy; columns as last
    chosen in this browser."""
    key = quote(_column("metrics", SORT_METRIC), safe="")
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning" \
           f"&orderByKey={key}&orderByAsc=false"
