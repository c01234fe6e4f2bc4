"""Tracking stores before MLflow touches them: a URI MLflow cannot use, a local store that cannot be
opened, one missing where it must exist, and a new store that appears whole or not at all.

Left to itself, MLflow creates a missing SQLite store in place and runs its migrations there (a Ctrl-C or
a kill midway leaves a half-built file that every later open fails on, and two processes starting at once
race to create the same tables), and it retries a store it cannot open for about 100 s before a
traceback. Here every URI and local store is checked with sqlite3 in milliseconds, without importing
mlflow (`check_store`), and refused with one `StoreError`; a new store is built aside by MLflow's own
initialisation in a temporary file, under a lock file beside it, and moved into place with
``os.replace`` (`ensure_store`); a half-built store that holds nothing is rebuilt the same way.
"""

from __future__ import annotations

import contextlib
import difflib
import fcntl
import os
import re
import sqlite3
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from btc_ai.domain.errors import StoreError
from btc_ai.tracking.mlflow_internals import head_revision, store_state
from btc_ai.tracking.paths import artifact_root, resolve_tracking_uri
from btc_ai.tracking.store_template import build_store

_DATABASES = ("postgresql", "mysql", "mssql")
_SCHEMES = ("sqlite", "http", "https", *_DATABASES, "databricks", "databricks-uc", "uc")
# the database drivers SQLAlchemy imports, and the pip package that provides each
_DRIVER_PACKAGES = {"psycopg": "psycopg[binary]", "psycopg2": "psycopg2-binary", "pg8000": "pg8000",
                    "pymysql": "PyMySQL", "MySQLdb": "mysqlclient", "mysql": "mysql-connector-python",
                    "pyodbc": "pyodbc", "pymssql": "pymssql"}
LOCK_WAIT_S = 120.0  # another process building the store (a few seconds) is waited for this long at most
SQLITE_TIMEOUT_S = 15.0  # a write lock another process holds is transient; "not a database" is not
DEFAULT_STORE_HINT = "sqlite:///mlruns/mlflow.db"


def uri_source(flag_value: str | None) -> str:
    """Where the tracking URI in effect came from, for messages."""
    if flag_value:
        return "--tracking-uri"
    return "MLFLOW_TRACKING_URI" if os.environ.get("MLFLOW_TRACKING_URI") else "the default store"


def sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (relative to the working folder, or absolute with four
    slashes); None for anything else, including an in-memory ``sqlite://``."""
    if not uri.startswith("sqlite:///"):
        return None
    path = unquote(uri.removeprefix("sqlite:///").split("?", 1)[0])
    return None if path in ("", ":memory:") else Path(path)


def check_uri(uri: str, source: str = "--tracking-uri") -> None:
    """Refuse, in one line that says what to use, a URI MLflow 3 cannot open: the file store (``file:``
    or a bare path), an unknown or misspelt scheme, a malformed sqlite URI, a database without its driver."""
    if uri in ("databricks", "databricks-uc", "uc"):
        return
    match = re.match(r"([A-Za-z][A-Za-z0-9+.-]+):", uri)  # one letter is a drive, not a scheme
    scheme = match[1].lower() if match else ""  # no scheme: a bare path, which MLflow takes for a file store
    if scheme in ("", "file"):
        if os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() in ("1", "true"):
            return  # the user opted back into MLflow's file store
        path = uri.removeprefix("file://").removeprefix("file:")
        instead = f"sqlite:///{path}" if path.endswith(".db") else DEFAULT_STORE_HINT
        raise StoreError(f"{source} {uri} names an MLflow file store, which MLflow 3 no longer opens; use a "
                         f"SQLite store such as {instead} (the default when MLFLOW_TRACKING_URI is unset) or an "
                         "http:// tracking server; `mlflow migrate-filestore` moves old runs into one")
    base = scheme.split("+", 1)[0]
    if base not in _SCHEMES:
        close = difflib.get_close_matches(base, _SCHEMES, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]}://? " if close else ""
        raise StoreError(f"{source} {uri}: unknown scheme {scheme}:// ({hint}MLflow opens sqlite:///FILE.db, "
                         "http(s)://HOST:PORT and postgresql/mysql/mssql://...; the default is "
                         f"{DEFAULT_STORE_HINT})")
    if base == "sqlite" and uri != "sqlite://" and not uri.startswith("sqlite:///"):
        raise StoreError(f"{source} {uri} is not a SQLite URI MLflow can open; write sqlite:///relative/path.db "
                         "or sqlite:////absolute/path.db (three slashes, then the path)")
    if base in ("http", "https") and not uri.split("://", 1)[1].strip("/"):
        raise StoreError(f"{source} {uri} names no server; write e.g. http://127.0.0.1:5000")
    if base in _DATABASES:
        _check_driver(uri, source)


