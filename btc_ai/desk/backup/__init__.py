"""`btc-ai backup` / `btc-ai restore`: the local store, its artifacts and checkpoints in one verified zip.

A backup holds a consistent snapshot of the tracking database (SQLite's online backup API, safe while
a training writes to it), every artifact folder the database refers to inside the store folder, the
local checkpoints, a ``configs/`` folder and any extra ``--include`` paths, plus ``manifest.json``
with a sha256 and size per file and the sessions the store holds.

Restore checks every entry name and every hash before it writes anything, extracts into a temporary
sibling of the target and renames it into place, then points the artifact locations recorded in the
database at the restored folder, so the restored store works after the original is gone.

Only sqlite3, zipfile and hashlib here: no MLflow (a backup must not depend on the store's library).

- ``manifest``: the archive's name, format constants, entry-name checks, reading and hashing entries.
- ``store_db``: the SQLite side (the database, its snapshot, sessions, artifact locations, relocation).
- ``create``: ``create_backup``.
- ``restore``: ``verify_backup`` and ``restore_backup``.
"""

from __future__ import annotations

from btc_ai.desk.backup.create import BackupResult, create_backup
from btc_ai.desk.backup.manifest import (
    CHUNK,
    DATABASE,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    STORE,
    archive_name,
    check_entry_name,
)
from btc_ai.desk.backup.restore import RestoreResult, VerifyResult, restore_backup, verify_backup
from btc_ai.desk.backup.store_db import sqlite_database
from btc_ai.domain.errors import BackupError

__all__ = [
    "CHUNK",
    "DATABASE",
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST",
    "STORE",
    "BackupError",
    "BackupResult",
    "RestoreResult",
    "VerifyResult",
    "archive_name",
    "check_entry_name",
    "create_backup",
    "restore_backup",
    "sqlite_database",
    "verify_backup",
]
