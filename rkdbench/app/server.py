"""`rkdbench server`: the team tracking server, MLflow's own, on a store every worker shares.

The backend store is PostgreSQL (`postgresql+psycopg2://USER@HOST:PORT/DB`, extra `rkdbench[server]`) or, by
default, the sqlite file of `--results`. The database is checked first (a URI that cannot connect is one line
naming host and port, and nothing is created), its schema is created or migrated once before the server starts
(PostgreSQL by `mlflow db upgrade`; sqlite on a copy swapped in whole, `tracking.store.upgrade_store`), then this
process becomes `mlflow server` with proxied artifacts: clients upload and download checkpoints through the
server (`mlflow-artifacts:/`), so workers need `MLFLOW_TRACKING_URI=http://...` and no storage credentials.
MLflow's server authenticates nobody unless its basic-auth app is enabled (`--app-name basic-auth`): binding
beyond loopback needs an explicit `--host` and prints that warning.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import TrackingError, UserError
from ..tracking.store import hold_store, sqlite_path, upgrade_store

__all__ = [
    "ServerRequest",
    "serve",
    "server_command",
    "check_backend_store",
    "upgrade_schema",
    "is_loopback",
    "AUTH_WARNING",
]

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
AUTH_WARNING = (
    "rkdbench: warning: the tracking server listens on {host}, beyond this machine; nothing "
    "authenticates its clients unless MLflow's basic-auth app is enabled (--app-name basic-auth)"
)


def is_loopback(host: str) -> bool:
    return host in LOOPBACK or host.startswith("127.")


def default_backend_store(results: Path) -> str:
    return f"sqlite:///{results.resolve() / 'mlflow.db'}"


def check_backend_store(uri: str) -> None:
    """Connect once (5 s timeout) before anything is created; a failure is one line naming host and port."""
    if not uri.startswith("postgresql"):
        if uri.startswith("sqlite:///"):
            Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        return
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    try:
        url = make_url(uri)
    except Exception as exc:
        raise UserError(
            f"--backend-store-uri {uri!r} is not a database URI ({exc}); expected "
            f"postgresql+psycopg2://USER@HOST:PORT/DB"
        ) from None
    where = f"{url.host or 'localhost'}:{url.port or 5432}"
    try:
        engine = create_engine(url, connect_args={"connect_timeout": 5})
    except ImportError as exc:
        raise UserError(
            f"a PostgreSQL store needs the psycopg2 driver ({exc}); install the extra: pip install 'rkdbench[server]'"
        ) from None
    try:
        with engine.connect():
            pass
    except Exception as exc:
        detail = next((line.strip() for line in str(getattr(exc, "orig", exc)).splitlines() if line.strip()), "")
        raise TrackingError(
            f"cannot connect to PostgreSQL at {where} (database {url.database!r}, user {url.username!r}): {detail}"
        ) from None
    finally:
        engine.dispose()


def upgrade_schema(uri: str) -> None:
    """Create MLflow's tables in an empty database, or migrate an older schema: once, before the server starts."""
    done = subprocess.run([sys.executable, "-m", "mlflow", "db", "upgrade", uri], capture_output=True, text=True)
    if done.returncode != 0:
        last = next((line for line in reversed(done.stderr.splitlines()) if line.strip()), "no output")
        raise TrackingError(f"schema upgrade of {uri} failed (mlflow db upgrade): {last.strip()}")


def server_command(
    backend_store_uri: str, artifacts_destination: str, host: str, port: int, app_name: str | None, workers: int
) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        backend_store_uri,
        "--serve-artifacts",
        "--artifacts-destination",
        artifacts_destination,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    return command + (["--app-name", app_name] if app_name else [])


@dataclass(frozen=True)
class ServerRequest:
    """`rkdbench server`: the results folder (its sqlite store unless `backend_store_uri`), where proxied artifacts
    go (None: RESULTS/artifacts), the bind address, MLflow's optional auth app and its worker processes."""

    results: Path
    backend_store_uri: str | None = None
    artifacts_destination: str | None = None
    host: str = "127.0.0.1"
    port: int = 5000
    app_name: str | None = None
    workers: int = 2


def serve(request: ServerRequest, echo) -> None:
    """Check the store, upgrade its schema once, then exec `mlflow server` (this process becomes the server)."""
    host, port = request.host, request.port
    uri = request.backend_store_uri or default_backend_store(request.results)
    destination = request.artifacts_destination or str((request.results / "artifacts").resolve())
    if not is_loopback(host) and request.app_name != "basic-auth":
        echo(AUTH_WARNING.format(host=host))
    check_backend_store(uri)
    database = sqlite_path(uri)
    if database is None:
        upgrade_schema(uri)
    else:  # never migrated in place; the server keeps the store marked in use (the lock survives its exec)
        echo(f"rkdbench: {upgrade_store(uri)}")
        os.set_inheritable(hold_store(database.parent), True)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    echo(
        f"rkdbench: tracking server for {uri.split('@')[-1]} (artifacts in {destination}); workers set "
        f"MLFLOW_TRACKING_URI=http://{shown}:{port}"
    )
    # MLflow's background job runner (GenAI judges) is not needed to track runs; the variable turns it back on
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}
    command = server_command(uri, destination, host, port, request.app_name, request.workers)
    os.execve(command[0], command, env)
