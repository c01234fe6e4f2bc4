"""Readers: file bytes (gzip, zip, Parquet, any-encoding text) to a table, with delimiter sniffing,
header and preamble detection and the name of the export layout."""

from __future__ import annotations

import csv
import gzip
import io
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from btc_ai.domain.data.columns import _TS_NAMES, _norm
from btc_ai.domain.data.messages import _bad, _names, _snippet, _where
from btc_ai.domain.data.schema import COLUMNS
from btc_ai.domain.data.table import _Table
from btc_ai.domain.errors import DataValidationError

_DELIMITERS = (";", "\t", "|", ",")  # on a tie ';' wins: "1,5;2,5" is semicolons with decimal commas
_BINANCE_NAMES = [
    "open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume", "count",
    "taker_buy_volume", "taker_buy_quote_volume", "ignore",
]  # fmt: skip


def _table_from_bytes(raw: bytes, path: Path) -> _Table:
    name = str(path)
    if raw.startswith(b"\x1f\x8b"):
        raw = _gunzip(raw, name)
    elif raw.startswith(b"PK\x03\x04"):
        raw = _unzip(raw, name)
    if raw.startswith(b"PAR1") or path.suffix.lower() in (".parquet", ".pq"):
        return _table_from_parquet(raw, name)
    return _table_from_text(_decode(raw, name), name)


def _gunzip(raw: bytes, name: str) -> bytes:
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError) as exc:
        raise _bad(name, f"is a damaged gzip file ({exc}); download it again") from None


def _unzip(raw: bytes, name: str) -> bytes:
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            members = [m for m in archive.namelist() if not m.endswith("/")]
            data = [m for m in members if m.lower().endswith((".csv", ".txt", ".parquet"))]
            if len(data) != 1:
                raise _bad(
                    name,
                    f"is a zip archive with {len(data)} CSV/Parquet files (holds: {_names(members)}); "
                    "extract the one CSV you want (an Excel workbook must be saved as CSV first)",
                )
            return archive.read(data[0])
    except zipfile.BadZipFile as exc:
        raise _bad(name, f"is a damaged zip file ({exc}); download it again") from None


def _table_from_parquet(raw: bytes, name: str) -> _Table:
    try:
        frame = pd.read_parquet(io.BytesIO(raw))
    except Exception as exc:  # pyarrow raises many unrelated types for a bad file
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise _bad(
            name, f"is not a readable Parquet file ({reason}); re-export it or save it as CSV"
        ) from None
    return _table_from_frame(frame, name, "parquet")


def _table_from_frame(frame: pd.DataFrame, name: str, layout: str) -> _Table:
    names = [str(c[0] if isinstance(c, tuple) else c) for c in frame.columns]  # yfinance MultiIndex
    values: list[Sequence[Any]] = [frame.iloc[:, i] for i in range(frame.shape[1])]
    ts_column = None
    index = frame.index
    if isinstance(index, pd.DatetimeIndex) or _norm(index.name) in _TS_NAMES:
        names.insert(0, str(index.name or "timestamp"))
        values.insert(0, index.to_series(index=pd.RangeIndex(len(index))))
        ts_column = 0
    return _Table(
        source=name,
        layout=layout,
        names=names,
        values=values,
        labels=np.arange(1, len(frame) + 1),
        unit="row",
        ts_column=ts_column,
    )


def _decode(raw: bytes, name: str) -> str:
    if not raw.strip():
        raise _bad(
            name, "is empty; expected CSV or Parquet candles (timestamp, open, high, low, close[, volume])"
        )
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):  # Excel's "Unicode text" export
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError:
            pass
    text = None
    if b"\x00" not in raw[:65536]:
        for encoding in ("utf-8-sig", "cp1252"):
            try:
                text = raw.decode(encoding)
                break
            except UnicodeDecodeError:
                continue
    if text is None or re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", text[:65536]):
        raise _bad(
            name,
            "is not a text file (binary data or an unknown encoding); give a UTF-8 CSV or a Parquet file of candles",
        )
    return text


