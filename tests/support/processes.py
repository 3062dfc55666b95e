"""Service subprocesses for tests: a free loopback port, a command started in its own process group with its output
in a log file, a wait until it is ready (its `/health` answers, a line appears in its log) that fails with the log's
tail when it dies or times out, and stopping its whole group (SIGTERM, then SIGKILL); `frozen` holds a process still
while a test looks at what it is doing, so that a signal lands where the test saw it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

__all__ = ["free_port", "start_logged", "answers", "wait_until", "wait_healthy", "stop_group", "log_tail", "frozen"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_logged(command: Sequence[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`command` in a new session (its own process group, so that `stop_group` reaches every child it starts), its
    stdout and stderr appended to `log` (a restarted service keeps its earlier output)."""
    with log.open("ab") as out:
        return subprocess.Popen(list(command), env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def log_tail(log: Path, chars: int = 3000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else "(no log)"


def answers(url: str, timeout: float = 5.0) -> bool:
    """Whether a GET of `url` answers 200 now."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


def wait_until(
    ready: Callable[[], bool], process: subprocess.Popen, log: Path, timeout: float, what: str, poll: float = 0.5
) -> None:
    """Poll `ready()` until it is true; an AssertionError with the log's tail when `process` exits first or `timeout`
    seconds pass."""
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            raise AssertionError(f"{what} exited with {process.returncode}:\n{log_tail(log)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not ready after {timeout:.0f}s:\n{log_tail(log)}")
        time.sleep(poll)


def wait_healthy(url: str, process: subprocess.Popen, log: Path, timeout: float, what: str) -> None:
    """Until MLflow's `<url>/health` answers (an MLflow or `rkdbench` server)."""
    wait_until(lambda: answers(f"{url}/health"), process, log, timeout, what)


def stop_group(process: subprocess.Popen, wait: float = 30.0) -> None:
    """SIGTERM to the process's whole group, SIGKILL when it has not exited `wait` seconds later; returns once the
    process is reaped (a group already gone is no error)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
    process.wait()


@contextmanager
def frozen(pid: int) -> Iterator[None]:
    """SIGSTOP `pid` and wait until the kernel shows it stopped; SIGCONT on exit. A signal sent inside lands before
    the process takes one more step, whatever the machine's load (a check, then a signal, leaves a window in which a
    loaded machine lets it finish what the check saw under way)."""
    try:
        os.kill(pid, signal.SIGSTOP)
    except ProcessLookupError:
        yield
        return
    try:
        while True:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except (FileNotFoundError, ProcessLookupError):
                break  # gone
            if state in ("T", "t", "Z", "X"):
                break
            time.sleep(0.001)
        yield
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
