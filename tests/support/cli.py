"""Running the harness as a user does, and reading what it stored: `cli` (in this process; returns the exit
code), `cli_subprocess` (a subprocess, one torch thread; `cli_started` does not wait for it), a tiny suite file
on the digits protocol, the `TINY` budget the end-to-end tests share, and `runs_of` (the MLflow runs of one kind
in a store, read through MLflow's client)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from rkdbench.cli import main
from rkdbench.tracking import tracking_uri

__all__ = ["TINY", "cli", "cli_subprocess", "cli_started", "suite_file", "runs_of"]

# two epochs, 8 test points, 2 validation PGD steps: a cell in seconds on the CPU
TINY = ["--set", "train.epochs=2", "--set", "eval.n_examples=8", "--set", "train.val_pgd_steps=2"]


def cli(*args: str) -> int:
    """`rkdbench ARGS` in this process; its exit code."""
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    return exit_info.value.code


# Not how long a command should take: a guard that ends a test whose child hangs. Tests wait on events (a file, a
# line, a process's end), which a loaded machine only delays (a 600 s limit failed a resume under load)
HANG_GUARD_S = 3600


def _command(args: Sequence[str], env: dict[str, str] | None) -> tuple[list[str], dict[str, str]]:
    return [sys.executable, "-m", "rkdbench.cli", *args], {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        **(env or {}),
    }


def cli_subprocess(
    *args: str, env: dict[str, str] | None = None, timeout: int = HANG_GUARD_S
) -> subprocess.CompletedProcess:
    """`python -m rkdbench.cli ARGS` in a subprocess (one torch thread, `env` added to this process's), its output
    captured as text."""
    command, full_env = _command(args, env)
    return subprocess.run(command, capture_output=True, text=True, env=full_env, timeout=timeout)


def cli_started(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`cli_subprocess` started and not waited for (`.communicate(timeout=HANG_GUARD_S)` ends it): a command that
    runs beside the test's others."""
    command, full_env = _command(args, env)
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env)


def suite_file(
    folder: Path, methods: Sequence[str] = ("pgd-at",), *, seeds: Sequence[int] = (0,), name: str = "mini"
) -> str:
    """`folder/<name>.toml`: a suite of `methods` x `cnn-tiny` x `seeds` on `digits-linf`; its path."""
    path = folder / f"{name}.toml"
    path.write_text(
        f'[suite]\nname = "{name}"\nprotocol = "digits-linf"\nmethods = {json.dumps(list(methods))}\n'
        f'students = ["cnn-tiny"]\nseeds = {json.dumps(list(seeds))}\n'
    )
    return str(path)


def runs_of(store: str | Path, kind: str = "cell") -> tuple[MlflowClient, list]:
    """(a client of `store`, its runs tagged `rkdbench.kind = kind` in every experiment); `store` is a tracking URI,
    or a results folder (a `Path`) whose store `rkdbench.tracking.tracking_uri` finds."""
    client = MlflowClient(tracking_uri(store) if isinstance(store, Path) else store)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client, client.search_runs(experiments, filter_string=f"tags.`rkdbench.kind` = '{kind}'")
