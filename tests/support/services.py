"""Fixtures for the real services the scale-out tests use, all on loopback: PostgreSQL, `rkdbench server` on it, a
plain `mlflow server` on sqlite, and a Ray head. `.ci/run` starts PostgreSQL and the Ray head (scripts/services.sh)
and exports RKDBENCH_TEST_POSTGRES_URI and RKDBENCH_TEST_RAY_ADDRESS. Without them a test that needs PostgreSQL is
skipped with the reason, except under CI (`$CI` set), where it fails so that it cannot pass unnoticed. Without
RKDBENCH_TEST_RAY_ADDRESS the Ray fixture starts its own head (one per test module) when Ray is installed.
`slurm_cluster` needs a Slurm cluster that answers on this machine (`.ci/run` starts a single-node one and
exports SLURM_CONF); without one its tests skip with the reason, and fail under CI.

`postgres_uri` is a fresh database per test (dropped afterwards); `tracking_server` is `rkdbench server` on a
free port backed by such a database, with its own artifacts folder: parametrize store-level tests over
`sqlite` and `tracking_server` to run them against both. tests/conftest.py makes these fixtures everyone's."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from .mlflow_server import MlflowServer
from .processes import free_port, start_logged, stop_group, wait_healthy, wait_until

__all__ = [
    "SERVER_START_S",
    "require_service",
    "start_ray_node",
    "TrackingServer",
    "postgres_uri",
    "tracking_server",
    "mlflow_server",
    "ray_address",
]

SERVER_START_S = 180  # generous: the test machine is loaded
RAY_STARTED = "Ray runtime started"


def require_service(available: bool, reason: str) -> None:
    """Skip with `reason`, or fail under CI, when a service a test needs is absent."""
    if available:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI is set and {reason}", pytrace=False)
    pytest.skip(reason)


def start_ray_node(args: Sequence[str], log: Path) -> subprocess.Popen:
    """`ray start --block ARGS`, returned once its log says the runtime started. `--block` keeps the node in this
    process group of its own: stop it with `stop_group(node, 60)`, not `ray stop` (which stops every Ray instance)."""
    node = start_logged([str(Path(sys.executable).with_name("ray")), "start", "--block", *args], log)
    try:
        wait_until(lambda: RAY_STARTED in log.read_text(errors="replace"), node, log, SERVER_START_S, "ray", poll=1)
    except AssertionError:
        stop_group(node, 60)
        raise
    return node


@pytest.fixture
def postgres_uri():
    """`postgresql+psycopg2://...` of a new, empty database on the test PostgreSQL server."""
    base = os.environ.get("RKDBENCH_TEST_POSTGRES_URI", "")
    require_service(
        bool(base),
        "no PostgreSQL for the tests: RKDBENCH_TEST_POSTGRES_URI is not set "
        "(.ci/run starts one: source scripts/services.sh && services_start VENV)",
    )
    try:
        import psycopg2
    except ImportError:
        require_service(False, "psycopg2 is not installed (pip install -e '.[server]')")
    from sqlalchemy.engine import make_url

    url = make_url(base)
    name = f"rkdbench_{secrets.token_hex(6)}"
    admin = psycopg2.connect(host=url.host, port=url.port, user=url.username, dbname=url.database)
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {name}")
        try:
            yield url.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.cursor() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        admin.close()


@dataclass
class TrackingServer:
    url: str
    artifacts: Path
    backend_store_uri: str
    log: Path


@pytest.fixture
def tracking_server(postgres_uri, tmp_path):
    """`rkdbench server` on a free loopback port, backed by a fresh PostgreSQL database, as a user starts it."""
    port = free_port()
    artifacts, log = tmp_path / "server-artifacts", tmp_path / "server.log"
    process = start_logged(
        [
            sys.executable,
            "-m",
            "rkdbench.cli",
            "server",
            "--backend-store-uri",
            postgres_uri,
            "--artifacts-destination",
            str(artifacts),
            "--port",
            str(port),
        ],
        log,
    )
    server = TrackingServer(f"http://127.0.0.1:{port}", artifacts, postgres_uri, log)
    try:
        wait_healthy(server.url, process, log, SERVER_START_S, "rkdbench server")
        yield server
    finally:
        stop_group(process)


@pytest.fixture
def mlflow_server(tmp_path):
    """A plain `mlflow server` on sqlite in tmp_path (`MlflowServer`: it can be stopped and started again)."""
    server = MlflowServer(tmp_path / "mlflow-server")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def ray_address(tmp_path_factory):
    """HOST:PORT of a Ray head with 2 CPUs and 2 logical GPUs: the CI's, or one started for this module."""
    try:
        import ray  # noqa: F401
    except ImportError:
        require_service(False, "Ray is not installed (pip install -e '.[ray]')")
    address = os.environ.get("RKDBENCH_TEST_RAY_ADDRESS")
    if address:
        yield address
        return
    folder = tmp_path_factory.mktemp("ray")
    port, log, token = free_port(), folder / "head.log", folder / "token"
    token.write_text(secrets.token_hex(32))
    # the head's own token (not ~/.ray/auth_token, shared with every Ray instance of this user); the tests'
    # drivers, started as subprocesses, inherit these variables
    # and Ray's loopback mode, as scripts/services.sh: the head and the drivers on 127.0.0.1 only
    saved = {
        k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
    }
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token), RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    try:
        head = start_ray_node(
            [
                "--head",
                "--node-ip-address",
                "127.0.0.1",
                "--port",
                str(port),
                "--num-cpus",
                "2",
                "--num-gpus",
                "2",
                "--disable-usage-stats",
                "--include-dashboard",
                "false",
            ],
            log,
        )
        try:
            yield f"127.0.0.1:{port}"
        finally:
            stop_group(head, 60)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def slurm_cluster() -> str:
    """The default partition of the Slurm cluster this machine submits to, once sinfo says a node of it is up
    (idle, mixed, or allocated: a job of an earlier test may still be ending, and the next one queues behind it)."""
    if shutil.which("sbatch") is None:
        require_service(
            False,
            "Slurm is not installed (no sbatch on PATH); .ci/run starts a single-node one: "
            "source scripts/services.sh && slurm_start",
        )
    try:
        import submitit  # noqa: F401
    except ImportError:
        require_service(False, "submitit is not installed (pip install -e '.[slurm]')")
    try:
        done = subprocess.run(["sinfo", "-h", "-o", "%P %t"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        done = subprocess.CompletedProcess([], 1, "", "sinfo did not answer in 30 s")
    rows = [line.split() for line in done.stdout.splitlines() if len(line.split()) == 2]
    ready = [p.rstrip("*") for p, state in rows if p.endswith("*") and state in ("idle", "mix", "alloc")]
    require_service(
        done.returncode == 0 and bool(ready),
        f"no Slurm node answers (sinfo: {(done.stderr or done.stdout).strip()[:200] or 'nothing'}); "
        "start one: source scripts/services.sh && slurm_start",
    )
    return ready[0]
