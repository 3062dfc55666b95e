"""The Ray executor: one plain Ray task per cell, each calling the same `run_cell` as the local loop.

The driver connects to (or starts) a Ray cluster before anything is prepared, so a missing `ray`, an
unreachable `--address` or a sqlite store on a multi-node cluster is one line and exit 2 before any run
exists. Each task asks for the protocol's `[resources]` (`gpus_per_cell`, `cpus_per_cell`; by default one GPU
when the cluster has any, and one core), sets torch's thread count to its cores, loads the driver's
`--plugins-dir` folders, checks that it sees the driver's results folder (a marker file: on a multi-node
cluster `--results` must be a shared filesystem), and runs the cell. A worker process or node that dies is a
system failure: Ray retries the task (`max_retries`), and `run_cell` resumes the unfinished MLflow run of
that cell key from its last checkpoint. An exception in the cell's own code is caught by `run_cell`, which
marks the cell FAILED: the task returns normally and is never retried (`retry_exceptions=False`). Ctrl-C
cancels every task (`ray.cancel`); an interrupted cell's run is marked KILLED and resumes on the next run.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ...attack_traits import ranked_accuracy
from ...config import ResourcesConfig
from ...errors import UserError

__all__ = ["CellResources", "run_on_ray", "connect", "SERVER_HINT", "MAX_RETRIES"]

MAX_RETRIES = 3  # system failures (a dead worker process or node) per cell; the cell's own errors are never retried
MARKER_PREFIX = ".rkdbench-driver-"
SERVER_HINT = (
    "start a team tracking server on a machine every node reaches (`rkdbench server --host 0.0.0.0 "
    "--backend-store-uri postgresql+psycopg2://USER@HOST:PORT/DB`) and set "
    "MLFLOW_TRACKING_URI=http://SERVER:5000 for the driver"
)
ENV_PREFIXES = ("MLFLOW_", "RKDBENCH_")  # tracking URI and credentials, plugin filters, model/data dirs


@dataclass(frozen=True)
class CellResources:
    """What one cell asks the scheduler for; `cpus` is also torch's intra-op thread count in the worker."""

    gpus: float
    cpus: int

    @classmethod
    def of(cls, protocol_resources: ResourcesConfig, cluster_gpus: float) -> CellResources:
        gpus = protocol_resources.gpus_per_cell
        return cls(
            gpus=(1.0 if cluster_gpus >= 1 else 0.0) if gpus is None else gpus, cpus=protocol_resources.cpus_per_cell
        )


def _import_ray():
    try:
        import ray
    except ImportError as exc:
        raise UserError(
            f"--executor ray needs Ray, which is not importable ({exc}); install the extra: pip install 'rkdbench[ray]'"
        ) from None
    return ray


def _check_address_reachable(address: str) -> None:
    """A HOST:PORT that refuses connections fails in seconds here, not after Ray's long connection retries."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise UserError(
            f"--address {address!r}: expected auto or HOST:PORT of a Ray cluster's head (e.g. 10.0.0.1:6379)"
        )
    host = host.removeprefix("ray://").strip("[]") or "127.0.0.1"
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    except OSError as exc:
        raise UserError(
            f"--address {address}: no Ray cluster answers at {host}:{port} ({exc.strerror or exc}); "
            f"start one with `ray start --head` or give its head's address"
        ) from None


def _token_available() -> bool:
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or str(Path.home() / ".ray" / "auth_token")
    return bool(os.environ.get("RAY_AUTH_TOKEN")) or Path(path).is_file()


def connect(address: str | None, log_to_driver: bool = True):
    """Connect to the cluster at `address` ('auto' or HOST:PORT), or start a local one sized to the machine;
    `log_to_driver` forwards the workers' and Ray's own output to this process's stdout."""
    if address is None and "ray" not in sys.modules:
        # a local cluster serves this machine only: Ray's loopback mode (its switch for laptops) keeps every Ray
        # process on 127.0.0.1 instead of the machine's network address; read by Ray at import, hence the check
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray = _import_ray()
    if address is not None and address != "auto":
        _check_address_reachable(address)
    if address is not None and "RAY_AUTH_MODE" not in os.environ and _token_available():
        # Ray's own heads use token authentication when a token exists, but a driver joining one sends the
        # token only in token mode: without this, a plain `ray start --head` + `--address` is refused.
        os.environ["RAY_AUTH_MODE"] = "token"
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=log_to_driver)
    except ConnectionError as exc:
        raise UserError(f"--address {address}: cannot connect to a Ray cluster: {str(exc).splitlines()[0]}") from None
    return ray


def _shared_env(tracking_uri: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIXES)}
    env["MLFLOW_TRACKING_URI"] = tracking_uri
    return env


