"""The built-in default data: deterministic BTC-like candles (fat tails, volatility clustering, a daily
cycle and slow trend regimes) in the same clean shape that btc_ai.domain.data.load_candles returns."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from btc_ai.domain.data import COLUMNS, LAYOUT_ATTR

ANNUAL_VOL = 0.60  # long-run volatility target; BTC has mostly lived between 40% and 90%
T_DOF = 5.0  # Student-t degrees of freedom: fat tails with a finite fourth moment
GARCH_ALPHA, GARCH_BETA = 0.08, 0.90  # persistence 0.98: bursts of volatility last hours, not weeks
GARCH_MAX_VAR = 16.0  # keeps one absurd draw from compounding into a runaway variance
SEASON_VOL_AMP, SEASON_VOLUME_AMP, SEASON_PEAK_HOUR = 0.20, 0.40, 15.0  # US session is busiest
REGIME_MEAN_DAYS = 2.0  # trend regimes last about two days on average
REGIME_DRIFT_PER_DAY = 0.012  # std of a regime's drift: trends are there, but noise dominates any bar
REGIME_REVERSION = 0.2  # share of the accumulated trend each new regime gives back, so price stays sane
BASE_VOLUME_PER_5MIN = 150.0  # BTC per 5-minute bar, in the range of a large spot venue
DEFAULT_DAYS, DEFAULT_SEED = 60, 7


@dataclass(frozen=True)
class _Path:
    """Per-bar components, kept apart so tests can check each ingredient on its own."""

    index: pd.DatetimeIndex
    log_return: np.ndarray
    drift: np.ndarray
    bar_sigma: np.ndarray
    shock: np.ndarray  # standardised GARCH shock (unit variance)


def synthetic_candles(
    n_rows: int = 17280,
    *,
    seed: int = 7,
    start: str = "2024-01-01",
    interval: str = "5min",
    start_price: float = 40000.0,
) -> pd.DataFrame:
    """BTC-like OHLCV candles: UTC DatetimeIndex named timestamp, float64 open/high/low/close/volume."""
    if n_rows < 1:
        raise ValueError(f"n_rows must be >= 1, got {n_rows}")
    if not start_price > 0:
        raise ValueError(f"start_price must be > 0, got {start_price}")
    rng = np.random.Generator(np.random.PCG64(seed))
    path = _simulate(rng, n_rows, start, interval)
    close = np.round(start_price * np.exp(np.cumsum(path.log_return)), 2)
    open_ = np.r_[round(start_price, 2), close[:-1]]
    high, low = _intrabar_extremes(rng, open_, close, path.bar_sigma)
    volume = _volume(rng, path)
    frame = pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume},
        index=path.index,
        columns=COLUMNS,
        dtype=np.float64,
    )
    frame.attrs[LAYOUT_ATTR] = "synthetic"
    return frame


def default_candles() -> pd.DataFrame:
    """The fixed data set the trainer uses when given none: 60 days of 5-minute candles, seed 7."""
    return _default_candles().copy()


@functools.cache
def _default_candles() -> pd.DataFrame:
    return synthetic_candles(DEFAULT_DAYS * 288, seed=DEFAULT_SEED)


def _simulate(rng: np.random.Generator, n_rows: int, start: str, interval: str) -> _Path:
    step = pd.Timedelta(interval)
    if step <= pd.Timedelta(0):
        raise ValueError(f"interval must be positive, got {interval!r}")
    first = pd.Timestamp(start)
    first = first.tz_localize("UTC") if first.tz is None else first.tz_convert("UTC")
    index = pd.date_range(first, periods=n_rows, freq=step, name="timestamp").as_unit("ns")
    bars_per_day = pd.Timedelta("1D") / step
    sigma = ANNUAL_VOL / math.sqrt(365.25 * bars_per_day)
    season = _daily_cycle(index, SEASON_VOL_AMP)
    shock, variance = _garch(rng, n_rows)
    drift = _trend_drift(rng, n_rows, bars_per_day)
    bar_sigma = sigma * season * np.sqrt(variance)
    return _Path(index, drift + sigma * season * shock, drift, bar_sigma, shock)


def _daily_cycle(index: pd.DatetimeIndex, amplitude: float) -> np.ndarray:
    """Multiplier peaking at the US session; scaled so its mean square over a day is 1."""
    hours = index.hour.to_numpy() + index.minute.to_numpy() / 60.0
    cycle = 1.0 + amplitude * np.cos(2 * np.pi * (hours - SEASON_PEAK_HOUR) / 24.0)
    return cycle / math.sqrt(1.0 + amplitude**2 / 2.0)


def _student_t(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.standard_t(T_DOF, size=n) / math.sqrt(T_DOF / (T_DOF - 2.0))


def _garch(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """GARCH(1,1) shocks (unit unconditional variance, Student-t innovations) and their variances."""
    z = _student_t(rng, n)
    omega = 1.0 - GARCH_ALPHA - GARCH_BETA
    shocks, variances = [], []
    var = 1.0
    # The variance recursion is inherently sequential; on plain floats it is a few ms for 17k bars.
    for zi in z.tolist():
        e = math.sqrt(var) * zi
        shocks.append(e)
        variances.append(var)
        var = min(omega + GARCH_ALPHA * e * e + GARCH_BETA * var, GARCH_MAX_VAR)
    return np.asarray(shocks), np.asarray(variances)


def _trend_drift(rng: np.random.Generator, n: int, bars_per_day: float) -> np.ndarray:
    """Per-bar drift from slow regimes of random length, smoothed so trends build up and fade."""
    mean_len = max(REGIME_MEAN_DAYS * bars_per_day, 1.0)
    lengths = rng.geometric(1.0 / mean_len, size=int(n / mean_len * 3) + 8)
    while lengths.sum() < n:  # unlucky short regimes: draw more rather than fail
        lengths = np.r_[lengths, rng.geometric(1.0 / mean_len, size=len(lengths))]
    count = int(np.searchsorted(np.cumsum(lengths), n) + 1)
    lengths = lengths[:count]
    draws = rng.standard_normal(count) * REGIME_DRIFT_PER_DAY
    per_bar = np.empty(count)
    level = 0.0
    for k in range(count):  # one step per regime (a few dozen), pulling the trend level back to zero
        days = lengths[k] / bars_per_day
        move = draws[k] * days - REGIME_REVERSION * level
        per_bar[k] = move / lengths[k]
        level += move
    raw = np.repeat(per_bar, lengths)[:n]
    width = max(int(mean_len / 4), 1)
    padded = np.r_[np.full(width - 1, raw[0]), raw]
    return np.convolve(padded, np.ones(width) / width, mode="valid")


def _intrabar_extremes(
    rng: np.random.Generator, open_: np.ndarray, close: np.ndarray, bar_sigma: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """High/low from the exact max/min distribution of a Brownian bridge from open to close."""
    move = np.log(close / open_)
    var = bar_sigma**2
    up = 0.5 * (move + np.sqrt(move**2 - 2.0 * var * np.log(rng.random(len(move)))))
    down = 0.5 * (move - np.sqrt(move**2 - 2.0 * var * np.log(rng.random(len(move)))))
    high = np.ceil(open_ * np.exp(up) * 100.0) / 100.0
    low = np.floor(open_ * np.exp(down) * 100.0) / 100.0
    return np.maximum(high, np.maximum(open_, close)), np.minimum(low, np.minimum(open_, close))


def _volume(rng: np.random.Generator, path: _Path) -> np.ndarray:
    """Base-asset volume: daily cycle, busier when price moves and when volatility is high."""
    minutes = (path.index[1] - path.index[0]).total_seconds() / 60.0 if len(path.index) > 1 else 5.0
    base = BASE_VOLUME_PER_5MIN * minutes / 5.0
    cycle = _daily_cycle(path.index, SEASON_VOLUME_AMP)
    activity = 0.35 + 0.8 * np.abs(path.shock)
    noise = np.exp(0.45 * rng.standard_normal(len(path.shock)) - 0.45**2 / 2)
    return np.round(base * cycle * activity * noise, 6)
