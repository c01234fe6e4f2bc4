"""The checks that refuse bad candles (prices, order, length, mixed timeframes), shared by load_candles
and validate_candles, which runs them on a frame without repairing it."""

from __future__ import annotations

import numpy as np
import pandas as pd

from btc_ai.domain.data.messages import _names, _Where
from btc_ai.domain.data.report import DataReport, format_interval
from btc_ai.domain.data.schema import LAYOUT_ATTR, PRICES, _utc_index
from btc_ai.domain.errors import DataValidationError

_PRICE_RTOL = 1e-9  # text round-trips of floats can put open a hair above high; that is not bad data
_MIXED_RUN = 12  # this many identical over-long steps in a row is another timeframe, not an outage


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


def _numeric_column(col: pd.Series, source: str) -> np.ndarray:
    try:
        return col.to_numpy(np.float64, na_value=np.nan)
    except (ValueError, TypeError):
        raise DataValidationError(
            f"{source}: column {col.name!s} is not numeric; convert it with pd.to_numeric or use load_candles()",
        ) from None
