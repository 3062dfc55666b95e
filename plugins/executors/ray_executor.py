"""`--executor ray`: one plain Ray task per cell, each calling the same exactly-once `run_cell` as the local loop.

The driver connects to the cluster `--address` names (`auto`: the one `$RAY_ADDRESS` or this machine's running head
names), or without it starts a Ray instance of its own sized to this machine (never attaching to another Ray it finds
here), before anything is prepared, so a missing `ray`, an unreachable address or a sqlite store on a multi-node
cluster is one line and exit 2 before any run exists. Each task asks for the protocol's `[resources]`
(`gpus_per_cell`, `cpus_per_cell`; by default one GPU when the cluster has any, and one core) and runs through
`rkdbench.run_remote_cell` (the driver's environment and plugins, the shared-folder check). A worker process or node
that dies is a system failure: Ray retries the task (`max_retries`), and `run_cell` resumes the unfinished MLflow
run of that cell key from its last checkpoint. An exception in the cell's own code is caught by `run_cell`, which
marks the cell FAILED: the task returns normally and is never retried (`retry_exceptions=False`). A task that finds
its cell held by another driver is submitted again after a pause, until the holder ends it or dies. Ctrl-C cancels
every task (`ray.cancel`); an interrupted cell's run is marked KILLED and resumes on the next run.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rkdbench import (
    CellOutcome,
    CellResources,
    Executor,
    UserError,
    check_store_for_cluster,
    end_line,
    ensure_experiments,
    executor_option,
    hookimpl,
    remote_setup,
    run_remote_cell,
    say,
    suite_status,
    wait_for_cancelled,
)

__all__ = ["Ray", "RayOptions", "connect", "MAX_RETRIES"]

MAX_RETRIES = 3  # system failures (a dead worker process or node) per cell; the cell's own errors are never retried
HELD_RETRY_S = float(os.environ.get("RKDBENCH_WAIT_POLL_SECONDS", 5.0))  # pause before a held cell is tried again


@dataclass(frozen=True)
class RayOptions:
    address: str | None = executor_option(
        None,
        "With --executor ray: the Ray cluster to join (auto: the one $RAY_ADDRESS or this machine's running head "
        "names; default: start a local one sized to this machine).",
        metavar="auto|HOST:PORT",
    )


class Ray(Executor):
    name = "ray"
    description = "one Ray task per cell, with the protocol's [resources] (extra rkdbench[ray]; see docs/scale.md)"
    Options = RayOptions

    def run(self, cells, tracker, options, prepare):
        with contextlib.ExitStack() as stack:
            if options.console is None:  # --json / --quiet: Ray's own messages ("a worker died") go to stderr
                stack.enter_context(contextlib.redirect_stdout(sys.stderr))
            ray = connect(self.options.address, log_to_driver=options.console is not None)
            try:
                check_store_for_cluster(
                    tracker.uri,
                    sum(bool(n.get("Alive")) for n in ray.nodes()),
                    f"Ray cluster {self.options.address or 'local'}",
                )
                prepare(cells, tracker, options)
                return _run_tasks(ray, cells, tracker, options)
            finally:
                ray.shutdown()


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
    """Connect to the cluster at `address` ('auto' or HOST:PORT), or start a new local one sized to the machine
    (Ray's `address="local"`: never another Ray found on the machine); `log_to_driver` forwards the workers' and
    Ray's own output to this process's stdout."""
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
        ray.init(address=address or "local", include_dashboard=False, log_to_driver=log_to_driver)
    except ConnectionError as exc:
        raise UserError(f"--address {address}: cannot connect to a Ray cluster: {str(exc).splitlines()[0]}") from None
    return ray


class _Progress:
    """A tiny actor the tasks tell when they start, so the driver can print it (Ray only reports the end)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, int]] = []

    def started(self, position: str, label: str, host: str, pid: int) -> None:
        self.events.append((position, label, host, pid))

    def drain(self) -> list[tuple[str, str, str, int]]:
        events, self.events = self.events, []
        return events


