"""Causal, scale-free features from OHLCV candles: row t uses only candles at or before t."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from btc_ai.domain.shapes import OTHER_FEATURES, SLOW_FACTOR, TREND_FEATURES, return_horizons

CLIP = 5.0
_VOL_FLOOR = 1e-6


@dataclass(frozen=True)
class Features:
    """The feature matrix of a candle series and the first row where every feature is defined."""

    values: np.ndarray  # (rows, n_features) float32
    names: tuple[str, ...]
    valid_from: int


def feature_names(lookback: int, features: str = "base") -> tuple[str, ...]:
    """Names of the features :func:`compute_features` builds, in column order."""
    trend = TREND_FEATURES if features == "trend" else ()
    return (*[f"ret_{k}" for k in return_horizons(lookback)], *OTHER_FEATURES, *trend)


def warmup_bars(lookback: int, features: str = "base") -> int:
    """Rows at the start whose features are undefined (volatility window, then its 4x average; with the trend
    features, the volatility window then the slow window)."""
    return (SLOW_FACTOR + 1) * lookback if features == "trend" else 5 * lookback


def compute_features(candles: pd.DataFrame, lookback: int, features: str = "base") -> Features:
    """Features of every row of ``candles`` (clean OHLCV, UTC index), clipped to [-5, 5].

    Every feature is a ratio or z-score over trailing windows, so the policy sees the same scale at
    30,000 USD and at 60,000 USD and no statistic leaks from the future.
    """
    close = candles["close"].to_numpy(np.float64)
    high = candles["high"].to_numpy(np.float64)
    low = candles["low"].to_numpy(np.float64)
    volume = candles["volume"].to_numpy(np.float64)
    log_close = pd.Series(np.log(close))

    r1 = log_close.diff()
    vol = r1.rolling(lookback, min_periods=lookback).std().clip(lower=_VOL_FLOOR)
    columns: list[np.ndarray] = []
    for k in return_horizons(lookback):
        columns.append((log_close.diff(k) / (vol * np.sqrt(k))).to_numpy())

    vol_mean = vol.rolling(4 * lookback, min_periods=4 * lookback).mean()
    columns.append(np.log(vol / vol_mean).to_numpy())
    columns.append(np.log(high / low) / vol.to_numpy())
    span = high - low
    location = np.where(span > 0, (close - low) / np.where(span > 0, span, 1.0) - 0.5, 0.0)
    columns.append(location)

    log_volume = pd.Series(np.log1p(volume))
    vol_z = (log_volume - log_volume.rolling(lookback, min_periods=lookback).mean()) / (
        log_volume.rolling(lookback, min_periods=lookback).std() + 1e-3
    )
    columns.append(vol_z.to_numpy())
    sma = pd.Series(close).rolling(lookback, min_periods=lookback).mean()
    columns.append((np.log(close / sma) / (vol * np.sqrt(lookback))).to_numpy())
    highest = pd.Series(high).rolling(lookback, min_periods=lookback).max()
    lowest = pd.Series(low).rolling(lookback, min_periods=lookback).min()
    channel = (highest - lowest).to_numpy()
    columns.append(np.where(channel > 0, (close - lowest.to_numpy()) / np.where(channel > 0, channel, 1.0) - 0.5, 0.0))

    index = pd.DatetimeIndex(candles.index)
    minutes = (index.hour * 60 + index.minute).to_numpy(np.float64)
    angle = 2.0 * np.pi * minutes / 1440.0
    columns.append(np.sin(angle))
    columns.append(np.cos(angle))
    if features == "trend":
        slow = SLOW_FACTOR * lookback
        slow_scale = (vol * np.sqrt(slow)).to_numpy()
        sma_slow = pd.Series(close).rolling(slow, min_periods=slow).mean().to_numpy()
        columns.append(log_close.diff(slow).to_numpy() / slow_scale)
        columns.append(np.log(close / sma_slow) / slow_scale)
        columns.append(np.log(sma.to_numpy() / sma_slow) / slow_scale)

    values = np.column_stack(columns)
    warmup = min(warmup_bars(lookback, features), len(values))
    values[:warmup] = 0.0
    values = np.nan_to_num(values, nan=0.0, posinf=CLIP, neginf=-CLIP)
    np.clip(values, -CLIP, CLIP, out=values)
    return Features(values.astype(np.float32), feature_names(lookback, features), warmup)
