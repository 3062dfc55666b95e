"""No metric lost while the tracking server is away: everything a cell logs goes through a journal next to its
checkpoint, and reaches MLflow from there.

`<results>/cells/<key>/journal.jsonl` holds one JSON entry per logging call (params, metrics with the timestamp
taken when they were journaled, tags, artifacts, status), appended and fsynced before delivery is attempted;
`journal.delivered` holds how many entries MLflow has (written atomically after each delivered entry). When the
server does not answer, training goes on (checkpoints are local) and delivery is retried at the next logging
call, at the latest when the cell ends; a cell whose journal cannot be delivered by then ends with one line,
and the next `rkdbench run` delivers it without retraining. The run's terminal status is the journal's last
entry, so MLflow never shows a run FINISHED with metrics missing. Delivery is idempotent: an entry whose
delivery may have reached the server without being recorded (a crash, a lost response) is checked against the
run first, and metrics already present (same key, step, timestamp and value) are not logged again.
Only the cell's lease holder writes its journal.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from ..atomic import write_text_atomic

__all__ = ["Journal", "JournaledTracker", "is_unreachable", "quick_http_failures", "JOURNAL_NAME"]

JOURNAL_NAME = "journal.jsonl"
DELIVERED_NAME = "journal.delivered"
TERMINAL = ("FINISHED", "FAILED", "KILLED")
RETRY_SECONDS = 5.0  # while the server is away, a logging call retries delivery at most this often
# MLflow's own defaults retry a refused request 7 times with exponential backoff (minutes): a cell would stall.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
_TRANSIENT_TEXT = (
    "failed with exception",
    "failed with timeout exception",
    "database is locked",
    "Max retries exceeded",
    "Connection refused",
    "failed with error code 5",
)


def quick_http_failures() -> None:
    """Short MLflow client retries for a tracking server (values the user set win)."""
    for name, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)


def is_unreachable(exc: BaseException) -> bool:
    """A failure of the store's availability (server down or restarting, network, a locked sqlite file), not of
    what was logged."""
    try:
        import requests

        if isinstance(exc, requests.exceptions.RequestException):
            return True
    except ImportError:  # pragma: no cover - MLflow depends on requests
        pass
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    text = str(exc)
    return any(marker in text for marker in _TRANSIENT_TEXT)


class Journal:
    """The append-only log of one cell and how much of it MLflow has."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.path = self.folder / JOURNAL_NAME
        self.delivered_path = self.folder / DELIVERED_NAME
        self.entries: list[dict[str, Any]] = self._read()
        self.delivered = min(self._read_delivered(), len(self.entries))

    def _read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        data = self.path.read_bytes()
        complete = data[: data.rfind(b"\n") + 1]
        if len(complete) != len(data):  # a kill mid-append: the partial line was never delivered; drop it
            with self.path.open("r+b") as fh:
                fh.truncate(len(complete))
        return [json.loads(line) for line in complete.decode().splitlines() if line.strip()]

    def _read_delivered(self) -> int:
        try:
            return int(self.delivered_path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return 0

    @property
    def pending(self) -> list[dict[str, Any]]:
        return self.entries[self.delivered :]

    def append(self, entry: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as fh:
            fh.write((json.dumps(entry, sort_keys=True) + "\n").encode())
            fh.flush()
            os.fsync(fh.fileno())
        self.entries.append(entry)

    def mark_delivered(self, count: int) -> None:
        self.delivered = count
        write_text_atomic(self.delivered_path, f"{count}\n")

    def discard_pending(self) -> int:
        """Drop what was never delivered (its run is gone from the store: a new run replaces it); how many."""
        dropped = len(self.pending)
        if dropped:
            self.mark_delivered(len(self.entries))
        return dropped

    def terminal_status(self, run_id: str) -> str | None:
        """The run's last status entry if it ended (FINISHED, FAILED, KILLED), else None."""
        statuses = [e["status"] for e in self.entries if e["op"] == "status" and e["run_id"] == run_id]
        return statuses[-1] if statuses and statuses[-1] in TERMINAL else None

    def epochs_missing(self, run_id: str, history: list[dict[str, float]], key: str) -> list[dict[str, float]]:
        """The `history` entries (one per epoch, with "epoch") whose `key` metric this journal never recorded for
        the run: epochs whose checkpoint was written but whose process died before their metrics were journaled.
        Empty for a run this journal did not see created (an older version's run: its metrics are in MLflow)."""
        entries = [e for e in self.entries if e["run_id"] == run_id]
        if not any(e["op"] == "params" for e in entries):
            return []
        logged = {e["step"] for e in entries if e["op"] == "metrics" and key in e["metrics"]}
        return [h for h in history if int(h["epoch"]) not in logged]

    def metric_keys(self, run_id: str, step: int) -> set[str]:
        """The metrics journaled for the run at `step`."""
        return {
            key
            for e in self.entries
            if e["op"] == "metrics" and e["run_id"] == run_id and e["step"] == step
            for key in e["metrics"]
        }

    def metrics(self, run_id: str) -> dict[str, float]:
        """The last value of every metric journaled for the run."""
        values: dict[str, float] = {}
        for entry in self.entries:
            if entry["op"] == "metrics" and entry["run_id"] == run_id:
                values.update(entry["metrics"])
        return values


class JournaledTracker:
    """A `Tracker` whose logging calls go through a cell's `Journal`; everything else is the tracker's."""

    def __init__(self, tracker: Any, folder: str | os.PathLike[str]) -> None:
        self.tracker = tracker
        self.journal = Journal(folder)
        self._uncertain = True  # a previous process may have delivered the first pending entry unrecorded
        self._failed_at: float | None = None
        self.last_error = ""
        self.rejected = False  # the store refused an entry (not an outage): delivery stops, the cell fails
        if tracker.uri.startswith(("http://", "https://")):
            quick_http_failures()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tracker, name)

    # -- logging: journal first, then try to deliver -------------------------------------------------------
    def _log(self, entry: dict[str, Any]) -> None:
        self.journal.append(entry)
        if self._failed_at is None or time.monotonic() - self._failed_at >= RETRY_SECONDS:
            self.deliver()

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        self._log({"op": "params", "run_id": run_id, "params": {k: str(v) for k, v in params.items()}})

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
        values = {k: float(v) for k, v in metrics.items() if v is not None}
        self._log(
            {
                "op": "metrics",
                "run_id": run_id,
                "metrics": values,
                "step": int(step),
                "timestamp": int(time.time() * 1000),
            }
        )

    def log_metrics_once(self, run_id: str, metrics: dict[str, float], step: int) -> None:
        """`log_metrics`, leaving out the keys this journal already holds for the run at `step`: a cell's final
        metrics, journaled before a kill that came ahead of FINISHED, are not logged a second time by the resumed
        cell (whose evaluation, resumed bit for bit, gives the same numbers: the first ones stay)."""
        logged = self.journal.metric_keys(run_id, step)
        fresh = {key: value for key, value in metrics.items() if key not in logged}
        if fresh:
            self.log_metrics(run_id, fresh, step=step)

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        self._log({"op": "tags", "run_id": run_id, "tags": {k: str(v) for k, v in tags.items()}})

    def log_artifact(self, run_id: str, path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        self._log(
            {"op": "artifact", "run_id": run_id, "path": str(Path(path).resolve()), "artifact_path": artifact_path}
        )

    def mark_running(self, run_id: str) -> None:
        self._log({"op": "status", "run_id": run_id, "status": "RUNNING"})

    def finish(self, run_id: str, status: str) -> None:
        self._log({"op": "status", "run_id": run_id, "status": status})

    # -- delivery ----------------------------------------------------------------------------------------------
    def deliver(self) -> bool:
        """Send every pending entry in order; True when MLflow has the whole journal. A store that does not
        answer stops delivery (retried later); an entry the store refuses is raised once, and stops delivery."""
        journal = self.journal
        if self.rejected:
            return False
        while journal.delivered < len(journal.entries):
            entry = journal.entries[journal.delivered]
            try:
                self._send(entry, check_existing=self._uncertain)
            except Exception as exc:
                if not is_unreachable(exc):
                    self.rejected = True
                    self.last_error = (
                        f"the store refused entry {journal.delivered + 1} ({entry['op']}) of "
                        f"{journal.path}: {type(exc).__name__}: {str(exc).splitlines()[0]}"
                    )
                    raise
                self._uncertain = True  # the request may have reached the server before the answer was lost
                self._failed_at = time.monotonic()
                self.last_error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                return False
            journal.mark_delivered(journal.delivered + 1)
            self._uncertain = False
        self._failed_at = None
        return True

    def _send(self, entry: dict[str, Any], check_existing: bool) -> None:
        op, run_id, tracker = entry["op"], entry["run_id"], self.tracker
        if op == "params":
            tracker.log_params(run_id, entry["params"])  # skips keys the run has: idempotent
        elif op == "metrics":
            self._send_metrics(run_id, entry, check_existing)
        elif op == "tags":
            tracker.set_tags(run_id, entry["tags"])
        elif op == "artifact":
            tracker.log_artifact(run_id, entry["path"], entry["artifact_path"])
        elif op == "status":
            if entry["status"] == "RUNNING":
                tracker.mark_running(run_id)
            else:
                tracker.finish(run_id, entry["status"])
        else:
            raise ValueError(f"{self.journal.path}: unknown journal entry {op!r}")

    def _send_metrics(self, run_id: str, entry: dict[str, Any], check_existing: bool) -> None:
        step, metrics = entry["step"], entry["metrics"]
        if check_existing:
            history = self.tracker.metric_history
            metrics = {
                key: value
                for key, value in metrics.items()
                if not any(
                    m.step == step and m.timestamp == entry["timestamp"] and m.value == value
                    for m in history(run_id, key)
                )
            }
        self.tracker.log_metrics(run_id, metrics, step=step, timestamp=entry["timestamp"])
