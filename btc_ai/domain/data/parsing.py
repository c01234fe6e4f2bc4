"""Parsing a table's values: prices and volume to floats (decimal commas too), timestamps to UTC
nanoseconds (epoch units by magnitude, or date text), refusing what cannot be read."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from btc_ai.domain.data.dates import DateReading, parse_date_text
from btc_ai.domain.data.messages import _snippet, _Where
from btc_ai.domain.data.schema import PRICES
from btc_ai.domain.data.table import _Table

_TS_MIN = pd.Timestamp("1990-01-01", tz="UTC").value
_TS_MAX = pd.Timestamp("2100-01-01", tz="UTC").value
_NS_PER_UNIT = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
_MISSING_TOKENS = frozenset({"", "nan", "none", "null", "na", "n/a", "nat", "-"})


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


def _timestamps(
    table: _Table, roles: dict[str, int], date_format: str | None = None
) -> tuple[np.ndarray, np.ndarray, DateReading | None]:
    """UTC nanoseconds of every row, the unreadable ones, and how ambiguous date text was read."""
    values = table.values[roles["timestamp"]]
    if "time_of_day" in roles:
        times = table.values[roles["time_of_day"]]
        values = [f"{d} {t}" for d, t in zip(values, times, strict=True)]
    return _parse_timestamps(values, date_format, table.labels, table.unit, table.source)


def _parse_timestamps(
    values: Sequence[Any],
    date_format: str | None = None,
    labels: np.ndarray | None = None,
    unit: str = "row",
    source: str = "<DataFrame>",
) -> tuple[np.ndarray, np.ndarray, DateReading | None]:
    """Epoch s/ms/us/ns (per value, by magnitude) or date strings -> (UTC int64 ns, unparseable mask, reading).

    A strftime ``date_format`` is applied to the text as it stands (even digits-only text like 20210608);
    otherwise numbers are epochs and text dates are read as :mod:`dates` decides."""
    if isinstance(values, pd.Series) and pd.api.types.is_datetime64_any_dtype(values):
        return (*_datetimes_to_ns(values), None)
    pattern = date_format is not None and "%" in date_format
    numbers = None if pattern else _epoch_numbers(values)
    if numbers is not None:
        return (*_epoch_to_ns(numbers), None)
    strings = pd.Series(np.asarray(values, dtype=object), dtype=object).map(
        lambda v: v if isinstance(v, str) or _is_missing(v) else str(v)
    )
    missing = strings.map(_is_missing).to_numpy(dtype=bool)
    labels = np.arange(1, len(strings) + 1) if labels is None else labels
    parsed, reading = parse_date_text(strings, missing, labels, unit, source, date_format)
    return (*_datetimes_to_ns(parsed), reading)


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
        "use epoch seconds/ms/us or ISO 8601 such as 2021-06-01T00:00:00Z, between 1990 and 2100, or state "
        "the format of those dates with --date-format (date_format= in load_candles)",
        example=f"{table.names[column]}={_snippet(table.values[column][pos])} at {table.unit} {table.labels[pos]}",
    )


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and np.isnan(value):
        return True
    return isinstance(value, str) and value.strip().lower() in _MISSING_TOKENS
