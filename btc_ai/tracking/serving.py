"""`mlflow models serve` for a registered model (``models:/btc-ai-scalping/1``, ``models:/btc-ai-scalping@champion``),
called the way it works: MLflow starts ``uvicorn`` by name, so the interpreter's own bin folder (a venv's) goes
first on PATH (``.venv/bin/mlflow models serve`` without the venv activated fails with "uvicorn ... return code
127"); the local environment (``--env-manager local``: this venv, nothing installed); loopback only.

``make serve MODEL=models:/btc-ai-scalping@champion`` runs :func:`main`; `ModelServer` is the same server for
tests and benchmarks (started, waited for on ``/ping``, ended by its process group's ID).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from btc_ai.tracking.server import free_port, mlflow_executable

HOST = "127.0.0.1"


def serve_command(model_uri: str, port: int, *, workers: int = 1) -> list[str]:
    return [mlflow_executable(), "models", "serve", "-m", model_uri, "--env-manager", "local", "--host", HOST,
            "--port", str(port), "--workers", str(workers)]


def serve_environment(tracking_uri: str | None = None, base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with the interpreter's bin folder first on PATH and the
    store the ``models:/`` URI is resolved in."""
    env = dict(os.environ if base is None else base)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]).rstrip(os.pathsep)
    if tracking_uri is not None:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    return env


class ModelServer:
    """``mlflow models serve`` of one model URI on a free loopback port, in its own process group."""

    def __init__(self, model_uri: str, tracking_uri: str, log: str | Path, *, port: int | None = None,
                 base_env: dict[str, str] | None = None) -> None:
        self.model_uri, self.tracking_uri, self.log = model_uri, tracking_uri, Path(log)
        self.port = port or free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.base_env = base_env
        self.proc: subprocess.Popen[bytes] | None = None
        self._started = 0.0

    def start(self, timeout: float = 180.0) -> float:
        """Start and wait (at most ``timeout`` s) until ``/ping`` answers; the seconds that took."""
        self.start_process()
        return self.wait(timeout)

    def start_process(self) -> None:
        self._started = time.monotonic()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(serve_command(self.model_uri, self.port), stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         env=serve_environment(self.tracking_uri, self.base_env))

    def wait(self, timeout: float = 180.0) -> float:
        """Wait (at most ``timeout`` s) until ``/ping`` answers; the seconds since the start."""
        assert self.proc is not None, "start_process first"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow models serve exited with {self.proc.returncode}: "
                                   f"{self.log.read_text(errors='replace')[-2000:]}")
            if self.ping():
                return time.monotonic() - self._started
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"mlflow models serve did not answer /ping within {timeout:.0f} s; see {self.log}")

    def ping(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/ping", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    def invoke(self, candles: Any, timeout: float = 60.0) -> Any:
        """The predictions for ``candles`` (a DataFrame: timestamp column, open, high, low, close, volume)."""
        import pandas as pd

        body = json.dumps({"dataframe_split": json.loads(candles.to_json(orient="split", index=False,
                                                                          date_format="iso"))}).encode()
        request = urllib.request.Request(f"{self.url}/invocations", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return pd.DataFrame(json.loads(response.read())["predictions"])

    def stop(self) -> None:
        """End the server and its workers (its process group, by ID)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=20)
        self.proc = None

    def __enter__(self) -> ModelServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    """``python -m btc_ai.tracking.serving MODEL [--port N]``: serve in the foreground (Ctrl-C ends it)."""
    parser = argparse.ArgumentParser(prog="make serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", metavar="MODEL", help="models:/<name>/<version> or models:/<name>@<alias>")
    parser.add_argument("--port", type=int, default=5001)
    args = parser.parse_args(argv)
    if not args.model.startswith("models:/") or args.model.rstrip("/") == "models:":
        parser.exit(2, f"make serve: error: MODEL={args.model!r} is not a model URI; give e.g. "
                       "MODEL=models:/btc-ai-scalping@champion\n")
    command = serve_command(args.model, args.port)
    os.execvpe(command[0], command, serve_environment())


if __name__ == "__main__":  # pragma: no cover
    main()
