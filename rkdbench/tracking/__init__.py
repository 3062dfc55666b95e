"""rkdbench's MLflow tracking: the store, the schema of what is logged, and the one client that reads and writes it.

- `schema`: every tag name (`schema.CELL`, `schema.PROTOCOL_HASH`, ...; `schema.tag("best_val.flags")`), the run
  kinds (`schema.RunKind.CELL`, `EVALUATION`, `LEADERBOARD`), the tags of each kind (`schema.cell_tags(...)`,
  `evaluation_tags`, `leaderboard_tags`, `experiment_tags`, `training_tags`), the params flattening
  (`schema.protocol_params(protocol.data)`) and the search filters (`schema.finished_cells(protocol)`,
  `cell_runs(key)`, `all_cells(protocol_hash)`, `finished_evaluations()`, `leaderboard_runs(hash, selection)`).
- `Tracker(results)`: experiments by protocol, runs by cell key, batched logging (`log_params`, `log_metrics`,
  `set_tags`, `log_artifact`, `log_table`, `log_figure`) and reading (`experiments`, `search_runs`,
  `search_runs_frame`, `get_run`, `download_artifact`, `metric_history`, `experiment_tags`, `set_experiment_tag`).
- `store`: opening (under a lock), creating and migrating the store (`upgrade_store`).

No other rkdbench module spells an `rkdbench.` tag or uses MLflow's client
(tests/tracking/test_tracking_schema.py checks).
"""

from __future__ import annotations

from . import schema
from .tracker import MissingArtifact, Tracker, git_sha, tracking_uri

__all__ = ["Tracker", "MissingArtifact", "tracking_uri", "git_sha", "schema"]
