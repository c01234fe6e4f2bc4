"""The archive's format: its name, the format constants, entry-name and path-containment checks, and
reading, checking and hashing the manifest and the entries it lists."""

from __future__ import annotations

import hashlib
import json
import re
import stat
import time
import zipfile
import zlib
from pathlib import Path
from typing import Any

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


def archive_name(version: str, description: str, day: str | None = None) -> str:
    """``BTC_AI_<YYYY-MM-DD>_v<version>_<description>.zip``; BackupError for a bad version or description."""
    match = _VERSION.match(version or "")
    if not match:
        raise BackupError(f"--version {version!r} must be numbers separated by dots, e.g. 1.4 or 2.0.1")
    if not _DESCRIPTION.match(description or ""):
        raise BackupError(f"--description {description!r} must be 1-64 letters, digits, '_' or '-' "
                          "(no spaces or path characters), e.g. post_training_stable")
    return f"BTC_AI_{day or time.strftime('%Y-%m-%d')}_v{match.group(1)}_{description}.zip"


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
