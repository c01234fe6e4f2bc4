"""The team deployment: `mlflow server` over a PostgreSQL database, artifacts proxied by the server, logins
through MLflow's basic-auth app; a PostgreSQL cluster of its own in a temporary folder (for `make server`,
tests and benchmarks), always on 127.0.0.1, run as an unprivileged user.

``python -m btc_ai.tracking.team_server FOLDER`` starts both and prints what a client sets.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from btc_ai.tracking.server import LocalMlflowServer, free_port

DATABASE_USER = "mlflow"
ADMIN_USER = "admin"
_BIN_DIRS = ("/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin")


def postgres_bin(name: str) -> str | None:
    """A PostgreSQL program (``initdb``, ``pg_ctl``, ``createdb``): on PATH or in Debian's folder."""
    found = shutil.which(name)
    if found:
        return found
    for folder in _BIN_DIRS:
        if os.access(f"{folder}/{name}", os.X_OK):
            return f"{folder}/{name}"
    return None


def write_private(path: Path, text: str) -> None:
    """``text`` as the whole of ``path``, readable by its owner only from the first byte on, replaced in one
    step (a reader never sees an old file's rest after a shorter new one)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _unprivileged() -> list[str]:
    """The prefix that runs a program as ``nobody`` when we are root (initdb and postgres refuse root)."""
    return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"] if os.geteuid() == 0 else []


def postgres_missing() -> str | None:
    """Why a PostgreSQL cluster cannot be started here, or None when it can."""
    missing = [name for name in ("initdb", "pg_ctl", "createdb") if postgres_bin(name) is None]
    if missing:
        return f"PostgreSQL is not installed ({', '.join(missing)} not found): apt-get install postgresql"
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        return "running as root, and setpriv (util-linux) is missing to start PostgreSQL as nobody"
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return "the PostgreSQL driver is not installed: pip install -e '.[server]'"
    try:
        import flask_wtf  # noqa: F401
    except ImportError:
        return "MLflow's basic-auth app needs Flask-WTF: pip install -e '.[server]'"
    return None


STUDY_DATABASE = "optuna"


class PostgresCluster:
    """A PostgreSQL cluster in a fresh temporary folder, listening on 127.0.0.1 only (no Unix socket),
    password authentication for everyone, a superuser ``mlflow``; stopped and removed by `stop`."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.password = secrets.token_urlsafe(18)
        self.folder: Path | None = None

    @property
    def data(self) -> Path:
        assert self.folder is not None
        return self.folder / "data"

    def _run(self, *command: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PGPASSWORD": self.password}
        return subprocess.run([*_unprivileged(), *command], check=True, capture_output=True, text=True,
                              env=env, timeout=120, cwd=self.folder, **kwargs)  # type: ignore[call-overload]

    def start(self) -> None:
        """initdb, start, and create the databases ``mlflow`` (runs), ``mlflow_auth`` (logins) and ``optuna``
        (the studies of `btc-ai search --study-storage`: a database of their own, as both keep an
        ``alembic_version`` table)."""
        reason = postgres_missing()
        if reason:
            raise RuntimeError(reason)
        self.folder = Path(tempfile.mkdtemp(prefix="btc-ai-postgres-"))
        pwfile = self.folder / "pwfile"
        pwfile.write_text(self.password + "\n")
        if os.geteuid() == 0:
            shutil.chown(self.folder, "nobody", "nogroup")
            shutil.chown(pwfile, "nobody", "nogroup")
        pwfile.chmod(0o600)
        try:
            self._run(str(postgres_bin("initdb")), "-D", str(self.data), "-U", DATABASE_USER, "--auth=scram-sha-256",
                      f"--pwfile={pwfile}", "-E", "UTF8", "--no-sync")
        finally:
            pwfile.unlink()
        self.serve()
        for database in ("mlflow", "mlflow_auth", STUDY_DATABASE):
            self._run(str(postgres_bin("createdb")), "-h", "127.0.0.1", "-p", str(self.port), "-U", DATABASE_USER,
                      database)

    def serve(self) -> None:
        """Start the server on the existing data folder (after `start` made it, or again after ``stop(remove=False)``:
        a database restarted under a running tracking server)."""
        assert self.folder is not None
        options = f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories='' -c fsync=on"
        self._run(str(postgres_bin("pg_ctl")), "start", "-w", "-t", "60", "-D", str(self.data),
                  "-l", str(self.folder / "postgres.log"), "-o", options)

    def url(self, database: str = "mlflow") -> str:
        """The SQLAlchemy URL of a database, without the password (libpq takes it from ``PGPASSWORD``)."""
        return f"postgresql+psycopg2://{DATABASE_USER}@127.0.0.1:{self.port}/{database}"

    def stop(self, remove: bool = True) -> None:
        """Stop the cluster (``pg_ctl stop -m fast`` on our own data folder) and remove its folder."""
        if self.folder is None:
            return
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.SubprocessError):
                self._run(str(postgres_bin("pg_ctl")), "stop", "-m", "fast", "-w", "-D", str(self.data))
        if remove:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None


