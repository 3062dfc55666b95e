"""A real `mlflow server` on 127.0.0.1 for tests: a free port, a sqlite backend (or any backend store URI) and
proxied artifacts in a temporary folder; it can be stopped and started again on the same port and store."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from .processes import free_port, start_logged, stop_group, wait_healthy

__all__ = ["MlflowServer"]


class MlflowServer:
    def __init__(self, folder: Path, backend_store_uri: str | None = None) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.backend = backend_store_uri or f"sqlite:///{folder / 'server.db'}"
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.log = folder / "server.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 120.0) -> None:
        command = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            self.backend,
            "--artifacts-destination",
            str(self.folder / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        env.pop("MLFLOW_TRACKING_URI", None)
        self.process = start_logged(command, self.log, env)
        try:
            wait_healthy(self.uri, self.process, self.log, timeout, "mlflow server")
        except AssertionError:
            self.stop()
            raise

    def stop(self) -> None:
        if self.process is None:
            return
        stop_group(self.process)
        self.process = None
        deadline = time.monotonic() + 30  # the port is free again before a restart binds it
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) != 0:
                    return
            time.sleep(0.2)