def _cell_task(
    cell, options, position: str, env: dict[str, str], plugin_dirs: list[str], marker: str, threads: int, progress
) -> Any:
    """In a Ray worker: the driver's environment and plugins, the shared-folder check, then `run_cell`."""
    os.environ.update(env)
    import torch

    from ...plugins import load_plugins_dir
    from ...tracking import Tracker
    from ..cell import run_cell
    from ..cells import method_of
    from ..options import CellOutcome

    if not (Path(options.results) / marker).is_file():
        return CellOutcome(
            cell,
            "failed",
            error=f"results folder {options.results} is not visible on worker node "
            f"{socket.gethostname()} (no {marker}): --results must be a "
            f"filesystem shared by every node of the Ray cluster",
        )
    if threading.current_thread() is threading.main_thread():
        # Ray cancels a running task by simulating SIGINT, which Python ignores when the worker inherited SIGINT
        # as ignored (a head started in the background of a script): Ctrl-C would then leave the cell RUNNING.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    progress.started.remote(position, cell.label, socket.gethostname(), os.getpid())
    torch.set_num_threads(threads)
    for folder in plugin_dirs:
        load_plugins_dir(folder)
    method_of(cell)  # the cell came without its method object: built here, now that the plugins are loaded
    return run_cell(cell, Tracker(options.results), options, position)


class _Progress:
    """A tiny actor the tasks tell when they start, so the driver can print it (Ray only reports the end)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, int]] = []

    def started(self, position: str, label: str, host: str, pid: int) -> None:
        self.events.append((position, label, host, pid))

    def drain(self) -> list[tuple[str, str, str, int]]:
        events, self.events = self.events, []
        return events


def run_on_ray(cells: list, tracker, options, prepare: Callable[[list, Any, Any], None]) -> list:
    """Run `cells` as Ray tasks; returns their `CellOutcome`s in the cells' order."""
    with contextlib.ExitStack() as stack:
        if options.console is None:  # --json / --quiet: Ray's own messages ("a worker died") go to stderr
            stack.enter_context(contextlib.redirect_stdout(sys.stderr))
        return _connected_run(cells, tracker, options, prepare)


def check_store_for_cluster(tracking_uri: str, alive_nodes: int, address: str) -> None:
    """A sqlite store lives on one machine: refuse it for a cluster of several nodes (a local cluster has one;
    $RAY_ADDRESS may name a bigger one), with the command of the store to use instead."""
    if alive_nodes > 1 and tracking_uri.startswith("sqlite:"):
        raise UserError(
            f"a sqlite store ({tracking_uri}) cannot be shared by the {alive_nodes} nodes of Ray cluster "
            f"{address}; {SERVER_HINT}"
        )


def _connected_run(cells: list, tracker, options, prepare: Callable[[list, Any, Any], None]) -> list:
    ray = connect(options.address, log_to_driver=options.console is not None)
    try:
        check_store_for_cluster(
            tracker.uri,
            sum(bool(n.get("Alive")) for n in ray.nodes()),
            options.address or os.environ.get("RAY_ADDRESS", ""),
        )
        prepare(cells, tracker, options)
        return _run_tasks(ray, cells, tracker, options)
    finally:
        ray.shutdown()


