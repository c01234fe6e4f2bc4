"""The clean candle frame every loader returns: its columns, its UTC index, how one is built and its
fingerprint."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from btc_ai.domain.data.messages import _where
from btc_ai.domain.errors import DataValidationError

COLUMNS = ["open", "high", "low", "close", "volume"]
PRICES = COLUMNS[:4]
LAYOUT_ATTR = "btc_ai_layout"  # DataFrame.attrs key a producer (e.g. synthetic) sets to name its layout


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


def data_fingerprint(df: pd.DataFrame) -> str:
    """sha256 of the UTC index (int64 ns) and the five float64 columns: same data, same hash, any layout."""
    index = _utc_index(df, "<DataFrame>")
    digest = hashlib.sha256(np.ascontiguousarray(index.asi8, dtype="<i8").tobytes())
    for name in COLUMNS:
        col = df[name].to_numpy(np.float64) if name in df else np.zeros(len(df))
        digest.update(np.ascontiguousarray(col, dtype="<f8").tobytes())
    return digest.hexdigest()
