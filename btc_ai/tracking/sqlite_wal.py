"""The write-ahead log of local SQLite stores: WAL with synchronous=NORMAL while a command runs, a commit made
durable where a promise rests on it (a checkpoint's marker), and the log folded into the database file when
the command ends, so that ``mlflow.db`` alone holds the whole store (copied, backed up, opened by a UI).

MLflow keeps one SQLAlchemy engine per store URI for the life of the process (and its connections open);
they are found here through SQLAlchemy's public events, not MLflow's private caches.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import os
import sqlite3
import threading
import weakref
from pathlib import Path
from typing import Any

_lock = threading.Lock()
_engines: weakref.WeakSet[Any] = weakref.WeakSet()  # every SQLite engine this process connected with
_databases: set[Path] = set()  # and their database files
_readers: list[sqlite3.Connection] = []  # read-only connections of this command (the run model's fast reader)
_tuned = False


def tune_sqlite() -> None:
    """WAL journal with synchronous=NORMAL for every SQLite store this process opens, and the log folded in
    at exit (see :func:`close_sqlite_stores`).

    A commit then appends to the write-ahead log without an fsync (the slow part of a commit), a killed
    process loses nothing that was committed, and readers such as the UI no longer block the training's
    writes. A power cut (not a kill) can lose the newest commits since the log was last synced: a suffix
    of them, never one out of order (the log's frames are checksummed in a chain). The checkpoint marker,
    which older checkpoint files are deleted after, is synced at once (:func:`make_durable`).
    """
    global _tuned
    with _lock:
        if _tuned:
            return
        _tuned = True
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "connect")
    def _pragmas(dbapi_connection: Any, connection_record: Any) -> None:
        if type(dbapi_connection).__module__.startswith("sqlite3"):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

    @event.listens_for(Engine, "engine_connect")
    def _remember(connection: Any) -> None:  # every use: the stores this command used, pooled connections too
        engine = connection.engine
        if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
            with _lock:
                _engines.add(engine)
                _databases.add(Path(engine.url.database))

    atexit.register(close_sqlite_stores)  # a notebook or script: at the interpreter's exit


def forget_sqlite_stores() -> None:
    """A command begins: the stores used before it (a test's, a notebook's earlier cells) are not its own."""
    with _lock:
        _databases.clear()
        _readers.clear()


def remember_reader(db: sqlite3.Connection, database: Path) -> None:
    """A read-only connection this command opened on ``database``: opening it made SQLite create the ``-wal``
    and ``-shm`` files, which only a writable connection removes; it is closed and the log folded (removed) as
    the command ends, so a command that only read leaves the store as it found it."""
    with _lock:
        _readers.append(db)
        _databases.add(database)


def make_durable(database: Path | None) -> None:
    """Every commit to ``database`` so far on disk (the write-ahead log fsynced), power cut or not."""
    if database is None:
        return
    with contextlib.suppress(FileNotFoundError):  # no log: every commit is in the database file already
        fd = os.open(f"{database}-wal", os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def close_sqlite_stores() -> None:
    """Close every SQLite connection MLflow keeps in this process and fold the write-ahead log of each store
    it opened into the database file. The last connection to close removes the ``-wal`` and ``-shm`` files;
    where another process still has the store open, its own exit does. Never raises: it runs as a command
    ends, whatever ended it. (A store a command refused before MLflow opened it is left exactly as it was.)"""
    with _lock:
        engines, databases, readers = list(_engines), set(_databases), list(_readers)
        _databases.clear()
        _readers.clear()
    for reader in readers:
        with contextlib.suppress(Exception):
            reader.close()
    for engine in engines:
        with contextlib.suppress(Exception):
            engine.dispose()  # a pooled connection left open keeps the log from being folded in
    left = [database for database in databases if not fold_wal(database)]
    if left:  # a connection dropped with a traceback's frames (an error caught) stays open until collected
        gc.collect()  # (slow with torch, MLflow and pandas loaded: only where needed)
        for database in left:
            fold_wal(database)


def fold_wal(database: Path) -> bool:
    """Checkpoint ``database``'s write-ahead log into it (TRUNCATE); True when no log is left beside it (none
    was, or this was the store's last connection). A store that is not there, read-only, busy with another
    process or not a database is left as it is."""
    wal = Path(f"{database}-wal")
    try:
        if not wal.exists():
            return True
        # mode=rw: a store that is not there is not created
        db = sqlite3.connect(f"{database.resolve().as_uri()}?mode=rw", uri=True, timeout=1.0)
        try:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        finally:
            db.close()
        return not wal.exists()
    except (sqlite3.Error, OSError):
        return True  # nothing this process can do about it