def _check_driver(uri: str, source: str) -> None:
    """A database URI whose SQLAlchemy driver is importable (MLflow would fail with a traceback)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        url = make_url(uri)
        dialect = url.get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        raise StoreError(f"{source}: {uri.split('@')[-1]} is not a database URL SQLAlchemy knows ({exc})") from None
    shown = url.render_as_string(hide_password=True)
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        module = (exc.name or dialect.driver).split(".")[0]
        package = _DRIVER_PACKAGES.get(module, module)
        also = (f" (or, with psycopg2-binary installed, write {url.get_backend_name()}+psycopg2://...)"
                if module == "psycopg" else "")
        raise StoreError(f"{source} {shown} needs the database driver {module}, which is not installed: "
                         f"pip install '{package}'{also}") from None


@dataclass(frozen=True)
class Probe:
    """What a local SQLite store file holds, read with sqlite3."""

    state: str  # "missing", "whole" (MLflow's tables and a schema version), "half" (anything less)
    revision: str | None = None
    holds_data: bool = False  # rows beyond what MLflow's initialisation writes (runs, experiments, models, ...)


def connect_readonly(database: Path, timeout: float = SQLITE_TIMEOUT_S) -> sqlite3.Connection:
    """A read-only sqlite3 connection; in a folder this process cannot write (where SQLite cannot create
    the shared-memory file a WAL database needs, and so no writer can be at work) the file is read as
    immutable."""
    uri = database.resolve().as_uri()
    try:
        db = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=timeout)
        db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        return db
    except sqlite3.OperationalError:
        if os.access(database.parent, os.W_OK):
            raise
    db = sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, timeout=timeout)
    db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
    return db


def probe(database: Path) -> Probe:
    """The state of the store file (`StoreError` when it is not a database or cannot be read)."""
    try:
        if not database.exists():
            return Probe("missing")
    except PermissionError:  # a folder on the way this user may not enter
        raise StoreError(f"cannot reach the tracking store {database} (permission denied on a folder on its way); "
                         "run as its owner, or point --tracking-uri / MLFLOW_TRACKING_URI at a store you can "
                         "read") from None
    if database.is_dir():
        raise StoreError(f"{database} is a folder, not an SQLite database; point --tracking-uri / "
                         "MLFLOW_TRACKING_URI at the store's .db file")
    if not os.access(database, os.R_OK):
        raise StoreError(f"cannot read the tracking store {database} (permission denied); run as its owner, "
                         "or point --tracking-uri / MLFLOW_TRACKING_URI at a store you can read")
    if database.stat().st_size == 0:
        return Probe("half")
    try:
        db = connect_readonly(database)
        try:
            core, revision, holds = store_state(db)
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:  # "file is not a database", "unable to open database file", ...
        raise StoreError(f"cannot open the tracking store {database}: {exc}; if it is not an MLflow store, move "
                         "it aside (or point --tracking-uri / MLFLOW_TRACKING_URI elsewhere)") from None
    whole = revision is not None and core
    return Probe("whole" if whole else "half", revision, holds)


def _half_built_with_data(database: Path) -> StoreError:
    return StoreError(f"the tracking store {database} holds runs but not MLflow's complete schema (damaged, or "
                      "not made by MLflow); restore it from a backup (btc-ai restore) or move it aside")


def _check_writable(folder: Path, database: Path) -> None:
    """The store's folder (or the nearest one that exists, where it is still to be made) and file are
    writable: SQLite writes its journal beside the database."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise StoreError(f"cannot create the tracking store {database}: {existing} is a file, not a folder; "
                         "move it aside or point --tracking-uri / MLFLOW_TRACKING_URI elsewhere")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "working folder" if existing == Path.cwd() else "folder"
        raise StoreError(f"the {where} {existing} is read-only for this user, so the tracking store {database} "
                         "cannot be written; run btc-ai in a folder you can write, or point --tracking-uri / "
                         "MLFLOW_TRACKING_URI at a writable store")
    if database.exists() and not os.access(database, os.W_OK):
        raise StoreError(f"the tracking store {database} is read-only for this user; make it writable, or point "
                         "--tracking-uri / MLFLOW_TRACKING_URI at a writable store")


