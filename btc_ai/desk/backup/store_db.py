"""The SQLite side of a backup: locating the tracking database, its online snapshot, the sessions and
artifact locations it records, and pointing those locations at a restored folder."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from btc_ai.desk.backup.manifest import STORE, _inside
from btc_ai.domain.errors import BackupError
from btc_ai.tracking.mlflow_internals import is_tracking_database, locations, relocate_prefix, tagged_runs
from btc_ai.tracking.run_model.names import KIND_SESSION, TAG_KIND, TAG_STATUS

_DB_SIDE_FILES = ("", "-wal", "-shm", "-journal")


def sqlite_database(tracking_uri: str | None, root: Path) -> Path:
    """The database file of a local SQLite tracking URI (``None``: ``<root>/mlruns/mlflow.db``)."""
    if not tracking_uri:
        return root / STORE / "mlflow.db"
    if tracking_uri.startswith("sqlite:///"):
        path = Path(unquote(tracking_uri.removeprefix("sqlite:///").split("?", 1)[0]))
        return path if path.is_absolute() else root / path
    raise BackupError(f"backups are of the local SQLite store, not {tracking_uri}; point at it with "
                      "--tracking-uri sqlite:///<folder>/mlruns/mlflow.db (or run where ./mlruns/mlflow.db is and "
                      "unset MLFLOW_TRACKING_URI)")


def _local_path(location: str | None) -> Path | None:
    """The folder a ``file://`` URI or absolute path names; None for other schemes (runs:/, s3://, ...)."""
    if not location:
        return None
    if location.startswith("file:"):
        parsed = urlparse(location)
        if parsed.netloc not in ("", "localhost"):
            return None
        return Path(unquote(parsed.path))
    if location.startswith("/") and "://" not in location:
        return Path(location)
    return None


def _snapshot(database: Path, target: Path) -> None:
    """A consistent copy of a live database (online backup: one read transaction, writers go on)."""
    if not database.is_file():
        raise BackupError(f"no tracking database at {database}; run from the project folder (where mlruns/ is) "
                          "or give --tracking-uri sqlite:///<path>/mlflow.db")
    try:
        source = sqlite3.connect(f"{database.resolve().as_uri()}?mode=rw", uri=True, timeout=60)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot open the tracking database {database}: {exc}") from None
    try:
        if not is_tracking_database(source):
            raise BackupError(f"{database} is not an MLflow tracking database (no runs/experiments tables)")
        copy = sqlite3.connect(target)
        try:
            source.backup(copy)
            copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        finally:
            copy.close()
    except sqlite3.Error as exc:
        raise BackupError(f"cannot read the tracking database {database}: {exc}") from None
    finally:
        source.close()


def _sessions(db: sqlite3.Connection) -> list[dict[str, Any]]:
    rows = tagged_runs(db, TAG_KIND, KIND_SESSION, also=TAG_STATUS)
    return [
        {"run_id": run_id, "name": name, "status": status, "run_status": run_status,
         "start_time": datetime.fromtimestamp(start / 1000, timezone.utc).isoformat() if start else None,
         "experiment_id": str(experiment), "lifecycle_stage": stage}
        for run_id, name, run_status, start, experiment, stage, status in rows
    ]


def _artifact_folders(db: sqlite3.Connection, store: Path, aliases: Sequence[str]) -> tuple[list[Path], list[str]]:
    """The local artifact folders inside ``store`` (resolved; also when recorded under one of its
    ``aliases``) to archive, none nested in another, and the locations outside it the backup cannot hold."""
    inside: set[Path] = set()
    outside: set[str] = set()
    for location in locations(db):
        path = _local_path(location)
        if path is None:
            if not location.startswith(("runs:/", "models:/", "mlflow-artifacts:")):
                outside.add(location)
            continue
        path = Path(os.path.normpath(path))
        for alias in aliases:
            if _inside(path, Path(alias)):
                path = store / path.relative_to(alias)
                break
        (inside.add(path) if _inside(path, store) and path != store else outside.add(location))
    roots: list[Path] = []
    for path in sorted(inside, key=lambda p: p.parts):  # a folder's subfolders follow it directly in this order
        if not roots or not _inside(path, roots[-1]):
            roots.append(path)
    return roots, sorted(outside)


def _prefix_pairs(old: str, new: Path) -> list[tuple[str, str]]:
    """(old, new) prefixes in each form MLflow may have stored: file URI (quoted or not) and plain path."""
    old_path = Path(old)
    pairs = [(old_path.as_uri(), new.as_uri()), ("file://" + old, "file://" + str(new)), (old, str(new))]
    unique: list[tuple[str, str]] = []
    for pair in pairs:
        if pair not in unique and pair[0] != pair[1]:
            unique.append(pair)
    return unique


def _original_folders(manifest: dict[str, Any]) -> list[str]:
    """The original store folder and the other spellings of it the database may hold, longest first."""
    store = manifest["store"]
    aliases = store.get("aliases") if isinstance(store.get("aliases"), list) else []
    folders = {store["folder"], *(a for a in aliases if isinstance(a, str) and a.startswith("/"))}
    return sorted((f.rstrip("/") for f in folders if f.rstrip("/")), key=len, reverse=True)


def _relocate(database: Path, old_stores: Sequence[str], new_store: Path) -> int:
    """Point every artifact location under the original store folder at the restored one; cells changed."""
    db = sqlite3.connect(database)
    try:
        ok = db.execute("PRAGMA quick_check").fetchone()[0]
        if ok != "ok":
            raise BackupError(f"the restored database fails SQLite's check ({ok}); the backup is unusable")
        with db:
            return sum(relocate_prefix(db, old, new)
                       for old, new in [pair for old_store in old_stores for pair in _prefix_pairs(old_store, new_store)])
    except sqlite3.Error as exc:
        raise BackupError(f"cannot update the restored database: {exc}") from None
    finally:
        db.close()