def _table_from_text(text: str, name: str) -> _Table:
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    numbered = [(i + 1, line) for i, line in enumerate(lines) if line.strip()]
    if not numbered:
        raise _bad(name, "is empty; expected CSV candles (timestamp, open, high, low, close[, volume])")
    delimiter = _sniff([line for _, line in numbered[:50]], name)
    rows = [[f.strip() for f in row] for row in csv.reader([ln for _, ln in numbered], delimiter=delimiter)]
    linenos = [n for n, _ in numbered]
    widths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    counts = np.bincount(widths)
    modal = int(np.flatnonzero(counts == counts.max())[-1])

    start = 0
    while start < min(5, len(rows) - 1) and widths[start] < modal:  # CryptoDataDownload's URL line
        start += 1
    preamble = start > 0
    extra: dict[str, Any] = {"preamble": preamble}
    header = _looks_like_header(rows[start])
    if header:
        names = rows[start]
        start += 1
        start = _skip_yfinance_rows(rows, start, names, extra)
    else:
        names = _default_names(modal)
    body, body_lines = rows[start:], linenos[start:]
    if not body:
        raise _bad(
            name,
            "has a header but no data rows; export the candles themselves, one row per bar",
        )
    expected = len(names)
    truncated = _drop_cut_last_row(body, body_lines, expected, text)
    _check_widths(body, body_lines, expected, name)
    first_line = body_lines[0] if body_lines else 0
    blank = (linenos[-1] - first_line + 1) - len(body) - truncated if body else 0
    layout = _text_layout(names, header, preamble, extra)
    return _Table(
        source=name,
        layout=layout,
        names=names,
        values=list(zip(*body, strict=True)) if body else [() for _ in names],
        labels=np.asarray(body_lines, dtype=np.int64),
        unit="line",
        headerless=not header,
        delimiter=delimiter,
        truncated=truncated,
        blank_rows=max(blank, 0),
        extra=extra,
    )


def _sniff(sample: list[str], name: str) -> str:
    best, best_key = None, (0.0, 0)
    for delim in _DELIMITERS:
        counts = [line.count(delim) for line in sample]
        modal = max(set(counts), key=lambda n: (counts.count(n), n))
        if modal == 0:
            continue
        key = (round(counts.count(modal) / len(counts), 2), modal)
        if key > best_key:
            best, best_key = delim, key
    if best is None:
        raise _bad(
            name,
            "yields a single column: no comma, semicolon, tab or pipe between fields (line 1 reads "
            f"{_snippet(sample[0])}); save it as comma-separated timestamp,open,high,low,close,volume",
        )
    return best


def _looks_like_header(row: list[str]) -> bool:
    normed = [_norm(f) for f in row]
    if any(n in _TS_NAMES or n in ("open", "high", "low", "close", "volume") for n in normed):
        return True
    non_numeric = sum(1 for f in row if f and not _is_number(f))
    return non_numeric > len(row) / 2


def _skip_yfinance_rows(rows: list[list[str]], start: int, names: list[str], extra: dict[str, Any]) -> int:
    # Newer yfinance writes "Price,Close,..." then "Ticker,BTC-USD,..." then "Datetime,,,,," before the data.
    for _ in range(2):
        if start >= len(rows):
            break
        first = _norm(rows[start][0]) if rows[start] else ""
        rest_blank = all(not f for f in rows[start][1:])
        if first == "ticker":
            extra["yfinance"] = True
        elif first in _TS_NAMES and rest_blank:
            names[0] = rows[start][0]
        else:
            break
        start += 1
    if extra.get("yfinance") and _norm(names[0]) == "price":
        names[0] = "Datetime"
    return start


def _default_names(width: int) -> list[str]:
    if width == len(_BINANCE_NAMES):
        return list(_BINANCE_NAMES)
    base = ["timestamp", *COLUMNS]
    return base[:width] + [f"column_{i + 1}" for i in range(len(base), width)]


def _drop_cut_last_row(body: list[list[str]], lines: list[int], expected: int, text: str) -> int:
    # A download cut off mid-row loses only its last bar; dropping it (recorded) beats rejecting a month.
    last = body[-1]
    short = len(last) < expected
    no_newline = not text.endswith(("\n", "\r"))
    cut_field = no_newline and len(last) == expected and not last[-1] and len(body) > 1 and bool(body[-2][-1])
    if (short or cut_field) and len(body) > 1:
        body.pop()
        lines.pop()
        return 1
    return 0


def _check_widths(body: list[list[str]], lines: list[int], expected: int, name: str) -> None:
    bad = [i for i, row in enumerate(body) if len(row) != expected]
    if not bad:
        return
    first = bad[0]
    labels = [lines[i] for i in bad]
    raise DataValidationError(
        f"{name}: wrong number of fields at {_where(labels, 'line')} (expected {expected}, line {lines[first]} "
        f"has {len(body[first])}); the file is cut or corrupted there - fix or delete those lines",
        rows=labels,
    )


def _text_layout(names: list[str], header: bool, preamble: bool, extra: dict[str, Any]) -> str:
    normed = {_norm(n) for n in names}
    if not header:
        return "binance-kline" if names == _BINANCE_NAMES else "headerless-csv"
    if extra.get("yfinance") or "adjclose" in normed:
        return "yfinance"
    if "weightedprice" in normed:
        return "bitstamp"
    if preamble or {"unix", "symbol"} <= normed:
        return "cryptodatadownload"
    if {"opentime", "closetime"} <= normed:
        return "binance-kline"
    return "generic-csv"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
