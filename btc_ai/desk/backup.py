"""`btc-ai backup` / `btc-ai restore`: the local store, its artifacts and checkpoints in one verified zip.

A backup holds a consistent snapshot of the tracking database (SQLite's online backup API, safe while
a training writes to it), every artifact folder the database refers to inside the store folder, the
local checkpoints, a ``configs/`` folder and any extra ``--include`` paths, plus ``manifest.json``
with a sha256 and size per file and the sessions the store holds.

Restore checks every entry name and every hash before it writes anything, extracts into a temporary
sibling of the target and renames it into place, then points the artifact locations recorded in the
database at the restored folder, so the restored store works after the original is gone.

Only sqlite3, zipfile and hashlib here: no MLflow (a backup must not depend on the store's library).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import sqlite3
import stat
import tempfile
import time
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlparse

from btc_ai.domain.errors import BackupError

FORMAT = "btc_ai-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
STORE = "mlruns"  # the store folder's name inside the archive and in a restored folder
DATABASE = f"{STORE}/mlflow.db"
CHUNK = 1 << 20
_MAX_MANIFEST = 64 << 20
_VERSION = re.compile(r"^[vV]?(\d+(?:\.\d+){0,3})$")
_DESCRIPTION = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_DRIVE = re.compile(r"^[A-Za-z]:")
# already compressed (or not worth it): stored as they are
_STORED_SUFFIXES = {".pt", ".pt2", ".pth", ".ckpt", ".zip", ".gz", ".bz2", ".xz", ".zst", ".parquet", ".npz",
                    ".png", ".jpg", ".jpeg"}
# columns of MLflow's schema that hold artifact locations (absolute paths or file:// URIs)
_LOCATION_COLUMNS = {"artifact_location", "artifact_uri", "storage_location", "source", "trace_archival_location"}
_DB_SIDE_FILES = ("", "-wal", "-shm", "-journal")


@dataclass(frozen=True)
class BackupResult:
    path: Path
    files: int
    archive_bytes: int
    payload_bytes: int
    sessions: list[dict[str, Any]]
    seconds: float
    warnings: list[str] = field(default_factory=list)


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


# -- names and paths -------------------------------------------------------------------------------


def archive_name(version: str, description: str, day: str | None = None) -> str:
    """``BTC_AI_<YYYY-MM-DD>_v<version>_<description>.zip``; BackupError for a bad version or description."""
    match = _VERSION.match(version or "")
    if not match:
        raise BackupError(f"--version {version!r} must be numbers separated by dots, e.g. 1.4 or 2.0.1")
    if not _DESCRIPTION.match(description or ""):
        raise BackupError(f"--description {description!r} must be 1-64 letters, digits, '_' or '-' "
                          "(no spaces or path characters), e.g. post_training_stable")
    return f"BTC_AI_{day or time.strftime('%Y-%m-%d')}_v{match.group(1)}_{description}.zip"


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


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
    except ValueError:
        return False
    return True


def check_entry_name(name: str) -> str | None:
    """Why ``name`` may not be extracted (absolute, drive letter, ``..``, backslash, ...); None when safe."""
    if not name or "\x00" in name:
        return "an empty name or a NUL character"
    if "\\" in name:
        return "a backslash in the name"
    if name.startswith("/") or _DRIVE.match(name):
        return "an absolute path"
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return "a '..', '.' or empty path component" if name[-1:] != "/" else "a folder entry"
    return None


def _is_link(info: zipfile.ZipInfo) -> bool:
    mode = info.external_attr >> 16
    return stat.S_ISLNK(mode) or (info.create_system == 3 and stat.S_IFMT(mode) not in (0, stat.S_IFREG))


# -- backup ----------------------------------------------------------------------------------------


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
        tables = {row[0] for row in source.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not {"runs", "experiments", "tags"} <= tables:
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
    rows = db.execute(
        "SELECT r.run_uuid, r.name, r.status, r.start_time, r.experiment_id, r.lifecycle_stage, "
        "(SELECT s.value FROM tags s WHERE s.run_uuid = r.run_uuid AND s.key = 'btc_ai.status') "
        "FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid AND t.key = 'btc_ai.kind' AND t.value = 'session' "
        "ORDER BY r.start_time, r.run_uuid"
    ).fetchall()
    return [
        {"run_id": run_id, "name": name, "status": status, "run_status": run_status,
         "start_time": datetime.fromtimestamp(start / 1000, timezone.utc).isoformat() if start else None,
         "experiment_id": str(experiment), "lifecycle_stage": stage}
        for run_id, name, run_status, start, experiment, stage, status in rows
    ]


def _locations(db: sqlite3.Connection) -> list[str]:
    """Every artifact location the database records (experiments, runs, logged models, model versions)."""
    found: list[str] = []
    for table, column in _location_columns(db):
        found += [row[0] for row in db.execute(f'SELECT DISTINCT "{column}" FROM "{table}"') if isinstance(row[0], str)]
    return found


def _location_columns(db: sqlite3.Connection) -> list[tuple[str, str]]:
    pairs = []
    for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall():
        for row in db.execute(f"PRAGMA table_info(\"{table}\")").fetchall():
            if row[1].lower() in _LOCATION_COLUMNS:
                pairs.append((table, row[1]))
    return pairs


def _artifact_folders(db: sqlite3.Connection, store: Path, aliases: Sequence[str]) -> tuple[list[Path], list[str]]:
    """The local artifact folders inside ``store`` (resolved; also when recorded under one of its
    ``aliases``) to archive, none nested in another, and the locations outside it the backup cannot hold."""
    inside: set[Path] = set()
    outside: set[str] = set()
    for location in _locations(db):
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
        def sources() -> Iterator[tuple[Path, str]]:
            yield snapshot, DATABASE
            for folder in folders:
                for path in _walk(folder):
                    if path not in skip:
                        yield path, f"{STORE}/{path.relative_to(store).as_posix()}"
            for folder in [root / "checkpoints", root / "configs", *extra]:
                if folder.is_file():
                    if folder not in skip:
                        yield folder, folder.relative_to(root).as_posix()
                    continue
                for path in _walk(folder):
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


# -- verify ----------------------------------------------------------------------------------------


def _open_archive(path: str | Path) -> zipfile.ZipFile:
    path = Path(path)
    if not path.is_file():
        raise BackupError(f"{path} does not exist or is not a file; give the backup's .zip path")
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise BackupError(f"{path} is not a readable zip archive ({exc}); it is damaged or not a btc-ai backup") from None


def _read_manifest(zf: zipfile.ZipFile, path: Path) -> dict[str, Any]:
    try:
        info = zf.getinfo(MANIFEST)
    except KeyError:
        raise BackupError(f"{path} has no {MANIFEST}; it is not a btc-ai backup") from None
    if info.file_size > _MAX_MANIFEST:
        raise BackupError(f"{path}: {MANIFEST} is implausibly large ({info.file_size} bytes); refused")
    try:
        manifest = json.loads(zf.read(info))
    except (ValueError, zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError) as exc:
        raise BackupError(f"{path}: {MANIFEST} is unreadable ({exc}); the archive is damaged") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{path}: {MANIFEST} is not a btc-ai backup manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BackupError(f"{path}: backup format {manifest.get('format_version')} is not supported "
                          f"(this btc-ai reads format {FORMAT_VERSION})")
    files = manifest.get("files")
    store = manifest.get("store")
    if not isinstance(files, list) or not all(isinstance(f, dict) and isinstance(f.get("path"), str)
                                              and isinstance(f.get("sha256"), str) and isinstance(f.get("size"), int)
                                              for f in files):
        raise BackupError(f"{path}: {MANIFEST} has no valid file list; the archive is damaged")
    if not isinstance(store, dict) or not isinstance(store.get("folder"), str) or not store["folder"].startswith("/"):
        raise BackupError(f"{path}: {MANIFEST} does not name the original store folder; the archive is damaged")
    return manifest


def _check_entries(zf: zipfile.ZipFile, path: Path, manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every entry safe to extract, listed in the manifest once, and every listed file present."""
    listed: dict[str, dict[str, Any]] = {}
    for entry in manifest["files"]:
        reason = check_entry_name(entry["path"])
        if reason:
            raise BackupError(f"{path}: manifest entry {entry['path']!r} has {reason}; refused")
        if entry["path"] in listed or entry["path"] == MANIFEST:
            raise BackupError(f"{path}: manifest lists {entry['path']!r} twice; refused")
        listed[entry["path"]] = entry
    seen: set[str] = set()
    for info in zf.infolist():
        name = info.filename
        reason = check_entry_name(name)
        if reason:
            raise BackupError(f"{path}: entry {name!r} has {reason}; refused (it would write outside the target)")
        if _is_link(info):
            raise BackupError(f"{path}: entry {name!r} is a link (or another non-regular file); refused")
        if name in seen:
            raise BackupError(f"{path}: entry {name!r} appears twice; refused")
        seen.add(name)
        if name != MANIFEST and name not in listed:
            raise BackupError(f"{path}: entry {name!r} is not in the manifest; refused")
    missing = sorted(set(listed) - seen)
    if missing:
        raise BackupError(f"{path}: {missing[0]} is in the manifest but not in the archive"
                          f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}; the archive is damaged")
    if DATABASE not in listed:
        raise BackupError(f"{path}: no {DATABASE} in the archive; it is not a btc-ai backup")
    return listed