def check_store(flag_value: str | None = None, *, must_exist: bool = False, write: bool = True) -> str:
    """The tracking URI in effect (flag, else ``MLFLOW_TRACKING_URI``, else ``./mlruns``), checked without
    importing mlflow or creating anything: a usable URI, and for a local SQLite store, one that is a
    database this user can read (and write, with ``write``) and that exists (with ``must_exist``).
    Servers are not asked here (the CLI probes an HTTP server's health itself)."""
    uri = resolve_tracking_uri(flag_value)
    source = uri_source(flag_value)
    check_uri(uri, source)
    database = sqlite_file(uri)
    if database is None:
        return uri
    found = probe(database)
    if found.state == "missing" and must_exist:
        raise StoreError(f"there is no tracking store at {database} (nothing was trained with {source} here); "
                         "run btc-ai in the folder you trained in, or point --tracking-uri / MLFLOW_TRACKING_URI "
                         "at the store that holds the run")
    if found.state == "half" and found.holds_data:
        raise _half_built_with_data(database)
    if found.state == "half" and not write:
        raise StoreError(f"the tracking store {database} was left half-built by an interrupted first start and "
                         "holds no runs; the next `btc-ai train` rebuilds it")
    if write:
        _check_writable(database.parent, database)
    return uri


@contextlib.contextmanager
def _store_lock(database: Path) -> Iterator[int]:
    """An exclusive lock on ``<store>.lock`` beside the store, held while a store is built or rebuilt; yields
    the folder's descriptor (for fsync). A lock file opened for writing, not the folder: NFS refuses flock on
    a read-only descriptor. A file system that cannot lock at all is one `StoreError`."""
    folder, lock = database.parent, database.with_name(database.name + ".lock")
    lock_fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o666)
    with contextlib.suppress(PermissionError):  # whoever may write the folder may take the lock too
        os.fchmod(lock_fd, stat.S_IMODE(os.stat(folder).st_mode) & 0o666)
    folder_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StoreError(f"another process has been creating the tracking store in {folder} for "
                                     f"{LOCK_WAIT_S:.0f} s; wait for it, or end it and try again") from None
                time.sleep(0.05)
            except OSError as exc:
                raise StoreError(f"cannot lock {lock} to create the tracking store ({exc.strerror or exc}): its "
                                 "file system offers no locks (NFS mounted without its lock service?); mount it "
                                 "with locking, or keep the store on a local disk with --tracking-uri "
                                 "sqlite:////local/folder/mlflow.db") from None
        yield folder_fd
    finally:
        os.close(folder_fd)
        os.close(lock_fd)  # releases the lock


def _remove(*paths: Path) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _companions(database: Path) -> list[Path]:
    return [database.with_name(database.name + suffix) for suffix in ("-wal", "-shm", "-journal")]


