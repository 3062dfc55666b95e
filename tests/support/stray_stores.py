"""Stores a test run must not leave behind: MLflow's implicit default store (`mlflow.db`, the file store `mlruns/`,
the server's default artifacts `mlartifacts/`) and rkdbench's default results folder (`rkdbench-results/`), in the
repository root or the directory the tests started in. tests/conftest.py fails the session when one appears."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

__all__ = ["STRAY_NAMES", "REPOSITORY", "stores_in", "stray_message"]

STRAY_NAMES = ("mlflow.db", "mlruns", "mlartifacts", "rkdbench-results")
REPOSITORY = Path(__file__).resolve().parents[2]


def stores_in(folders: Iterable[Path]) -> set[Path]:
    """The stray stores that exist in `folders` now."""
    return {folder / name for folder in folders for name in STRAY_NAMES if (folder / name).exists()}


def stray_message(left: Iterable[Path]) -> str:
    return (
        f"the tests left {', '.join(str(p) for p in sorted(left))}: a command or test let MLflow use its implicit "
        "default tracking URI (./mlflow.db) or ran without --results; give it tmp_path (and delete these)"
    )
