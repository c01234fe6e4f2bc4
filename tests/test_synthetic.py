"""Tests for btc_ai.domain.synthetic: shape, determinism and the stylised facts of BTC 5-minute candles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from btc_ai.domain.data import COLUMNS, data_fingerprint, load_candles, validate_candles
from btc_ai.domain.synthetic import _simulate, default_candles, synthetic_candles

BARS_PER_YEAR = 365.25 * 288
SEEDS = [0, 1, 2, 3]


@pytest.fixture(scope="module")
def samples() -> dict[int, pd.DataFrame]:
    return {seed: synthetic_candles(seed=seed) for seed in SEEDS}


def log_returns(df: pd.DataFrame) -> np.ndarray:
    return np.diff(np.log(df["close"].to_numpy()))


def test_shape_matches_the_loader_contract():
    df = synthetic_candles(1000, start="2024-03-01", start_price=30000.0)
    assert list(df.columns) == COLUMNS
    assert all(df[c].dtype == np.float64 for c in COLUMNS)
    assert isinstance(df.index, pd.DatetimeIndex) and str(df.index.tz) == "UTC"
    assert df.index.name == "timestamp"
    assert df.index[0] == pd.Timestamp("2024-03-01", tz="UTC")
    assert (np.diff(df.index.asi8) == pd.Timedelta("5min").value).all()
    assert df["open"].iloc[0] == 30000.0
    report = validate_candles(df)
    assert report.rows == 1000 and report.gaps == 0 and report.layout == "synthetic"
    loaded, loaded_report = load_candles(df)
    assert loaded_report.layout == "synthetic"
    assert data_fingerprint(loaded) == data_fingerprint(df)


def test_other_intervals():
    df = synthetic_candles(500, interval="1h", seed=3)
    assert validate_candles(df).interval == pd.Timedelta("1h")
    vol = log_returns(df).std() * np.sqrt(365.25 * 24)
    assert 0.3 < vol < 1.2


def test_deterministic_for_a_seed_and_different_across_seeds(samples):
    again = synthetic_candles(seed=0)
    pd.testing.assert_frame_equal(again, samples[0])
    assert data_fingerprint(again) == data_fingerprint(samples[0])
    assert data_fingerprint(samples[0]) != data_fingerprint(samples[1])
    assert not np.allclose(samples[0]["close"].to_numpy(), samples[1]["close"].to_numpy())


def test_ohlc_consistency(samples):
    for df in samples.values():
        o, h, lo, c, v = (df[k].to_numpy() for k in COLUMNS)
        assert (h >= np.maximum(o, c)).all() and (lo <= np.minimum(o, c)).all()
        assert (lo > 0).all() and (v > 0).all()
        np.testing.assert_array_equal(o[1:], c[:-1])  # open is the previous close
        assert (h > lo).mean() > 0.99  # bars have a real range, not just open/close


def test_fat_tails(samples):
    for df in samples.values():
        r = log_returns(df)
        excess_kurtosis = ((r - r.mean()) ** 4).mean() / r.var() ** 2 - 3
        assert excess_kurtosis > 1, excess_kurtosis


def test_volatility_clustering(samples):
    for df in samples.values():
        a = np.abs(log_returns(df))
        assert np.corrcoef(a[:-1], a[1:])[0, 1] > 0.1
        shuffled = np.random.default_rng(0).permutation(a)  # the same test on unclustered data fails
        assert abs(np.corrcoef(shuffled[:-1], shuffled[1:])[0, 1]) < 0.05


def test_daily_cycle_in_volatility_and_volume(samples):
    for df in samples.values():
        a = np.abs(log_returns(df))
        hours = df.index.hour.to_numpy()[1:]
        by_hour = np.array([a[hours == h].mean() for h in range(24)])
        assert by_hour[13:18].mean() > 1.15 * by_hour[[1, 2, 3, 4, 5]].mean()
        volume = df.groupby(df.index.hour)["volume"].mean()
        assert volume.loc[13:17].mean() > 1.6 * volume.loc[1:5].mean()


def test_volume_tracks_absolute_returns(samples):
    for df in samples.values():
        a = np.abs(log_returns(df))
        assert np.corrcoef(df["volume"].to_numpy()[1:], a)[0, 1] > 0.4


def test_annualised_volatility_is_btc_like_and_price_stays_sane():
    for seed in range(6):
        df = synthetic_candles(seed=seed)
        vol = log_returns(df).std() * np.sqrt(BARS_PER_YEAR)
        assert 0.40 <= vol <= 0.90, (seed, vol)
        assert df["low"].min() > 40000 / 3 and df["high"].max() < 40000 * 3


def test_trend_regimes_are_persistent_and_modest():
    path = _simulate(np.random.Generator(np.random.PCG64(5)), 288 * 120, "2024-01-01", "5min")
    drift = path.drift
    lag_day = np.corrcoef(drift[:-288], drift[288:])[0, 1]
    assert lag_day > 0.3  # a trend today is likely still there tomorrow: something for momentum to learn
    daily_drift = drift.std() * 288
    assert 0.002 < daily_drift < 0.03  # but a fraction of the ~3% daily noise
    assert abs(drift.sum()) < 0.5  # regimes pull back instead of compounding into a runaway trend


def test_default_candles_is_cached_copy():
    first = default_candles()
    assert len(first) == 60 * 288
    assert first.index[0] == pd.Timestamp("2024-01-01", tz="UTC")
    first.iloc[0, 0] = -1.0  # callers may scribble on their copy
    second = default_candles()
    assert second.iloc[0, 0] == 40000.0
    assert second is not default_candles()
    validate_candles(second, min_rows=288)

