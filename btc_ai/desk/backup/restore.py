"""`btc-ai restore`: verify_backup (every name, size and hash) and restore_backup, which extracts into a
temporary sibling, relocates the database's artifact locations and moves the result into place."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from btc_ai.desk.backup.manifest import (
    DATABASE,
    MANIFEST,
    STORE,
    _check_entries,
    _inside,
    _open_archive,
    _read_manifest,
    _stream,
)
from btc_ai.desk.backup.store_db import _original_folders, _relocate
from btc_ai.domain.errors import BackupError


@dataclass(frozen=True)
class VerifyResult:
    path: Path
    files: int
    payload_bytes: int
    sessions: list[dict[str, Any]]
    manifest: dict[str, Any]


@dataclass(frozen=True)
class RestoreResult:
    path: Path
    tracking_uri: str
    files: int
    sessions: list[dict[str, Any]]
    rewritten: int  # database cells whose artifact location now points into ``path``
    original_store: str


def verify_backup(path: str | Path) -> VerifyResult:
    """Check the manifest, every entry name and every file's size and sha256; BackupError at the first fault."""
    path = Path(path)
    with _open_archive(path) as zf:
        manifest = _read_manifest(zf, path)
        listed = _check_entries(zf, path, manifest)
        for entry in listed.values():
            _stream(zf, path, entry)
    return VerifyResult(path, len(listed), sum(e["size"] for e in listed.values()), list(manifest.get("sessions", [])),
                        manifest)


def restore_backup(path: str | Path, into: str | Path) -> RestoreResult:
    """Verify ``path``, then restore it into ``into`` (absent or an empty folder), ready to use.

    Nothing is written before every name and hash checked out; the files go to a temporary sibling
    first and are renamed into place at the end, and the database's artifact locations are rewritten
    from the original store folder to ``<into>/mlruns``.
    """
    path = Path(path)
    given = Path(os.path.abspath(into))
    if given.is_symlink() or (given.exists() and not given.is_dir()):
        raise BackupError(f"--into {into} exists and is not a folder (or is a link); give a new or empty folder")
    target = Path(os.path.realpath(given))  # the spelling MLflow itself records for a local store
    if target.is_dir() and any(target.iterdir()):
        raise BackupError(f"--into {into} is not empty; restore into a new or empty folder")
    checked = verify_backup(path)  # names, links, duplicates, sizes and hashes: before any write
    manifest = checked.manifest
    listed = {entry["path"]: entry for entry in manifest["files"]}
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.restore-", dir=target.parent))
    umask = os.umask(0o022)
    os.umask(umask)
    work.chmod(0o777 & ~umask)  # an ordinary folder once renamed into place, not mkdtemp's private one
    try:
        with _open_archive(path) as zf:
            for name, entry in listed.items():
                out = work.joinpath(*PurePosixPath(name).parts)
                if not _inside(Path(os.path.abspath(out)), work):  # belt and braces after check_entry_name
                    raise BackupError(f"{path}: entry {name!r} would write outside the target; refused")
                out.parent.mkdir(parents=True, exist_ok=True)
                with open(out, "xb") as sink:
                    _stream(zf, path, entry, sink)  # hashed again: the file may have changed since the check
                with contextlib.suppress(ValueError, OverflowError):  # keep the archived modification time
                    stamp = time.mktime((*zf.getinfo(name).date_time, 0, 0, -1))
                    os.utime(out, (stamp, stamp))
            (work / MANIFEST).write_bytes(zf.read(MANIFEST))
        rewritten = _relocate(work / DATABASE, _original_folders(manifest), target / STORE)
        _move_into_place(work, target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    database = target / DATABASE
    return RestoreResult(target, f"sqlite:///{database}", len(listed), list(manifest.get("sessions", [])), rewritten,
                         manifest["store"]["folder"])


def _move_into_place(work: Path, target: Path) -> None:
    try:
        os.rename(work, target)  # also replaces an empty folder (POSIX)
        return
    except OSError:
        if not target.is_dir() or any(target.iterdir()):
            raise
    for child in sorted(work.iterdir()):  # an empty folder rename cannot replace (e.g. a mount point)
        os.rename(child, target / child.name)
    work.rmdir()
