"""Rule baselines: positions on hand-made prices, costs charged exactly as the policy's, no look-ahead."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from btc_ai.domain.baselines import (
    RULES,
    RuleWindows,
    baseline_stats,
    best_rule,
    momentum_positions,
    rule_positions,
    rule_windows,
    sma_crossover_positions,
)
from btc_ai.domain.market import MarketData, episode_stats, series_market, split_market


def _market(closes: list[float] | np.ndarray, freq: str = "1h") -> MarketData:
    close = np.asarray(closes, dtype=np.float64)
    index = pd.date_range("2024-01-01", periods=len(close), freq=freq, tz="UTC")
    frame = pd.DataFrame({"open": close, "high": close, "low": close, "close": close, "volume": 1.0}, index=index)
    return series_market(frame, 2)[0]


@pytest.mark.parametrize(("freq", "fast", "slow"), [("1h", 24, 168), ("4h", 6, 42), ("5min", 288, 2016),
                                                    ("15min", 96, 672), ("1D", 1, 7)])
def test_windows_are_a_day_and_a_week_of_the_timeframe(freq: str, fast: int, slow: int) -> None:
    market = _market(np.linspace(100, 110, 50), freq)
    windows = rule_windows(market.bars_per_year)
    assert (windows.fast, windows.slow) == (fast, slow)
    assert f"SMA {fast}/{slow} bars" in windows.describe()


def test_rising_prices_make_sma_and_momentum_long_after_their_warm_up() -> None:
    market = _market(100 * 1.01 ** np.arange(40))
    sma = sma_crossover_positions(market, 3, 10)
    momentum = momentum_positions(market, 10)
    assert not sma[:9].any() and sma[9:].all()  # the slow average needs 10 closes: rows 0..8 know fewer
    assert not momentum[:10].any() and momentum[10:].all()


def test_falling_and_flat_prices_keep_sma_and_momentum_flat() -> None:
    for closes in (100 * 0.99 ** np.arange(40), np.full(40, 123.45)):
        market = _market(closes)
        assert not sma_crossover_positions(market, 3, 10).any()
        assert not momentum_positions(market, 10).any()
    assert not rule_positions("flat", _market(100 * 1.01 ** np.arange(40))).any()
    assert rule_positions("buy_and_hold", _market(100 * 0.99 ** np.arange(40))).all()


def test_a_span_cut_from_a_series_uses_the_closes_before_it() -> None:
    whole = _market(100 * 1.01 ** np.arange(60))
    span = whole.slice(30, 50)
    nested = span.slice(5, 15)  # a validation window of a validation span
    assert sma_crossover_positions(span, 3, 10).all()  # warm-up paid before the span, as the features' is
    np.testing.assert_array_equal(momentum_positions(nested, 10), momentum_positions(whole, 10)[35:45])
    np.testing.assert_array_equal(sma_crossover_positions(nested, 3, 10), sma_crossover_positions(whole, 3, 10)[35:45])


def test_changing_candles_after_bar_t_never_changes_the_position_at_t() -> None:
    rng = np.random.default_rng(0)
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 400)))
    base = _market(closes)
    for t in (0, 5, 167, 168, 250, 398):
        changed = closes.copy()
        changed[t + 1:] = 100 * np.exp(rng.normal(0, 0.3, len(changed) - t - 1))
        other = _market(changed)
        for rule in RULES:
            assert rule_positions(rule, base)[t] == rule_positions(rule, other)[t], (rule, t)
        shorter = _market(closes[: t + 2])  # the rule on a series that ends right after bar t
        for rule in RULES:
            assert rule_positions(rule, base)[t] == rule_positions(rule, shorter)[t], (rule, t)


def test_a_rule_that_trades_k_times_pays_k_times_the_cost() -> None:
    # up for 12 bars, down for 12, up for 12: the crossover opens and closes; the closing trade is charged too
    closes = np.concatenate([100 * 1.02 ** np.arange(12), 100 * 1.02 ** 11 * 0.98 ** np.arange(1, 13)])
    closes = np.concatenate([closes, closes[-1] * 1.02 ** np.arange(1, 13)])
    market = _market(closes)
    cost = 0.001
    windows = RuleWindows(2, 4, pd.Timedelta("1h"))
    for rule in RULES:
        positions = rule_positions(rule, market, windows)
        free = episode_stats(positions, market.next_log_return, 0.0, 0.0, 0.0, market.bars_per_year, close_at_end=True)
        paid = episode_stats(positions, market.next_log_return, cost, 0.0, 0.0, market.bars_per_year,
                             close_at_end=True)
        assert paid.log_return == pytest.approx(free.log_return + paid.position_changes * math.log1p(-cost), abs=1e-6)
        assert paid.position_changes == int(np.abs(np.diff(np.concatenate([[0.0], positions, [0.0]]))).sum())
    assert episode_stats(rule_positions("sma_crossover", market, windows), market.next_log_return, cost, 0.0, 0.0,
                         market.bars_per_year, close_at_end=True).position_changes == 4  # in, out, in, and the closing sale


def test_baseline_stats_are_the_policys_statistics_of_the_rules_positions() -> None:
    rng = np.random.default_rng(1)
    market = _market(100 * np.exp(np.cumsum(rng.normal(0.0005, 0.01, 600)))).slice(200, 599)
    stats = baseline_stats(market, 0.001, 0.0002, 0.25)
    assert set(stats) == set(RULES)
    for rule in RULES:
        expected = episode_stats(rule_positions(rule, market), market.next_log_return, 0.001, 0.0002, 0.25,
                                 market.bars_per_year, tradable=market.tradable, close_at_end=True)
        assert stats[rule] == expected
    assert stats["flat"].sharpe == 0.0 and stats["flat"].total_return == 0.0 and stats["flat"].position_changes == 0
    hold = stats["buy_and_hold"]  # one buy, one sale, the holding cost on every bar
    gross = float(market.next_log_return.astype(np.float64).sum())
    assert hold.log_return == pytest.approx(gross + 2 * math.log1p(-0.001) - 0.0002 * len(market), abs=1e-5)
    assert hold.position_changes == 2


def test_rules_are_flat_across_gaps_like_the_policy(candles) -> None:
    holed = candles.drop(candles.index[3000:3040])
    split = split_market(holed, 12, 0.2, 0.15, max_gap_bars=3)
    span = split.train
    assert span.gap_rows
    stats = baseline_stats(span, 0.0003, 0.0)
    expected = episode_stats(np.ones(len(span), np.float32), span.next_log_return, 0.0003, 0.0, 0.0, span.bars_per_year,
                             tradable=span.tradable, close_at_end=True)
    assert stats["buy_and_hold"] == expected
    assert stats["buy_and_hold"].position_changes > 2  # closed before the gap, reopened after it


def test_best_rule_names_the_highest_sharpe_first_listed_on_a_tie() -> None:
    assert best_rule({"buy_and_hold": 1.2, "flat": 0.0, "sma_crossover": 1.4, "momentum": -0.3}) == ("sma_crossover", 1.4)
    assert best_rule({"buy_and_hold": 0.0, "flat": 0.0, "sma_crossover": 0.0, "momentum": 0.0})[0] == "buy_and_hold"
    with pytest.raises(ValueError, match="unknown rule"):
        rule_positions("martingale", _market(np.linspace(1, 2, 20)))