def _stream(zf: zipfile.ZipFile, path: Path, entry: dict[str, Any], sink: Any = None) -> None:
    """Read one entry (into ``sink``), raising BackupError unless its size and sha256 are the manifest's."""
    digest = hashlib.sha256()
    size = 0
    try:
        with zf.open(entry["path"]) as fh:
            while chunk := fh.read(CHUNK):
                size += len(chunk)
                if size > entry["size"]:
                    break
                digest.update(chunk)
                if sink is not None:
                    sink.write(chunk)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, NotImplementedError) as exc:
        # a CRC error, a truncated entry, a broken deflate stream, an unknown compression method
        raise BackupError(f"{path}: {entry['path']} is damaged ({exc}); the archive is damaged") from None
    if size != entry["size"] or digest.hexdigest() != entry["sha256"]:
        raise BackupError(f"{path}: {entry['path']} does not match its manifest sha256/size; the archive is damaged "
                          "or was altered")


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


# -- restore ---------------------------------------------------------------------------------------


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
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        targets = [(table, column, "") for table, column in _location_columns(db)]
        if "trace_tags" in tables:  # a trace's artifact location is one of its tags
            targets.append(("trace_tags", "value", "key = 'mlflow.artifactLocation' AND "))
        changed = 0
        with db:
            for table, column, where in targets:
                for old, new in [pair for old_store in old_stores for pair in _prefix_pairs(old_store, new_store)]:
                    cursor = db.execute(
                        f'UPDATE "{table}" SET "{column}" = ? || substr("{column}", ?) '
                        f'WHERE {where}substr("{column}", 1, ?) = ? AND (length("{column}") = ? '
                        f'OR substr("{column}", ?, 1) = \'/\')',
                        (new, len(old) + 1, len(old), old, len(old), len(old) + 1),
                    )
                    changed += cursor.rowcount
        return changed
    except sqlite3.Error as exc:
        raise BackupError(f"cannot update the restored database: {exc}") from None
    finally:
        db.close()


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