def _run_tasks(ray, cells: list, tracker, options) -> list:
    from ..cell import protocol_experiment
    from ..progress import say, suite_status

    for protocol in {cell.protocol.experiment_name: cell.protocol for cell in cells}.values():
        protocol_experiment(tracker, protocol)  # created once here, not raced by the first tasks
    results = Path(options.results).resolve()
    marker = f"{MARKER_PREFIX}{secrets.token_hex(8)}"
    (results / marker).write_text("written by the rkdbench driver; workers check that they see it\n")
    worker_options = replace(
        options,
        results=results,
        console=None,
        model_dir=Path(options.model_dir).resolve(),
        data_dir=Path(options.data_dir).resolve() if options.data_dir else None,
    )
    cluster_gpus = float(ray.cluster_resources().get("GPU", 0))
    env, plugin_dirs = _shared_env(tracker.uri), _plugin_dirs()
    task = ray.remote(max_retries=MAX_RETRIES, retry_exceptions=False)(_cell_task)
    progress = ray.remote(num_cpus=0)(_Progress).remote()
    pending: dict[Any, int] = {}
    for i, cell in enumerate(cells):
        need = CellResources.of(cell.protocol.resources, cluster_gpus)
        ref = task.options(num_gpus=need.gpus, num_cpus=need.cpus).remote(
            cell, worker_options, f"[{i + 1}/{len(cells)}]", env, plugin_dirs, marker, need.cpus, progress
        )
        pending[ref] = i
    say(
        options,
        f"[bold]ray[/]: {len(cells)} cells submitted to a cluster of {len(ray.nodes())} node(s), "
        f"{ray.cluster_resources().get('CPU', 0):g} CPUs, {cluster_gpus:g} GPUs",
    )
    outcomes: dict[int, Any] = {}
    seconds: list[float] = []  # each cell's time from its (last) start to its end; cells overlap
    start_times: dict[str, float] = {}
    workers: dict[str, str] = {}  # position -> "host:pid" of the worker process its task started in, as leases say
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for position, label, host, pid in ray.get(progress.drain.remote()):
                start_times[position] = time.perf_counter()
                workers[position] = f"{host}:{pid}"
                say(options, f"[bold]{position} start[/] {label} [dim](on {host})[/]")
            for ref in done:
                i = pending.pop(ref)
                outcomes[i] = _outcome(ray, ref, cells[i])
                position = f"[{i + 1}/{len(cells)}]"
                if outcomes[i].status in ("finished", "failed") and position in start_times:
                    seconds.append(time.perf_counter() - start_times[position])
                say(options, _end_line(position, outcomes[i]))
                say(options, f"[dim]{suite_status(list(outcomes.values()), len(cells), seconds)}[/]")
    except KeyboardInterrupt:
        say(
            options,
            f"[yellow]interrupted: cancelling {len(pending)} Ray task(s); every cell resumes on the next run[/]",
        )
        for ref in pending:
            ray.cancel(ref)
        with contextlib.suppress(Exception):  # start events not drained yet
            workers.update((position, f"{host}:{pid}") for position, _, host, pid in ray.get(progress.drain.remote()))
        started = [(cells[i], workers.get(f"[{i + 1}/{len(cells)}]")) for i in pending.values()]
        started = [(cell, worker) for cell, worker in started if worker]
        _wait_until_stopped(started, results, options, lambda: [ray.cancel(ref) for ref in pending])
        raise
    finally:
        (results / marker).unlink(missing_ok=True)
    return [outcomes[i] for i in range(len(cells))]


def _wait_until_stopped(started: list[tuple[Any, str]], results: Path, options, cancel: Callable[[], object]) -> None:
    """A cancelled task's result is ready before its worker has run `run_cell`'s KILLED bookkeeping; leaving now
    would end the job and its workers with the runs still RUNNING. A worker holds its cell's lease until that
    bookkeeping is delivered (the OS drops it if the worker dies): wait while a cancelled cell's lease is held by
    the worker its task started in (`started`: (cell, "host:pid")), however long the machine's load makes that.
    No deadline; `cancel` is sent again every 5 s (Ray lost the one a worker stopped for 90 s could not take); a
    second Ctrl-C leaves them (their runs stay RUNNING and resume on the next run)."""
    from ...lease import CellLease
    from ..progress import say

    leases = [(CellLease(results / "cells" / cell.key), worker) for cell, worker in started]
    if leases:
        say(options, f"[yellow]waiting for {len(leases)} cancelled cell(s) to record KILLED (Ctrl-C: leave them)[/]")
    last = time.monotonic()
    while any(lease.busy() and lease.holder().startswith(f"{worker} ") for lease, worker in leases):
        time.sleep(0.2)
        if time.monotonic() - last > 5:
            cancel()
            last = time.monotonic()


def _plugin_dirs() -> list[str]:
    from ...plugins import loaded_plugin_dirs

    return loaded_plugin_dirs()


def _outcome(ray, ref, cell):
    """The task's CellOutcome; a task that Ray gave up on (retries spent, cancelled) is a failed cell."""
    from ..options import CellOutcome

    try:
        return ray.get(ref)
    except Exception as exc:  # WorkerCrashedError, NodeDiedError, TaskCancelledError...
        return CellOutcome(
            cell,
            "failed",
            error=f"Ray task ended without a result after {MAX_RETRIES} retries: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
        )


def _end_line(position: str, outcome) -> str:
    metrics = outcome.metrics
    protocol = outcome.cell.protocol
    ranked = ranked_accuracy(metrics, protocol.eval.attacks, "test.", protocol.eval.rank_by)
    detail = (
        f"clean {metrics['test.clean_acc']:.1%}, {ranked[0]} {ranked[1]:.1%}"
        if ranked and "test.clean_acc" in metrics
        else outcome.error
    )
    color = {"failed": "red", "finished": "bold"}.get(outcome.status, "dim")
    return (
        f"[{color}]{position} {outcome.status}[/] {outcome.cell.label}{': ' + detail if detail else ''}"
        f"{' [dim](run ' + outcome.run_id + ')[/]' if outcome.run_id else ''}"
    )