def ensure_store(uri: str, artifacts: str | None = None) -> None:
    """A local SQLite store at ``uri`` that MLflow opens without error: created if missing, rebuilt if
    half-built and empty, always whole or absent; anything else a `StoreError` (no-op for other URIs).
    ``artifacts``: a new store's artifact root, where it is not ``mlruns/artifacts`` beside the database."""
    database = sqlite_file(uri)
    if database is None:
        return
    found = probe(database)
    if found.state == "whole" and found.revision == head_revision():
        _check_writable(database.parent, database)
        return
    _check_writable(database.parent, database)
    try:
        database.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the tracking store folder {database.parent}: {exc.strerror or exc}; run "
                         "btc-ai in a folder you can write, or point --tracking-uri / MLFLOW_TRACKING_URI "
                         "elsewhere") from None
    with _store_lock(database) as folder_fd:
        found = probe(database)  # another process may have built it meanwhile
        if found.state == "whole" and found.revision == head_revision():
            return
        if found.holds_data:
            if found.state == "half":
                raise _half_built_with_data(database)
            raise StoreError(f"the tracking store {database} has schema version {found.revision}, not this MLflow's "
                             f"{head_revision()}; back it up (btc-ai backup), then `mlflow db upgrade "
                             f"sqlite:///{database}`, or use the MLflow version that wrote it")
        _build_into_place(database, artifacts or artifact_root(uri), folder_fd)


def _build_into_place(database: Path, artifacts: str | None, folder_fd: int) -> None:
    """A new store (`store_template.build_store`) in a temporary file beside ``database``, then one
    ``os.replace``: a process killed at any moment leaves the old state (nothing, or the half-built file)
    and at most a temporary file, which the next build removes. Called under the folder lock."""
    for stale in database.parent.glob(f".{database.name}.building-*"):  # left by a killed builder
        _remove(stale)
    tmp = database.with_name(f".{database.name}.building-{os.getpid()}")
    try:
        build_store(tmp, artifacts)  # from the template of this MLflow's stores, else by MLflow itself
        db = sqlite3.connect(tmp)
        try:  # one self-contained file: fold a write-ahead log in before it moves
            db.execute("PRAGMA journal_mode=DELETE").fetchall()
        finally:
            db.close()
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        _remove(*_companions(database))  # of a half-built store: they must not meet the new file
        os.replace(tmp, database)
        os.fsync(folder_fd)
    finally:
        _remove(tmp, *_companions(tmp))


def deleted_run(run_id: str, experiment_id: str, uri: str) -> StoreError:
    """A run deleted in the MLflow UI (or with ``mlflow runs delete``), and how to bring it back."""
    return StoreError(f"run {run_id} was deleted (in the MLflow UI or with `mlflow runs delete`) from {uri}; "
                      f"restore it in the UI or with `MLFLOW_TRACKING_URI={uri} mlflow runs restore --run-id "
                      f"{run_id}` (in Python: MlflowClient('{uri}').restore_run('{run_id}')); if its experiment "
                      f"{experiment_id} was deleted too, first `mlflow experiments restore --experiment-id "
                      f"{experiment_id}`. `mlflow gc` removes deleted runs for good")


def deleted_experiment(name: str, experiment_id: str, uri: str) -> StoreError:
    """The experiment a command would use was deleted in the MLflow UI."""
    return StoreError(f"experiment {name!r} (ID {experiment_id}) on {uri} was deleted (in the MLflow UI or with "
                      f"`mlflow experiments delete`); restore it in the UI or with `MLFLOW_TRACKING_URI={uri} mlflow "
                      f"experiments restore --experiment-id {experiment_id}` (in Python: MlflowClient('{uri}')"
                      f".restore_experiment('{experiment_id}')), or train into another one with --experiment NAME "
                      f"(`mlflow gc` removes the deleted one for good, which frees its name)")


__all__ = ["Probe", "check_store", "check_uri", "connect_readonly", "deleted_experiment", "deleted_run",
           "ensure_store", "probe", "sqlite_file", "uri_source"]