def _cell_task(cell, options, position: str, setup, threads: int, progress) -> Any:
    """In a Ray worker: tell the driver the cell starts, then `run_remote_cell`."""
    return run_remote_cell(
        cell,
        options,
        position,
        setup,
        threads,
        on_start=lambda: progress.started.remote(position, cell.label, socket.gethostname(), os.getpid()),
    )


def _run_tasks(ray, cells: list, tracker, options) -> list:
    ensure_experiments(tracker, cells)
    setup, worker_options = remote_setup(tracker, options)
    cluster_gpus = float(ray.cluster_resources().get("GPU", 0))
    task = ray.remote(max_retries=MAX_RETRIES, retry_exceptions=False)(_cell_task)
    progress = ray.remote(num_cpus=0)(_Progress).remote()
    resources = [CellResources.of(cell.protocol.resources, cluster_gpus) for cell in cells]
    slots = max(1, min(int(ray.cluster_resources().get("CPU", 1) // max(r.cpus, 1)) for r in resources))

    def submit(i: int) -> Any:
        need = resources[i]
        return task.options(num_gpus=need.gpus, num_cpus=need.cpus).remote(
            cells[i], worker_options, f"[{i + 1}/{len(cells)}]", setup, need.cpus, progress
        )

    pending: dict[Any, int] = {submit(i): i for i in range(len(cells))}
    say(
        options,
        f"[bold]ray[/]: {len(cells)} cells submitted to a cluster of {len(ray.nodes())} node(s), "
        f"{ray.cluster_resources().get('CPU', 0):g} CPUs, {cluster_gpus:g} GPUs",
    )
    outcomes: dict[int, Any] = {}
    held: dict[int, float] = {}  # cell index -> when to submit it again (another driver holds it)
    seconds: list[float] = []  # each cell's time from its (last) start to its end; cells overlap
    start_times: dict[str, float] = {}
    workers: dict[str, str] = {}  # position -> "host:pid" of the worker process its task started in, as leases say
    try:
        while pending or held:
            for i, when in list(held.items()):
                if time.monotonic() >= when:
                    del held[i]
                    pending[submit(i)] = i
            done, _ = ray.wait(list(pending), num_returns=1, timeout=1.0) if pending else ([], [])
            if not pending:
                time.sleep(0.5)
            for position, label, host, pid in ray.get(progress.drain.remote()):
                start_times[position] = time.perf_counter()
                workers[position] = f"{host}:{pid}"
                say(options, f"[bold]{position} start[/] {label} [dim](on {host})[/]")
            for ref in done:
                i = pending.pop(ref)
                outcome = _outcome(ray, ref, cells[i])
                position = f"[{i + 1}/{len(cells)}]"
                if outcome.status == "held":
                    held[i] = time.monotonic() + HELD_RETRY_S
                    continue
                outcomes[i] = outcome
                if outcome.status in ("finished", "failed") and position in start_times:
                    seconds.append(time.perf_counter() - start_times[position])
                say(options, end_line(position, outcome))
                status = suite_status(list(outcomes.values()), len(cells), seconds, slots, options.predicted)
                say(options, f"[dim]{status}[/]")
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
        wait_for_cancelled(
            [(cell, worker) for cell, worker in started if worker],
            Path(worker_options.results),
            options,
            lambda: [ray.cancel(ref) for ref in pending],
        )
        raise
    finally:
        (Path(worker_options.results) / setup.marker).unlink(missing_ok=True)
    return [outcomes[i] for i in range(len(cells))]


def _outcome(ray, ref, cell) -> CellOutcome:
    """The task's CellOutcome; a task that Ray gave up on (retries spent, cancelled) is a failed cell."""
    try:
        return ray.get(ref)
    except Exception as exc:  # WorkerCrashedError, NodeDiedError, TaskCancelledError...
        return CellOutcome(
            cell,
            "failed",
            error=f"Ray task ended without a result after {MAX_RETRIES} retries: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
        )


@hookimpl
def register_executors(register):
    register(Ray)
