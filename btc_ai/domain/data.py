"""Candle loading and validation: reads the CSV/Parquet layouts people actually have into one clean
UTC OHLCV frame, repairs what is safe to repair (and says so), and rejects the rest in one line."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from btc_ai.domain.errors import DataValidationError

COLUMNS = ["open", "high", "low", "close", "volume"]
PRICES = COLUMNS[:4]
LAYOUT_ATTR = "btc_ai_layout"  # DataFrame.attrs key a producer (e.g. synthetic) sets to name its layout

_MAX_LISTED = 5
_PRICE_RTOL = 1e-9  # text round-trips of floats can put open a hair above high; that is not bad data
_MIXED_RUN = 12  # this many identical over-long steps in a row is another timeframe, not an outage
_TS_MIN = pd.Timestamp("1990-01-01", tz="UTC").value
_TS_MAX = pd.Timestamp("2100-01-01", tz="UTC").value
_NS_PER_UNIT = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
_MISSING_TOKENS = frozenset({"", "nan", "none", "null", "na", "n/a", "nat", "-"})
_DELIMITERS = (";", "\t", "|", ",")  # on a tie ';' wins: "1,5;2,5" is semicolons with decimal commas

# Normalised (lower-case alphanumeric) column names, best first.
_TS_NAMES = (
    "timestamp", "opentime", "unix", "unixtimestamp", "unixtime", "timestampms", "datetime",
    "datetimeutc", "timestamputc", "date", "dateutc", "time", "timeutc", "ts", "epoch", "starttime",
    "timeperiodstart", "candlebegintime", "opentimeutc",
)  # fmt: skip
_PRICE_NAMES = {
    "open": ("open", "o", "openprice", "opening"),
    "high": ("high", "h", "highprice", "max"),
    "low": ("low", "l", "lowprice", "min"),
    "close": ("close", "c", "closeprice", "closing", "last", "adjclose", "adjustedclose"),
}
_QUOTE_TOKENS = ("quote", "currency", "usd", "eur", "gbp", "jpy", "krw", "aud", "cad", "chf", "brl", "dai")
_BINANCE_NAMES = [
    "open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume", "count",
    "taker_buy_volume", "taker_buy_quote_volume", "ignore",
]  # fmt: skip


@dataclass(frozen=True)
class DataReport:
    """What was loaded and which safe repairs were applied on the way."""

    source: str
    layout: str
    rows: int
    start: pd.Timestamp
    end: pd.Timestamp
    interval: pd.Timedelta
    gaps: int = 0
    duplicates_dropped: int = 0
    empty_rows_dropped: int = 0
    was_unsorted: bool = False
    truncated_rows_dropped: int = 0

    def repairs(self) -> list[str]:
        done = []
        if self.duplicates_dropped:
            done.append(f"dropped {self.duplicates_dropped} duplicate timestamps (kept the first)")
        if self.empty_rows_dropped:
            done.append(f"dropped {self.empty_rows_dropped} empty rows")
        if self.was_unsorted:
            done.append("sorted rows by time")
        if self.truncated_rows_dropped:
            done.append(f"dropped {self.truncated_rows_dropped} cut-off last row")
        return done

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "layout": self.layout,
            "rows": int(self.rows),
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "interval": format_interval(self.interval),
            "interval_seconds": float(self.interval.total_seconds()),
            "gaps": int(self.gaps),
            "duplicates_dropped": int(self.duplicates_dropped),
            "empty_rows_dropped": int(self.empty_rows_dropped),
            "was_unsorted": bool(self.was_unsorted),
            "truncated_rows_dropped": int(self.truncated_rows_dropped),
        }

    def summary(self) -> str:
        fixes = "; ".join(self.repairs()) or "none"
        return (
            f"{self.layout} {self.source}: {self.rows} rows of {format_interval(self.interval)} candles, "
            f"{self.start:%Y-%m-%d %H:%M} to {self.end:%Y-%m-%d %H:%M} UTC, {self.gaps} missing bars; "
            f"repairs: {fixes}"
        )


def format_interval(interval: pd.Timedelta) -> str:
    """'5min', '1h', '1D' rather than '0 days 00:05:00'."""
    if interval > pd.Timedelta(0) and interval % pd.Timedelta("1D") == pd.Timedelta(0):
        return f"{interval.days}D"
    try:
        text = pd.tseries.frequencies.to_offset(interval).freqstr
    except (ValueError, TypeError):
        return str(interval)
    return text if text[:1].isdigit() else f"1{text}"


# --------------------------------------------------------------------------------------------------
# Public API


def load_candles(
    source: str | Path | pd.DataFrame, *, min_rows: int | None = None
) -> tuple[pd.DataFrame, DataReport]:
    """Read candles from a CSV/Parquet path or a DataFrame; return the clean frame and its report.

    Raises DataValidationError (one line: what, where, how to fix) for data that cannot be used, and
    lets FileNotFoundError through for a missing file. Choices worth knowing:

    - a short (cut-off) LAST row is dropped and counted in ``truncated_rows_dropped``; a short row
      anywhere else is rejected with its line number;
    - rows sharing a timestamp keep the first occurrence in the file, whatever the later ones hold;
    - naive timestamps are read as UTC; epoch numbers are s/ms/us/ns by magnitude, value by value, so a
      file that switched units part-way (Binance spot dumps in 2025) still loads;
    - steps that are whole multiples of the interval are gaps (counted), except a run of 12 or more
      identical longer steps, which is a second timeframe and rejected as a mixed interval.
    """
    if isinstance(source, pd.DataFrame):
        table = _table_from_frame(source, "<DataFrame>", source.attrs.get(LAYOUT_ATTR, "dataframe"))
    else:
        path = Path(source)
        table = _table_from_bytes(path.read_bytes(), path)
    return _build(table, min_rows)


def validate_candles(df: pd.DataFrame, *, min_rows: int | None = None) -> DataReport:
    """Check an already clean-shaped frame (UTC DatetimeIndex, OHLCV columns) without repairing it."""
    src = "<DataFrame>"
    index = _utc_index(df, src)
    missing = [c for c in PRICES if c not in df.columns]
    if missing:
        raise DataValidationError(
            f"{src}: missing price columns {', '.join(missing)} (found: {_names(df.columns)}); "
            "pass a frame with open, high, low, close[, volume] columns",
        )
    o, h, lo, c = (_numeric_column(df[k], src) for k in PRICES)
    v = _numeric_column(df["volume"], src) if "volume" in df.columns else np.zeros(len(df))
    labels = np.arange(1, len(df) + 1)
    where = _Where(labels, "row", src)
    _check_finite(o, h, lo, c, where)
    _check_prices(o, h, lo, c, v, where)
    ns = index.asi8
    _check_order(ns, where)
    _check_length(len(ns), min_rows, src)
    interval, gaps = _interval_and_gaps(ns, where)
    return DataReport(
        source=src,
        layout=df.attrs.get(LAYOUT_ATTR, "dataframe"),
        rows=len(df),
        start=pd.Timestamp(ns[0], tz="UTC"),
        end=pd.Timestamp(ns[-1], tz="UTC"),
        interval=interval,
        gaps=gaps,
    )


def clean_candles(df: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Drop rows that cannot be traded on, dedupe and sort; return the frame and what was done, in words."""
    src = "<DataFrame>"
    index = _utc_index(df, src, allow_nat=True)
    data = {k: pd.to_numeric(df[k], errors="coerce").to_numpy(np.float64) for k in PRICES if k in df}
    if len(data) < 4:
        missing = [k for k in PRICES if k not in data]
        raise DataValidationError(
            f"{src}: cannot clean, missing price columns {', '.join(missing)} (found: {_names(df.columns)}); "
            "rename them to open, high, low, close",
        )
    vol = pd.to_numeric(df["volume"], errors="coerce").to_numpy(np.float64) if "volume" in df else None
    o, h, lo, c = (data[k] for k in PRICES)
    actions: list[str] = []
    keep = np.ones(len(df), dtype=bool)

    def drop(mask: np.ndarray, why: str) -> None:
        nonlocal keep
        mask = mask & keep
        if mask.any():
            actions.append(f"dropped {int(mask.sum())} rows with {why}")
            keep &= ~mask

    with np.errstate(invalid="ignore"):
        drop(np.asarray(index.isna()), "a missing timestamp")
        drop(
            ~(np.isfinite(o) & np.isfinite(h) & np.isfinite(lo) & np.isfinite(c)),
            "missing or non-finite prices",
        )
        drop((o <= 0) | (h <= 0) | (lo <= 0) | (c <= 0), "non-positive prices")
        drop(_inconsistent(o, h, lo, c), "high < low or open/close outside [low, high]")
    if vol is None:
        vol = np.zeros(len(df))
    bad_vol = keep & ~(np.isfinite(vol) & (vol >= 0))
    if bad_vol.any():
        actions.append(f"set {int(bad_vol.sum())} missing or negative volumes to 0")
        vol = np.where(bad_vol, 0.0, vol)

    ns = index.asi8[keep]
    first = np.unique(ns, return_index=True)[1] if len(ns) else np.zeros(0, dtype=np.int64)
    if len(first) < len(ns):
        actions.append(f"dropped {len(ns) - len(first)} duplicate timestamps (kept the first)")
    if len(ns) > 1 and (np.diff(ns) < 0).any():
        actions.append("sorted rows by time")
    rows = np.flatnonzero(keep)[first]
    out = _frame(index.asi8[rows], o[rows], h[rows], lo[rows], c[rows], vol[rows])
    out.attrs.update(df.attrs)
    return out, actions