class TeamMlflowServer(LocalMlflowServer):
    """``mlflow server`` for a team: PostgreSQL backend (runs and logins), artifacts proxied into
    ``folder/artifacts`` (clients never touch them), basic authentication, one worker, no job runner."""

    def __init__(self, folder: str | Path, database: PostgresCluster, port: int | None = None, *,
                 default_permission: str = "READ") -> None:
        super().__init__(folder, port)
        self.database = database
        self.admin_password = secrets.token_urlsafe(18)
        self.default_permission = default_permission

    def backend_store_uri(self) -> str:
        return self.database.url("mlflow")

    def command(self) -> list[str]:
        return [*super().command(), "--app-name", "basic-auth"]

    def environment(self) -> dict[str, str]:
        # written afresh at every start: a file left by an earlier `make server` names that run's database
        # port and admin password, and the server would start on them
        config = self.folder / "basic_auth.ini"
        write_private(config,
                      "[mlflow]\n"
                      f"default_permission = {self.default_permission}\n"
                      f"database_uri = {self.database.url('mlflow_auth')}\n"
                      f"admin_username = {ADMIN_USER}\n"
                      f"admin_password = {self.admin_password}\n"
                      "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
                      # a PBKDF2 check is slow on purpose; without the cache every metric batch of every
                      # training pays it on the server's one worker
                      "auth_cache_ttl_seconds = 60\n")
        env = super().environment()
        env["MLFLOW_AUTH_CONFIG_PATH"] = str(config)
        env["PGPASSWORD"] = self.database.password  # the backend URLs carry no password
        env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = secrets.token_hex(16)
        return env

    def _admin(self, endpoint: str, payload: dict[str, str]) -> None:
        import requests

        response = requests.post(f"{self.url}/api/{endpoint}", json=payload, auth=(ADMIN_USER, self.admin_password),
                                 timeout=30)
        if response.status_code != 200:
            raise RuntimeError(f"{endpoint}: HTTP {response.status_code} {response.text[:200]}")

    def create_user(self, username: str, password: str) -> None:
        self._admin("2.0/mlflow/users/create", {"username": username, "password": password})

    def grant(self, username: str, experiment_id: str, permission: str = "EDIT") -> None:
        """Give a user a permission (READ, EDIT, MANAGE) on one experiment."""
        self._admin("3.0/mlflow/users/permissions/grant", {"username": username, "resource_type": "experiment",
                                                           "resource_id": experiment_id, "permission": permission})


@contextlib.contextmanager
def team_deployment(folder: str | Path, users: dict[str, str], *, default_permission: str = "READ",
                    timeout: float = 180.0) -> Iterator[TeamMlflowServer]:
    """A PostgreSQL cluster and the team server over it (artifacts in ``folder``), with ``users`` (name ->
    password) created; both stopped, and the database removed, when the block ends."""
    database = PostgresCluster()
    database.start()
    server = TeamMlflowServer(folder, database, default_permission=default_permission)
    try:
        server.start(timeout=timeout)
        for user, password in users.items():
            server.create_user(user, password)
        yield server
    finally:
        server.stop()
        database.stop()


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - a long-running helper
    parser = argparse.ArgumentParser(prog="python -m btc_ai.tracking.team_server",
                                     description="A team MLflow server on 127.0.0.1: PostgreSQL, proxied artifacts, "
                                                 "basic auth (Ctrl-C stops it; the database lives until then)")
    parser.add_argument("folder", nargs="?", default="team-server", help="artifacts, logs and the auth config")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--user", default=os.environ.get("USER") or "trainer", help="a user to create")
    args = parser.parse_args(argv)
    database = PostgresCluster()
    database.start()
    server = TeamMlflowServer(args.folder, database, args.port, default_permission="EDIT")
    try:
        server.start(timeout=180)
        password = secrets.token_urlsafe(12)
        server.create_user(args.user, password)
        secret = server.folder / f"{args.user}.password"  # never on the console: a file only its owner reads
        write_private(secret, password + "\n")
        print(f"team server at {server.url} (PostgreSQL on 127.0.0.1:{database.port}, artifacts in "
              f"{server.folder / 'artifacts'}, log {server.log})\n"
              f"  export MLFLOW_TRACKING_URI={server.url} MLFLOW_TRACKING_USERNAME={args.user}\n"
              f"  export MLFLOW_TRACKING_PASSWORD=\"$(cat {secret})\"\n"
              f"  admin login: {ADMIN_USER} (password in {server.folder / 'basic_auth.ini'})", flush=True)
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        server.stop()
        database.stop()
    return 0


if __name__ == "__main__":  # pragma: no cover
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    sys.exit(main())
