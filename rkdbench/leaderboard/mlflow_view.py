"""The headline view of `rkdbench ui`: an MLflow *saved view* per protocol experiment, and the URL that opens it.

MLflow's runs table shows the columns chosen in the browser (kept in its local storage); the page's URL carries
only the search facets (`searchFilter`, `orderByKey`, `orderByAsc`, `startTime`, `lifecycleFilter`,
`modelVersionFilter`, `datasetsFilter`), never the columns. What carries columns is a saved view (MLflow >= 3.15:
"Views -> Save as new view" on the Runs tab), stored as the experiment tag `mlflow.sharedViewState.<id>` =
`{"name", "createdAt", "updatedAt", "state"}`, `state` being the JSON of the search facets and the runs table's UI
state (`selectedColumns`, ...); the UI lists it under the views menu and opens it from `?viewStateShareKey=<id>`.
`install_views` writes one such view per experiment holding rkdbench runs: sorted by the accuracy its protocol
ranks by (descending; the final attack's, AutoAttack for the built-in protocols), clean and every attack's accuracy
in the order the attacks declare (`rkdbench.attacks.traits`) and the cell's tags as columns; rewritten only when
it changed, so reruns are no-ops. It also sets
`mlflow.experimentKind` (what the UI's experiment-type choice writes) to model training where it is unset: MLflow 3
otherwise opens an experiment on its GenAI traces overview. Older MLflow ignores the view (default columns).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from urllib.parse import quote

from ..attacks.traits import CLEAN, WORST, AttackEntry, attack_specs, column_order, legacy_specs, plugins_of, rank_label
from ..tracking import Tracker, schema

__all__ = [
    "VIEW_ID",
    "VIEW_NAME",
    "VIEW_TAG",
    "view_state",
    "install_views",
    "experiment_url",
    "sorted_url",
    "sort_labels",
]

VIEW_ID = "rkdbench-headline"
VIEW_NAME = "rkdbench: headline metrics"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_ID}"
KIND_TAG, KIND_TRAINING = "mlflow.experimentKind", "custom_model_development"
TAG_COLUMNS = ("method_variant", "student", "teacher", "seed", "flags")
SPLIT = schema.selection_split("last")  # the headline view shows the last checkpoint's evaluation
RANK_BY = schema.PROTOCOL_PARAMS + "eval.rank_by"  # the protocol's optional choice of the label that ranks


def _column(kind: str, key: str) -> str:
    """MLflow's canonical column key: kind and the backquoted name (`metrics.`test.pgd20_acc``)."""
    return f"{kind}.`{key}`"


def _test_labels(metric_keys: Iterable[str]) -> set[str]:
    """The labels of the accuracies among `metric_keys` of the last checkpoint (`test.<label>_acc`): AutoAttack
    stages and worst-class accuracies left out."""
    keys = (schema.parse_metric_key(name) for name in metric_keys)
    return {key.label for key in keys if key is not None and key.split == SPLIT and key.is_accuracy}


def _labels(
    metric_keys: set[str], specs: Mapping[str, AttackEntry], rank_by: str | None = None
) -> tuple[list[str], str]:
    """(attack labels in table order, the label to sort by): every label of the protocol (shown even before it
    has a metric) or with a `test.<label>_acc` metric, ordered by what the attacks declare (final ones last);
    `test.worst_acc`, worst-class accuracies and AutoAttack stages left out."""
    labels = (_test_labels(metric_keys) | set(specs)) - {WORST, CLEAN}
    plugins = plugins_of(specs)
    ordered = column_order(labels, specs, plugins)
    return ordered, rank_label(ordered, specs, plugins, rank_by) if ordered else CLEAN


def view_state(
    metric_keys: set[str] = frozenset(),
    specs: Mapping[str, AttackEntry] | None = None,
    rank_by: str | None = None,
) -> dict:
    """The saved view's state: the accuracy the protocol ranks by (`rank_by`, its `eval.rank_by`, else its final
    attack's: AutoAttack) descending, clean and every attack's `test.<label>_acc`, and the cell tags as columns.
    `specs`: the protocol's `[eval.attacks]` (`attack_specs` of a run's params)."""
    labels, sort_label = _labels(set(metric_keys), specs or {}, rank_by)
    columns = [_column("metrics", schema.metric_key(SPLIT, label)) for label in [CLEAN, *labels]]
    columns += [_column("tags", schema.tag(name)) for name in TAG_COLUMNS]
    order_by = _column("metrics", schema.metric_key(SPLIT, sort_label))
    return {"orderByKey": order_by, "orderByAsc": False, "selectedColumns": columns}


def _rkdbench_experiments(tracker: Tracker) -> list[tuple[str, str, set[str], dict[str, AttackEntry], str | None]]:
    """(name, id, metric keys, attack specs, rank label) of every active experiment with at least one rkdbench run."""
    found = []
    for experiment_id, name in tracker.experiments().items():
        runs = tracker.search_runs(schema.RKDBENCH_RUNS, [experiment_id], max_results=1000)
        if runs:
            keys = {key for run in runs for key in run.data.metrics}
            # runs logged before the protocol was among their params: their labels mean what they meant then
            measured = _test_labels(keys)
            legacy = {label: entry for label, entry in legacy_specs().items() if label in measured}
            specs = {**legacy, **{label: spec for run in runs for label, spec in attack_specs(run.data.params).items()}}
            rank_by = next((r.data.params[RANK_BY] for r in runs if RANK_BY in r.data.params), None)
            found.append((name, experiment_id, keys, specs, rank_by))
    return found


def install_views(tracker: Tracker) -> list[tuple[str, str]]:
    """Write (or refresh) the headline saved view on every experiment with rkdbench runs; (name, id) of each,
    sorted by name."""
    installed = []
    for name, experiment_id, metric_keys, specs, rank_by in _rkdbench_experiments(tracker):
        state = view_state(metric_keys, specs, rank_by)
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
        envelope = {
            "name": VIEW_NAME,
            "createdAt": created or now,
            "updatedAt": now,
            "state": json.dumps(state, separators=(",", ":")),
        }
        tracker.set_experiment_tag(experiment_id, VIEW_TAG, json.dumps(envelope, separators=(",", ":")))
        installed.append((name, experiment_id))
    return sorted(installed)


def experiment_url(base: str, experiment_id: str) -> str:
    """The experiment's runs table in the headline saved view."""
    return (
        f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
        f"&viewStateShareKey={VIEW_ID}"
    )


def sort_labels(tracker: Tracker) -> list[tuple[str, str, str]]:
    """(name, id, the label its runs are ranked by) of every experiment with rkdbench runs: what `sorted_url`
    sorts by when no saved view can be written."""
    return [
        (name, experiment_id, _labels(keys, specs, rank_by)[1])
        for name, experiment_id, keys, specs, rank_by in _rkdbench_experiments(tracker)
    ]


def sorted_url(base: str, experiment_id: str, sort_label: str) -> str:
    """Without a saved view (a read-only store): the runs table sorted by `sort_label`'s accuracy (the label the
    protocol ranks by: `view_state(...)["orderByKey"]`); columns as last chosen in this browser."""
    key = quote(_column("metrics", schema.metric_key(SPLIT, sort_label)), safe="")
    return (
        f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
        f"&orderByKey={key}&orderByAsc=false"
    )