def data_fingerprint(df: pd.DataFrame) -> str:
    """sha256 of the UTC index (int64 ns) and the five float64 columns: same data, same hash, any layout."""
    index = _utc_index(df, "<DataFrame>")
    digest = hashlib.sha256(np.ascontiguousarray(index.asi8, dtype="<i8").tobytes())
    for name in COLUMNS:
        col = df[name].to_numpy(np.float64) if name in df else np.zeros(len(df))
        digest.update(np.ascontiguousarray(col, dtype="<f8").tobytes())
    return digest.hexdigest()


def resample_candles(df: pd.DataFrame, timeframe: str | pd.Timedelta) -> pd.DataFrame:
    """Aggregate to a coarser timeframe ('15min', '1h', '4h', '1d'); bins labelled on the left, empty ones dropped."""
    target = _parse_timeframe(timeframe)
    index = _utc_index(df, "<DataFrame>")
    steps = np.diff(index.asi8)
    if len(steps) and (steps > 0).any():
        values, counts = np.unique(steps[steps > 0], return_counts=True)
        interval = pd.Timedelta(int(values[counts.argmax()]))
        if target < interval:
            raise DataValidationError(
                f"timeframe {timeframe!s} is finer than the data's {format_interval(interval)} interval; "
                f"use {format_interval(interval)} or a coarser timeframe",
                key="TIMEFRAME",
            )
        if target.value % interval.value:
            raise DataValidationError(
                f"timeframe {timeframe!s} is not a whole multiple of the data's {format_interval(interval)} "
                "interval; pick a multiple of it",
                key="TIMEFRAME",
            )
    frame = df[COLUMNS].set_axis(index, axis=0)
    out = frame.resample(target, label="left", closed="left").agg(
        {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
    )
    out = out.dropna(subset=["open"]).astype(np.float64)
    out.index.name = "timestamp"
    out.attrs.update(df.attrs)
    return out


# --------------------------------------------------------------------------------------------------
# Raw table: every source becomes named columns of values plus the row labels a user can find


@dataclass
class _Table:
    source: str
    layout: str
    names: list[str]
    values: list[Sequence[Any]]
    labels: np.ndarray  # file line numbers, or 1-based row numbers for frames
    unit: str  # "line" or "row"
    headerless: bool = False
    ts_column: int | None = None  # forced timestamp column (a frame's DatetimeIndex)
    delimiter: str = ","
    truncated: int = 0
    blank_rows: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


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


# --------------------------------------------------------------------------------------------------
# Table -> clean frame


@dataclass
class _Where:
    """Turns positions in the surviving rows into the labels a user can find in the file."""

    labels: np.ndarray
    unit: str
    source: str

    def at(self, mask_or_positions: np.ndarray) -> list[int]:
        picked = self.labels[mask_or_positions]
        return [int(x) for x in picked]

    def fail(self, problem: str, mask: np.ndarray, fix: str, example: str = "") -> DataValidationError:
        rows = self.at(mask)
        detail = f" ({example})" if example else ""
        return DataValidationError(
            f"{self.source}: {problem} at {_where(rows, self.unit)}{detail}; {fix}", rows=rows
        )


def _build(table: _Table, min_rows: int | None) -> tuple[pd.DataFrame, DataReport]:
    roles = _resolve_columns(table)
    where = _Where(table.labels, table.unit, table.source)
    decimal_comma = table.delimiter != ","
    prices = {k: _parse_numbers(table.values[roles[k]], decimal_comma) for k in PRICES}
    empty = np.logical_and.reduce([prices[k][1] for k in PRICES])
    keep = ~empty
    _reject_bad_numbers(prices, keep, table, roles, where)
    volume = _parse_volume(table, roles, keep, decimal_comma, where)
    ns, bad_ts = _timestamps(table, roles)
    _reject_bad_timestamps(ns, bad_ts, keep, table, roles, where)

    o, h, lo, c = (prices[k][0][keep] for k in PRICES)
    volume, ns, labels = volume[keep], ns[keep], table.labels[keep]
    where = _Where(labels, table.unit, table.source)
    if not len(ns):
        raise _bad(table.source, "has no rows with prices (every row is empty or NaN); export real candles")
    _check_finite(o, h, lo, c, where)
    _check_prices(o, h, lo, c, volume, where)

    unsorted = bool(len(ns) > 1 and (np.diff(ns) < 0).any())
    first = np.unique(ns, return_index=True)[1]  # first occurrence of each timestamp, in time order
    duplicates = len(ns) - len(first)
    ns, labels = ns[first], labels[first]
    o, h, lo, c, volume = o[first], h[first], lo[first], c[first], volume[first]
    _check_length(len(ns), min_rows, table.source)
    interval, gaps = _interval_and_gaps(ns, _Where(labels, table.unit, table.source))

    frame = _frame(ns, o, h, lo, c, volume)
    report = DataReport(
        source=table.source,
        layout=table.layout,
        rows=len(frame),
        start=frame.index[0],
        end=frame.index[-1],
        interval=interval,
        gaps=gaps,
        duplicates_dropped=duplicates,
        empty_rows_dropped=int(empty.sum()) + table.blank_rows,
        was_unsorted=unsorted,
        truncated_rows_dropped=table.truncated,
    )
    return frame, report


def _resolve_columns(table: _Table) -> dict[str, int]:
    normed = [_norm(n) for n in table.names]
    roles: dict[str, int] = {}
    for role, aliases in _PRICE_NAMES.items():
        for alias in aliases:  # alias order matters: Close before Adj Close
            if alias in normed:
                roles[role] = normed.index(alias)
                break
    missing = [k for k in PRICES if k not in roles]
    if missing:
        raise DataValidationError(
            f"{table.source}: no price columns {', '.join(missing)} (found columns: {_names(table.names)}); "
            "name them open, high, low, close (any case) or use a known export layout",
        )
    volume = _pick_volume(normed)
    if volume is not None:
        roles["volume"] = volume
    ts = table.ts_column if table.ts_column is not None else _pick_timestamp(normed, table)
    if ts is None:
        raise DataValidationError(
            f"{table.source}: no recognisable timestamp column (found columns: {_names(table.names)}); "
            "add one named timestamp (epoch s/ms/us or ISO 8601 like 2021-06-01T00:00:00Z)",
        )
    roles["timestamp"] = ts
    if normed[ts] == "date" and "time" in normed:  # MetaTrader-style separate date and time columns
        roles["time_of_day"] = normed.index("time")
    return roles


def _pick_timestamp(normed: list[str], table: _Table) -> int | None:
    for alias in _TS_NAMES:
        if alias in normed:
            return normed.index(alias)
    # df.to_csv() of an unnamed DatetimeIndex leaves a blank first header cell
    if normed and normed[0] in ("", "index", "unnamed0"):
        return 0
    return None


def _pick_volume(normed: list[str]) -> int | None:
    best: tuple[int, int] | None = None
    for i, name in enumerate(normed):
        rank = _volume_rank(name)
        if rank is not None and (best is None or rank < best[0]):
            best = (rank, i)
    return None if best is None else best[1]


def _volume_rank(name: str) -> int | None:
    """0: plain volume, 1: named base-asset volume, 2: quote-currency volume; None: not a volume."""
    if any(word in name for word in ("taker", "trade", "count")):
        return None
    if name in ("volume", "vol", "basevolume", "volumebase", "baseassetvolume"):
        return 0
    if not (name.startswith("vol") or name.endswith("volume")):
        return None
    return 2 if any(token in name for token in _QUOTE_TOKENS) else 1


def _parse_numbers(
    values: Sequence[Any], decimal_comma: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (floats, missing, non_numeric): missing is blank/NaN, non_numeric is text that is not a number."""
    if isinstance(values, pd.Series) and pd.api.types.is_numeric_dtype(values) and values.dtype != bool:
        floats = values.to_numpy(np.float64, na_value=np.nan)
        return floats, np.isnan(floats), np.zeros(len(floats), dtype=bool)
    raw = np.asarray(values, dtype=object)
    try:
        floats = raw.astype(np.float64)  # fast path: every field is a plain number (or "NaN")
        return floats, np.isnan(floats), np.zeros(len(floats), dtype=bool)
    except (ValueError, TypeError):
        pass
    floats = np.array(pd.to_numeric(pd.Series(raw, dtype=object), errors="coerce"), dtype=np.float64)
    nan_at = np.flatnonzero(np.isnan(floats))
    missing = np.zeros(len(raw), dtype=bool)
    missing[nan_at] = [_is_missing(raw[i]) for i in nan_at]
    non_numeric = np.isnan(floats) & ~missing
    if decimal_comma and non_numeric.any():
        fixed = pd.to_numeric(
            pd.Series([str(raw[i]).replace(",", ".") for i in np.flatnonzero(non_numeric)], dtype=object),
            errors="coerce",
        ).to_numpy(np.float64)
        if not np.isnan(fixed).any():
            floats[non_numeric] = fixed
            non_numeric[:] = False
    return floats, missing, non_numeric


def _reject_bad_numbers(
    prices: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    keep: np.ndarray,
    table: _Table,
    roles: dict[str, int],
    where: _Where,
) -> None:
    bad = keep & np.logical_or.reduce([prices[k][1] | prices[k][2] for k in PRICES])
    if not bad.any():
        return
    pos = int(np.flatnonzero(bad)[0])
    column = next(k for k in PRICES if prices[k][1][pos] or prices[k][2][pos])
    value = table.values[roles[column]][pos]
    raise where.fail(
        "non-numeric or missing prices",
        bad,
        "fix those values or delete the rows (clean_candles drops them)",
        example=f"{table.names[roles[column]]}={_snippet(value)} at {table.unit} {table.labels[pos]}",
    )


def _parse_volume(
    table: _Table, roles: dict[str, int], keep: np.ndarray, decimal_comma: bool, where: _Where
) -> np.ndarray:
    if "volume" not in roles:
        return np.zeros(len(table.labels))
    floats, missing, non_numeric = _parse_numbers(table.values[roles["volume"]], decimal_comma)
    bad = keep & non_numeric
    if bad.any():
        raise where.fail(
            "non-numeric volume",
            bad,
            "fix those values, leave them blank, or drop the volume column",
            example=f"{_snippet(table.values[roles['volume']][int(np.flatnonzero(bad)[0])])}",
        )
    # a missing volume on an otherwise good bar means "not reported", which for training is no volume
    return np.where(missing, 0.0, floats)


def _timestamps(table: _Table, roles: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    values = table.values[roles["timestamp"]]
    if "time_of_day" in roles:
        times = table.values[roles["time_of_day"]]
        values = [f"{d} {t}" for d, t in zip(values, times, strict=True)]
    return _parse_timestamps(values)


def _parse_timestamps(values: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Epoch s/ms/us/ns (per value, by magnitude) or date strings -> (UTC int64 ns, unparseable mask)."""
    if isinstance(values, pd.Series) and pd.api.types.is_datetime64_any_dtype(values):
        return _datetimes_to_ns(values)
    numbers = _epoch_numbers(values)
    if numbers is not None:
        return _epoch_to_ns(numbers)
    strings = pd.Series(np.asarray(values, dtype=object), dtype=object)
    parsed = pd.to_datetime(strings, utc=True, format="ISO8601", errors="coerce")
    failed = parsed.isna().to_numpy() & ~strings.map(_is_missing).to_numpy(dtype=bool)
    if failed.any():  # odd but readable formats ("06/01/2021 00:00", "2021.06.01 00:00")
        retry = pd.to_datetime(strings[failed], utc=True, format="mixed", errors="coerce")
        parsed = parsed.where(~failed, retry)
    return _datetimes_to_ns(parsed)


def _datetimes_to_ns(values: pd.Series | pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
    index = pd.DatetimeIndex(values)
    index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")  # naive means UTC
    bad = np.asarray(index.isna())
    ns = index.as_unit("ns").asi8.copy()
    ns[bad] = 0
    return ns, bad


def _epoch_numbers(values: Sequence[Any]) -> np.ndarray | None:
    """The values as numbers when most of them are numbers (an epoch column), else None."""
    if isinstance(values, pd.Series) and pd.api.types.is_numeric_dtype(values) and values.dtype != bool:
        return values.to_numpy()
    raw = np.asarray(values, dtype=object)
    for dtype in (np.int64, np.float64):
        try:
            return raw.astype(dtype)
        except (ValueError, TypeError, OverflowError):
            continue
    floats = pd.to_numeric(pd.Series(raw, dtype=object), errors="coerce").to_numpy(np.float64)
    present = ~np.array([_is_missing(v) for v in raw], dtype=bool)
    numeric = ~np.isnan(floats) & present
    return floats if present.any() and numeric.sum() > present.sum() / 2 else None


def _epoch_to_ns(numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    floats = numbers.astype(np.float64)
    magnitude = np.abs(floats)
    factor = np.select(
        [magnitude < 1e11, magnitude < 1e14, magnitude < 1e17],
        [_NS_PER_UNIT["s"], _NS_PER_UNIT["ms"], _NS_PER_UNIT["us"]],
        default=_NS_PER_UNIT["ns"],
    ).astype(np.int64)
    bad = ~np.isfinite(floats)
    approx = np.where(bad, 0.0, floats) * factor
    bad |= (approx < _TS_MIN) | (approx > _TS_MAX)
    if numbers.dtype.kind in "iu":
        ns = np.where(bad, 0, numbers.astype(np.int64) * np.where(bad, 0, factor))
    else:  # round to the microsecond: float64 cannot hold epoch nanoseconds exactly
        micros = np.round(np.where(bad, 0.0, floats) * (factor / 1000.0))
        ns = micros.astype(np.int64) * 1000
    return ns.astype(np.int64), bad


def _reject_bad_timestamps(
    ns: np.ndarray, bad: np.ndarray, keep: np.ndarray, table: _Table, roles: dict[str, int], where: _Where
) -> None:
    bad = bad & keep
    if not bad.any():
        return
    pos = int(np.flatnonzero(bad)[0])
    column = roles["timestamp"]
    raise where.fail(
        "unreadable or out-of-range timestamps",
        bad,
        "use epoch seconds/ms/us or ISO 8601 such as 2021-06-01T00:00:00Z, between 1990 and 2100",
        example=f"{table.names[column]}={_snippet(table.values[column][pos])} at {table.unit} {table.labels[pos]}",
    )


# --------------------------------------------------------------------------------------------------
# Checks shared by load_candles and validate_candles


def _check_finite(o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray, where: _Where) -> None:
    bad = ~(np.isfinite(o) & np.isfinite(h) & np.isfinite(lo) & np.isfinite(c))
    if bad.any():
        raise where.fail(
            "missing or non-finite prices", bad, "fix or drop those rows (clean_candles drops them)"
        )


def _check_prices(
    o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray, v: np.ndarray, where: _Where
) -> None:
    non_positive = (o <= 0) | (h <= 0) | (lo <= 0) | (c <= 0)
    if non_positive.any():
        raise where.fail(
            "non-positive prices",
            non_positive,
            "prices must be > 0; fix or drop those rows (clean_candles drops them)",
        )
    swapped = h < lo
    if swapped.any():
        raise where.fail(
            "high < low",
            swapped,
            "check that the high and low columns are not swapped; fix or drop those rows (clean_candles drops them)",
        )
    outside = _inconsistent(o, h, lo, c)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise where.fail(
            "open/close outside [low, high]",
            outside,
            "check the column order (open, high, low, close) or drop those rows (clean_candles drops them)",
            example=f"open={o[i]:g} high={h[i]:g} low={lo[i]:g} close={c[i]:g}",
        )
    bad_volume = ~np.isfinite(v) | (v < 0)
    if bad_volume.any():
        raise where.fail("negative or non-finite volume", bad_volume, "volume must be >= 0; fix those values")


def _inconsistent(o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray) -> np.ndarray:
    top, bottom = h * (1 + _PRICE_RTOL), lo * (1 - _PRICE_RTOL)
    return (h < lo) | (o > top) | (c > top) | (o < bottom) | (c < bottom)


def _check_order(ns: np.ndarray, where: _Where) -> None:
    steps = np.diff(ns)
    if (steps == 0).any():
        raise where.fail(
            "duplicate timestamps",
            np.r_[False, steps == 0],
            "drop the duplicates (clean_candles keeps the first)",
        )
    if (steps < 0).any():
        raise where.fail(
            "timestamps out of order", np.r_[False, steps < 0], "sort by time (clean_candles does)"
        )


def _check_length(rows: int, min_rows: int | None, source: str) -> None:
    if min_rows is not None and rows < min_rows:
        raise DataValidationError(
            f"{source}: only {rows} candle rows, but {min_rows} are needed; supply a longer history "
            "or lower MAX_STEPS_PER_EPISODE",
            key="MAX_STEPS_PER_EPISODE",
        )
    if rows < 2:
        raise DataValidationError(
            f"{source}: only {rows} candle row; at least 2 are needed to tell the interval - supply more data",
        )


def _interval_and_gaps(ns: np.ndarray, where: _Where) -> tuple[pd.Timedelta, int]:
    """Dominant step and number of missing bars; reject steps that are another timeframe."""
    steps = np.diff(ns)
    values, counts = np.unique(steps, return_counts=True)
    interval = int(values[counts.argmax()])  # ties go to the finer step
    text = format_interval(pd.Timedelta(interval))
    off_grid = steps % interval != 0
    if off_grid.any():
        odd = format_interval(pd.Timedelta(int(steps[off_grid][0])))
        raise where.fail(
            f"mixed interval: steps that are not a multiple of the dominant {text}",
            np.r_[False, off_grid],
            f"the file mixes timeframes or has misaligned timestamps; keep one {text} timeframe per file "
            "(resample_candles can coarsen)",
            example=f"e.g. a {odd} step",
        )
    run = _long_run_of_long_steps(steps, interval)
    if run is not None:
        mask = np.zeros(len(ns), dtype=bool)
        mask[run[0] + 1 : run[1] + 1] = True
        step = format_interval(pd.Timedelta(int(steps[run[0]])))
        raise where.fail(
            f"mixed interval: mostly {text} bars but {run[1] - run[0]} consecutive {step} steps",
            mask,
            f"the file mixes {text} and {step} data; keep one timeframe per file, or resample_candles(df, '{step}')",
        )
    gaps = int((steps // interval - 1).sum())
    return pd.Timedelta(interval), gaps


def _long_run_of_long_steps(steps: np.ndarray, interval: int) -> tuple[int, int] | None:
    if len(steps) < _MIXED_RUN:
        return None
    change = np.flatnonzero(np.diff(steps) != 0) + 1
    starts = np.r_[0, change]
    ends = np.r_[change, len(steps)]
    long = (ends - starts >= _MIXED_RUN) & (steps[starts] > interval)
    if not long.any():
        return None
    k = int(np.flatnonzero(long)[0])
    return int(starts[k]), int(ends[k])


# --------------------------------------------------------------------------------------------------
# Small helpers


def _frame(
    ns: np.ndarray, o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray, v: np.ndarray
) -> pd.DataFrame:
    index = pd.DatetimeIndex(np.asarray(ns, dtype=np.int64).view("M8[ns]"), name="timestamp").tz_localize(
        "UTC"
    )
    data = {"open": o, "high": h, "low": lo, "close": c, "volume": v}
    return pd.DataFrame({k: np.asarray(x, dtype=np.float64) for k, x in data.items()}, index=index)


def _utc_index(df: pd.DataFrame, source: str, *, allow_nat: bool = False) -> pd.DatetimeIndex:
    if not isinstance(df.index, pd.DatetimeIndex):
        raise DataValidationError(
            f"{source}: the index is {type(df.index).__name__}, not a DatetimeIndex; load the data with "
            "load_candles() or set a UTC timestamp index",
        )
    index = df.index.tz_localize("UTC") if df.index.tz is None else df.index.tz_convert("UTC")
    if not allow_nat and index.isna().any():
        bad = np.flatnonzero(np.asarray(index.isna())) + 1
        raise DataValidationError(
            f"{source}: missing timestamps at {_where(bad, 'row')}; drop those rows (clean_candles does)",
            rows=[int(x) for x in bad],
        )
    return index.as_unit("ns")


def _numeric_column(col: pd.Series, source: str) -> np.ndarray:
    try:
        return col.to_numpy(np.float64, na_value=np.nan)
    except (ValueError, TypeError):
        raise DataValidationError(
            f"{source}: column {col.name!s} is not numeric; convert it with pd.to_numeric or use load_candles()",
        ) from None


def _parse_timeframe(timeframe: str | pd.Timedelta) -> pd.Timedelta:
    try:
        text = str(timeframe).strip()
        target = pd.Timedelta(timeframe) if isinstance(timeframe, pd.Timedelta) else _timedelta(text)
    except (ValueError, TypeError):
        target = None
    if target is None or target <= pd.Timedelta(0):
        raise DataValidationError(
            f"timeframe {timeframe!s} is not a duration; use e.g. 5min, 15min, 1h, 4h, 1d", key="TIMEFRAME"
        )
    return target


def _timedelta(text: str) -> pd.Timedelta:
    try:
        return pd.Timedelta(text)
    except ValueError:
        return pd.Timedelta(text.lower())  # "1H", "4H", "1D" in older pandas spelling


def _norm(name: Any) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower()) if name is not None else ""


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and np.isnan(value):
        return True
    return isinstance(value, str) and value.strip().lower() in _MISSING_TOKENS


def _where(labels: Sequence[int] | np.ndarray, unit: str) -> str:
    unique = sorted({int(x) for x in labels})
    shown = ", ".join(str(x) for x in unique[:_MAX_LISTED])
    more = f" and {len(unique) - _MAX_LISTED} more" if len(unique) > _MAX_LISTED else ""
    plural = "s" if len(unique) > 1 else ""
    if unit == "line":
        return f"file line{plural} {shown}{more}"
    return f"{unit}{plural} {shown}{more} (1-based)"


def _names(names: Sequence[Any]) -> str:
    listed = [str(n) for n in names][:12]
    more = f" and {len(names) - 12} more" if len(names) > 12 else ""
    return ", ".join(repr(n) for n in listed) + more if listed else "none"


def _snippet(value: Any) -> str:
    text = str(value).replace("\r", " ").replace("\n", " ")
    return repr(text[:40] + ("..." if len(text) > 40 else ""))


def _bad(source: str, what: str) -> DataValidationError:
    return DataValidationError(f"{source} {what}")
