"""A cache of parsed candles: the clean frame and its DataReport of a CSV or zip source, kept as one Parquet
file keyed by the files' sha256, so a second load of years of candles reads Parquet instead of parsing text.

The key is a sha256 of everything that decides the result: each file's path and sha256 in the order read,
the source as the user named it (the report says it), the options (``min_rows``, ``date_format``,
``outlier_bars``) and the reader's version (a digest of this package's source and the pandas, numpy and
pyarrow versions), so a changed byte, option or reader misses. A hit is checked against the data
fingerprint and key stored with it; an entry that cannot be read or does not match is passed over and written
again, never an error. Entries are written to a temporary name and renamed into place; the oldest
(by last use) are removed once the folder holds more than ``MAX_BYTES``.

Where: ``$BTC_AI_CACHE_DIR/candles`` (default ``$XDG_CACHE_HOME/btc_ai/candles``, else
``~/.cache/btc_ai/candles``). ``BTC_AI_CANDLE_CACHE=off`` turns it off. Only sources of at least
``MIN_BYTES`` are cached: below that, parsing is about as quick as reading Parquet; Parquet sources are
never cached (they are read as fast already).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd

from btc_ai.domain.cache_dir import cache_root, switched_off
from btc_ai.domain.data.report import DataReport
from btc_ai.domain.data.schema import COLUMNS, _frame, data_fingerprint
from btc_ai.domain.data.sources import DataFile

SWITCH_VARIABLE = "BTC_AI_CANDLE_CACHE"  # off / 0 / no / false turns the cache off
MIN_BYTES = 4 << 20  # smaller sources (under ~3 months of 5-minute CSV) parse about as fast as a hit reads
MAX_BYTES = 2 << 30  # the folder's bound: least recently used entries go first
_META = b"btc_ai:candles"  # the Parquet metadata key (not a module path)
_STALE_S = 3600.0  # a temporary file this old is a killed writer's
_log = logging.getLogger(__name__)


def cache_folder() -> Path | None:
    """The candle cache's folder, or None when it is turned off."""
    if switched_off(SWITCH_VARIABLE):
        return None
    return cache_root() / "candles"


@cache
def reader_version() -> str:
    """A digest of the reader's own code and the libraries it parses with: any change misses the cache."""
    import numpy
    import pyarrow

    digest = hashlib.sha256(f"{sys.version_info[:2]} {pd.__version__} {numpy.__version__} "
                            f"{pyarrow.__version__}".encode())
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def cache_key(files: Sequence[tuple[str, str]], label: str, options: dict[str, Any]) -> str:
    text = json.dumps({"reader": reader_version(), "files": [list(f) for f in files], "label": label,
                       "options": options}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def read_entry(key: str) -> tuple[pd.DataFrame, DataReport] | None:
    """The cached frame and report of ``key``; None when missing, unreadable or not what it claims."""
    folder = cache_folder()
    path = folder / f"{key}.parquet" if folder else None
    if path is None or not path.is_file():
        return None
    try:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        meta = json.loads(table.schema.metadata[_META])
        frame = _frame(table.column("timestamp").cast("int64").to_numpy(),
                       *(table.column(name).to_numpy() for name in COLUMNS))
        report = _report_from(meta["report"])
        if meta["key"] != key or len(frame) != report.rows or data_fingerprint(frame) != meta["fingerprint"]:
            raise ValueError("the entry is not the one its name says, or not its candles")
    except Exception as exc:  # a damaged entry is a miss, whatever broke in it
        _log.info("candle cache entry %s passed over (%s); it is written again", path, exc)
        return None
    with contextlib.suppress(OSError):
        os.utime(path)  # its last use, for the clean-up
    return frame, report


def write_entry(key: str, frame: pd.DataFrame, report: DataReport) -> None:
    """Keep ``frame`` and ``report`` under ``key``: a temporary file renamed into place; any failure is only
    logged (a full disk or a read-only home must not stop a load)."""
    folder = cache_folder()
    if folder is None:
        return
    partial = folder / f".{key}.{os.getpid()}.{threading.get_ident()}.tmp"  # each writer its own
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq

        folder.mkdir(parents=True, exist_ok=True)
        meta = json.dumps({"key": key, "report": _report_to(report), "fingerprint": data_fingerprint(frame)})
        columns = {"timestamp": pa.array(frame.index.asi8, pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
                   **{name: pa.array(frame[name].to_numpy(), pa.float64()) for name in COLUMNS}}
        table = pa.table(columns, metadata={_META: meta.encode()})
        pq.write_table(table, partial, compression="none")  # reads 3x faster than snappy; candles barely shrink
        os.replace(partial, folder / f"{key}.parquet")
        _bound(folder)
    except Exception as exc:  # the cache is an optimisation, never a failure
        _log.info("candle cache entry not written in %s (%s)", folder, exc)
        with contextlib.suppress(OSError):
            partial.unlink()


def _bound(folder: Path) -> None:
    """Remove the least recently used entries beyond ``MAX_BYTES``, and what killed writers left (an hour old)."""
    for path in folder.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            if time.time() - path.stat().st_mtime > _STALE_S:
                path.unlink()
    entries = []
    for path in folder.glob("*.parquet"):
        with contextlib.suppress(OSError):
            stat = path.stat()
            entries.append((stat.st_mtime, stat.st_size, path))
    total = sum(size for _, size, _ in entries)
    for _, size, path in sorted(entries):  # least recently used first
        if total <= MAX_BYTES:
            break
        with contextlib.suppress(OSError):
            path.unlink()
            total -= size


def _report_to(report: DataReport) -> dict[str, Any]:
    """Every field of the report, exactly (times in ISO 8601 with nanoseconds, the interval in ns)."""
    out = {f.name: getattr(report, f.name) for f in dataclasses.fields(report)}
    out.update(start=report.start.isoformat(), end=report.end.isoformat(), interval=int(report.interval.value),
               files=[f.to_dict() for f in report.files], outliers=list(report.outliers),
               zero_volume=list(report.zero_volume), outages=list(report.outages))
    return out


def _report_from(data: dict[str, Any]) -> DataReport:
    files = tuple(DataFile(f["path"], f["sha256"], int(f["rows"]), pd.Timestamp(f["start"]), pd.Timestamp(f["end"]))
                  for f in data["files"])
    return DataReport(**{**data, "start": pd.Timestamp(data["start"]), "end": pd.Timestamp(data["end"]),
                         "interval": pd.Timedelta(int(data["interval"])), "files": files,
                         "outliers": tuple(data["outliers"]), "zero_volume": tuple(data["zero_volume"]),
                         "outages": tuple(data["outages"])})
