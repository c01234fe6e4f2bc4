"""resample_candles: aggregating candles to a coarser timeframe, and reading a timeframe ('15min', '4h')."""

from __future__ import annotations

import numpy as np
import pandas as pd

from btc_ai.domain.data.report import format_interval
from btc_ai.domain.data.schema import COLUMNS, _utc_index
from btc_ai.domain.errors import DataValidationError


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
