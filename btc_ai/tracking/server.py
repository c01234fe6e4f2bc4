"""A real `mlflow server` on 127.0.0.1 with its own SQLite store: for `btc-ai chaos`, tests and benchmarks
that need a tracking server to lose and get back."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from btc_ai.tracking.stores import ensure_store

PROXIED_ARTIFACTS = "mlflow-artifacts:/"  # `mlflow server`'s artifact root with --artifacts-destination


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def mlflow_executable() -> str:
    """The ``mlflow`` beside this interpreter (a venv's), else the one on PATH."""
    mlflow = Path(sys.executable).with_name("mlflow")
    return str(mlflow) if mlflow.exists() else "mlflow"


class LocalMlflowServer:
    """``mlflow server`` over ``folder/mlflow.db`` with artifacts in ``folder/artifacts``, on one port for
    its whole life (a restart comes back at the same URL, like a real server after a crash)."""

    def __init__(self, folder: str | Path, port: int | None = None) -> None:
        self.folder = Path(folder).resolve()
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.folder / "server.log"

    def start(self, timeout: float = 120.0) -> None:
        """Start and wait until ``/health`` answers."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.backend_store_uri().startswith("sqlite:"):  # built as btc-ai builds one (the template), as the
            # server would (its default experiment's artifacts behind the server's proxy), not by its migrations
            ensure_store(self.backend_store_uri(), artifacts=PROXIED_ARTIFACTS)
        command, env = self.command(), self.environment()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {self.proc.returncode}; see {self.log}")
            if self.healthy():
                return
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"mlflow server did not answer within {timeout:.0f} s; see {self.log}")

    def command(self) -> list[str]:
        """The ``mlflow server`` command line: one worker, loopback only, artifacts proxied by the server."""
        return [mlflow_executable(), "server", "--backend-store-uri", self.backend_store_uri(),
                "--artifacts-destination", str(self.folder / "artifacts"),
                "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]

    def backend_store_uri(self) -> str:
        return f"sqlite:///{self.folder / 'mlflow.db'}"

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # no background job workers polling the CPU
        return env

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        """Kill the server and its workers (a crash, not a graceful goodbye); wait until the port is closed."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.proc = None
        deadline = time.monotonic() + 10
        while self.healthy() and time.monotonic() < deadline:
            time.sleep(0.1)

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections are still accepted by the kernel but never answered —
        a hung server, the worst case for a client."""
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGSTOP)

    def unpause(self) -> None:
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGCONT)

    def __enter__(self) -> LocalMlflowServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
