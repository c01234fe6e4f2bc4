"""Where candles come from: one file (read as it always was), or many files read as one series — a
folder, a glob (``data/BTCUSDT-5m-*.zip``) or several paths — and how such a source is written into a
run's record and read back on a resume.

A folder's candle files are its regular, visible files ending in a data suffix; the ``.CHECKSUM`` files
Binance (and ``btc-ai data fetch``) put beside each zip and partial downloads (``*.part``) are not data
and are passed over. Binance's own file names (``BTCUSDT-5m-2024-01.zip``) say the symbol and interval.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from btc_ai.domain.errors import DataValidationError

DATA_SUFFIXES = (".csv", ".zip", ".gz", ".parquet", ".pq", ".txt", ".tsv")
_MAGIC = re.compile(r"[*?\[]")
_BINANCE_FILE = re.compile(
    r"^(?P<symbol>[A-Z0-9]{2,})-(?P<interval>\d+[smhdwM])-(?P<date>\d{4}-\d{2}(?:-\d{2})?)\.(?:zip|csv)$"
)
_BINANCE_UNITS = {"s": "s", "m": "min", "h": "h", "d": "D", "w": "W"}
FETCH_MANIFEST = "btc_ai-fetch.json"  # written by `btc-ai data fetch` beside the zips: each one's URL and sha256
_SEPARATOR = "\n"  # several paths in one recorded source text (a tag value); a path holds no newline


@dataclass(frozen=True)
class DataFile:
    """One file of a series: where it is, its sha256, and the bars it gave."""

    path: str
    sha256: str
    rows: int
    start: pd.Timestamp
    end: pd.Timestamp
    url: str = ""  # where `btc-ai data fetch` downloaded it from (its manifest says), else ""

    def to_dict(self) -> dict[str, Any]:
        out = {"path": self.path, "sha256": self.sha256, "rows": int(self.rows),
               "start": self.start.isoformat(), "end": self.end.isoformat()}
        return {**out, "url": self.url} if self.url else out


def with_urls(report: Any) -> Any:
    """``report`` (a DataReport) with each file's URL where the fetch manifest of its folder lists the file
    with the same sha256 (a file changed since it was fetched did not come from there)."""
    manifests: dict[Path, dict[str, Any]] = {}
    files = []
    for f in report.files:
        folder = Path(f.path).parent
        if folder not in manifests:
            manifests[folder] = read_manifest(folder)
        entry = manifests[folder].get(Path(f.path).name) or {}
        files.append(replace(f, url=str(entry["url"])) if entry.get("sha256") == f.sha256 and entry.get("url") else f)
    return replace(report, files=tuple(files)) if any(f.url for f in files) else report


def read_manifest(folder: Path) -> dict[str, Any]:
    """The fetch manifest's files (name -> url and sha256); empty when there is none or it cannot be read."""
    try:
        files = json.loads((folder / FETCH_MANIFEST).read_text(encoding="utf-8"))["files"]
        return files if isinstance(files, dict) else {}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def sha256_of(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def files_digest(sha256s: Sequence[str]) -> str:
    """One sha256 for a set of files: the same files, wherever they lie and however named, give the same one."""
    return hashlib.sha256("\n".join(sorted(sha256s)).encode()).hexdigest()


def is_many(source: Any) -> bool:
    """A folder, a glob, or more than one path: read as one series of many files."""
    if isinstance(source, (list, tuple)):
        return len(source) != 1 or is_many(source[0])
    if not isinstance(source, (str, Path)):
        return False
    text = str(source)
    if _SEPARATOR in text:
        return True
    return os.path.isdir(text) or (bool(_MAGIC.search(text)) and not os.path.exists(text))


def expand(source: str | Path | Sequence[str | Path]) -> list[Path]:
    """The candle files of a many-file source, each once. DataValidationError when nothing matches;
    FileNotFoundError for a named file that is not there."""
    items = list(source) if isinstance(source, (list, tuple)) else str(source).split(_SEPARATOR)
    found: dict[Path, None] = {}
    for item in items:
        for path in _expand_one(str(item)):
            found.setdefault(path.resolve(), None)
    return list(found)


def _expand_one(item: str) -> list[Path]:
    path = Path(item)
    if os.path.isdir(item):  # os.path: a folder it may not look into is not one (the read says why)
        files = [p for p in sorted(path.iterdir()) if _is_data_file(p)]
        if not files:
            raise DataValidationError(f"{item} holds no candle files ({', '.join(DATA_SUFFIXES)}); put the CSV or "
                                      "zip files in it, or give a file or a glob")
        return files
    if _MAGIC.search(item) and not os.path.exists(item):
        files = [Path(p) for p in sorted(glob.glob(os.path.expanduser(item))) if _is_data_file(Path(p))]
        if not files:
            raise DataValidationError(f"{item} matches no candle files ({', '.join(DATA_SUFFIXES)}); check the "
                                      "pattern (quote it so the shell leaves it to btc-ai)")
        return files
    if not os.path.lexists(item):
        raise FileNotFoundError(errno.ENOENT, "no such file", item)
    return [path]


def _is_data_file(path: Path) -> bool:
    """Passed over: hidden files, ``.CHECKSUM`` files, partial downloads, anything not candles by its suffix."""
    name = path.name.lower()
    return not name.startswith(".") and name.endswith(DATA_SUFFIXES) and path.is_file()


def binance_name(path: str | Path) -> tuple[str, pd.Timedelta | None] | None:
    """(symbol, interval) from a Binance dump's name (``BTCUSDT-5m-2024-01.zip``); the interval None for
    months (``1M``), which have no fixed length; None for other names."""
    match = _BINANCE_FILE.match(Path(path).name)
    if match is None:
        return None
    text = match["interval"]
    unit = _BINANCE_UNITS.get(text[-1])
    return match["symbol"], (pd.Timedelta(f"{text[:-1]}{unit}") if unit else None)


def source_text(source: Any) -> str:
    """How a file source is recorded on a run: absolute paths (a glob stays a glob, so a resume sees the files
    as they are then), several joined one per line."""
    if isinstance(source, (list, tuple)):
        return _SEPARATOR.join(source_text(s) for s in source)
    text = str(source)
    if _MAGIC.search(text) and not os.path.exists(text):
        return os.path.abspath(os.path.expanduser(text))  # a resume from another folder finds the same files
    return str(Path(text).resolve())


def display(source: Any) -> str:
    """A many-file source as a user named it, on one line."""
    items = list(source) if isinstance(source, (list, tuple)) else str(source).split(_SEPARATOR)
    if len(items) == 1:
        return str(items[0])
    return ", ".join(str(i) for i in items[:3]) + (f" and {len(items) - 3} more" if len(items) > 3 else "")


def source_from_text(text: str) -> str | list[str]:
    """The source a recorded text names (see :func:`source_text`)."""
    return text.split(_SEPARATOR) if _SEPARATOR in text else text


def missing_part(text: str) -> str | None:
    """The first path of a recorded source that is not here now (a glob counts as here: it is expanded)."""
    for item in text.split(_SEPARATOR):
        if not (_MAGIC.search(item) or os.path.exists(item)):
            return item
    return None


def file_set_change(recorded: Sequence[Any], current: Sequence[Any]) -> str | None:
    """How two sets of files (dicts with path and sha256) differ, in words; None when they hold the same
    files (by content, wherever they lie), or when both are one file (a single file is judged by its
    candles alone, as it always was)."""
    if len(recorded) <= 1 and len(current) <= 1:
        return None
    before = {_name(f): f["sha256"] for f in recorded}
    after = {_name(f): f["sha256"] for f in current}
    if sorted(before.values()) == sorted(after.values()):
        return None
    added = sorted(n for n in after if n not in before)
    removed = sorted(n for n in before if n not in after)
    changed = sorted(n for n in after if n in before and after[n] != before[n])
    parts = [f"{what} {_few(names)}" for what, names in (("added", added), ("removed", removed),
                                                         ("changed", changed)) if names]
    return "; ".join(parts) or "the files' contents moved between names"


def _name(entry: Any) -> str:
    return Path(entry["path"]).name


def _few(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
