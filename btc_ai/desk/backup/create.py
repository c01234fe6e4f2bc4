"""`btc-ai backup`: create_backup, which pins the files, snapshots the database, streams everything into
a zip with its manifest and publishes it under its final name, never half-written."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import stat
import tempfile
import time
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from btc_ai.desk.backup.manifest import (
    _VERSION,
    CHUNK,
    DATABASE,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    STORE,
    _inside,
    archive_name,
)
from btc_ai.desk.backup.store_db import (
    _DB_SIDE_FILES,
    _artifact_folders,
    _sessions,
    _snapshot,
    sqlite_database,
)
from btc_ai.domain.errors import BackupError

# already compressed (or not worth it): stored as they are
_STORED_SUFFIXES = {".pt", ".pt2", ".pth", ".ckpt", ".zip", ".gz", ".bz2", ".xz", ".zst", ".parquet", ".npz",
                    ".png", ".jpg", ".jpeg"}


@dataclass(frozen=True)
class BackupResult:
    path: Path
    files: int
    archive_bytes: int
    payload_bytes: int
    sessions: list[dict[str, Any]]
    seconds: float
    warnings: list[str] = field(default_factory=list)


def _walk(folder: Path) -> Iterator[Path]:
    """Regular files under ``folder`` (symlinks neither followed nor listed), in a stable order."""
    for current, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = Path(current) / name
            if not path.is_symlink():
                yield path


def _pin(trees: Sequence[Path], skip: set[Path], folder: Path, pinned: dict[Path, Path]) -> None:
    """Hard-link (copy where links are impossible) every file under ``trees`` not pinned yet into ``folder``:
    the archive then reads these, whatever the training deletes or adds meanwhile."""
    folder.mkdir(exist_ok=True)
    for tree in trees:
        for path in ([tree] if tree.is_file() else _walk(tree) if tree.is_dir() else []):
            if path in pinned or path in skip or _inside(path, folder.parent):
                continue
            target = folder / f"{len(pinned)}{path.suffix}"
            try:
                os.link(path, target)
            except FileNotFoundError:
                continue  # deleted since it was listed
            except OSError:
                try:
                    shutil.copy2(path, target)
                except FileNotFoundError:
                    continue
            pinned[path] = target


def _add_file(zf: zipfile.ZipFile, path: Path, arcname: str) -> dict[str, Any] | None:
    """Stream ``path`` into the archive, hashing what is written; None when it vanished meanwhile."""
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below; a file deleted since it was listed is skipped
    except FileNotFoundError:
        return None
    with fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            return None
        info = zipfile.ZipInfo(arcname, date_time=time.localtime(max(st.st_mtime, 315_619_200))[:6])
        info.external_attr = (stat.S_IFREG | (st.st_mode & 0o777)) << 16
        info.compress_type = zipfile.ZIP_STORED if path.suffix.lower() in _STORED_SUFFIXES else zipfile.ZIP_DEFLATED
        info.file_size = st.st_size
        digest = hashlib.sha256()
        size = 0
        with zf.open(info, "w", force_zip64=st.st_size > (1 << 30)) as out:
            while chunk := fh.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
    return {"path": arcname, "sha256": digest.hexdigest(), "size": size}


def create_backup(version: str, description: str, *, dest: str | Path = "backups", root: str | Path | None = None,
                  tracking_uri: str | None = None, include: Sequence[str | Path] = ()) -> BackupResult:
    """Write ``<dest>/BTC_AI_<date>_v<version>_<description>.zip`` and return what it holds.

    ``root`` is the project folder (default: the working directory): ``checkpoints/`` and ``configs/``
    under it are archived if present, ``include`` paths (files or folders inside it) too. The store is
    the SQLite database of ``tracking_uri`` (default ``<root>/mlruns/mlflow.db``) with the artifact
    folders it refers to inside its folder. Nothing is left behind on any failure or interrupt.
    """
    tick = time.perf_counter()
    root = Path(root or Path.cwd()).resolve()
    name = archive_name(version, description)
    given = Path(os.path.abspath(sqlite_database(tracking_uri, root)))
    database = given.resolve()
    store = database.parent
    aliases = sorted({str(store), str(given.parent)})  # the store folder as MLflow may have recorded it
    dest = (root / dest).resolve() if not Path(dest).is_absolute() else Path(dest).resolve()
    final = dest / name
    if final.exists() or final.is_symlink():
        raise BackupError(f"{final} already exists; a backup is never overwritten (choose another --version or "
                          "--description, or move the old archive)")
    extra = [_included(root, store, Path(p)) for p in include]
    if not database.is_file():
        raise BackupError(f"no tracking database at {database}; run from the project folder (where mlruns/ is) "
                          "or give --tracking-uri sqlite:///<path>/mlflow.db")
    dest.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".btc_ai_backup-", dir=dest))
    try:
        # A training may be writing: files are pinned (hard links) before and after the database snapshot,
        # so a checkpoint the snapshot records is archived even if retention deletes it meanwhile.
        skip = {database.with_name(database.name + s) for s in _DB_SIDE_FILES}
        trees = [store, root / "checkpoints", root / "configs", *extra]
        staged: dict[Path, Path] = {}
        _pin(trees, skip, work / "pinned", staged)
        snapshot = work / "mlflow.db"
        _snapshot(database, snapshot)
        _pin(trees, skip, work / "pinned", staged)
        db = sqlite3.connect(snapshot)
        try:
            sessions = _sessions(db)
            folders, outside = _artifact_folders(db, store, aliases)
        finally:
            db.close()
        def under(folder: Path) -> list[Path]:
            """The files of ``folder`` now and those pinned from it: a checkpoint the snapshot records is archived
            from its pinned link even when retention deleted it since."""
            return sorted({*_walk(folder), *(p for p in staged if _inside(p, folder))})

        def sources() -> Iterator[tuple[Path, str]]:
            yield snapshot, DATABASE
            for folder in folders:
                for path in under(folder):
                    if path not in skip:
                        yield path, f"{STORE}/{path.relative_to(store).as_posix()}"
            for folder in [root / "checkpoints", root / "configs", *extra]:
                if folder.is_file():
                    if folder not in skip:
                        yield folder, folder.relative_to(root).as_posix()
                    continue
                for path in under(folder):
                    if path not in skip and not _inside(path, work) and not any(_inside(path, f) for f in folders):
                        yield path, path.relative_to(root).as_posix()

        partial = work / name
        files: list[dict[str, Any]] = []
        seen: set[str] = set()
        skipped: list[str] = []
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
            for path, arcname in sources():
                if arcname in seen or arcname == MANIFEST:
                    continue
                seen.add(arcname)
                entry = _add_file(zf, staged.get(path, path), arcname)
                if entry is None:
                    skipped.append(arcname)
                else:
                    files.append(entry)
            warnings = [f"{len(outside)} artifact location(s) outside {store} are not in the backup: "
                        f"{', '.join(outside[:3])}{' ...' if len(outside) > 3 else ''}"] if outside else []
            if skipped:
                warnings.append(f"{len(skipped)} file(s) vanished while the backup ran (a training deleting old "
                                f"checkpoints): {', '.join(skipped[:3])}{' ...' if len(skipped) > 3 else ''}")
            manifest = {
                "format": FORMAT, "format_version": FORMAT_VERSION,
                "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "btc_ai_version": _btc_ai_version(), "version": _VERSION.match(version).group(1),  # type: ignore[union-attr]
                "description": description, "root": str(root),
                "store": {"database": DATABASE, "folder": str(store), "aliases": aliases,
                          "artifact_root": (store / "artifacts").as_uri(),
                          "tracking_uri": tracking_uri or f"sqlite:///{database}"},
                "files": files, "sessions": sessions, "skipped": skipped, "outside_store": outside,
            }
            zf.writestr(MANIFEST, json.dumps(manifest, indent=2) + "\n")
        with open(partial, "rb") as fh:
            os.fsync(fh.fileno())
        _publish(partial, final)
        _fsync_dir(dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return BackupResult(final, len(files), final.stat().st_size, sum(f["size"] for f in files), sessions,
                        time.perf_counter() - tick, warnings)


def _btc_ai_version() -> str:
    from btc_ai import __version__

    return __version__


def _included(root: Path, store: Path, path: Path) -> Path:
    full = Path(os.path.abspath(root / path))
    if not _inside(full, root) or full == root:
        raise BackupError(f"--include {path} is not inside the project folder {root}; include files or folders of "
                          "the project only")
    if full.is_symlink() or not full.exists():
        raise BackupError(f"--include {path} does not exist (or is a link); give a file or folder of the project")
    relative = full.relative_to(root).as_posix()
    if relative == MANIFEST or (relative.split("/")[0] == STORE and store != root / STORE):
        raise BackupError(f"--include {path} clashes with the archive's own {relative.split('/')[0]}; rename it")
    return full


def _publish(partial: Path, final: Path) -> None:
    """Give the finished archive its name, never replacing one that appeared meanwhile."""
    try:
        os.link(partial, final)
    except FileExistsError:
        raise BackupError(f"{final} already exists; a backup is never overwritten") from None
    except OSError:  # no hard links here (some network or FAT file systems)
        if final.exists():
            raise BackupError(f"{final} already exists; a backup is never overwritten") from None
        os.rename(partial, final)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
