"""Round trips and trading statistics (docs/trades.md): hand-computed examples (a flip, a partial exit, a trade
open at the span's end, a gap, no trade), reconciliation with the equity curve, and every statistic against an
independent pandas computation written here, on hand-built positions and on the real candles, to 1e-9."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from btc_ai.domain.backtest import backtest_positions
from btc_ai.domain.market import MarketData, series_market, step_rewards
from btc_ai.domain.trade_stats import STATISTICS, span_trades, statistics_lines, statistics_table

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
if not DATA.is_dir():
    DATA = Path("/work/shared/data")
COST = 0.001
HOLD = 2e-6


def _market(close: list[float], tradable: list[bool] | None = None, freq: str = "1h") -> MarketData:
    close = np.asarray(close, dtype=np.float64)
    n = len(close) - 1
    index = pd.date_range("2024-01-01", periods=n, freq=freq, tz="UTC")
    return MarketData(np.zeros((n, 1), np.float32), np.diff(np.log(close)).astype(np.float32), close, index,
                      float(pd.Timedelta(days=365) / pd.Timedelta(freq)),
                      None if tradable is None else np.asarray(tradable))


def _r(market: MarketData, t: int) -> float:
    return float(market.next_log_return[t])


def test_a_flip_is_two_trades_and_an_open_trade_is_closed_at_the_span_end() -> None:
    market = _market([100, 102, 101, 99, 100, 103])
    trades = span_trades(np.array([1, 1, -1, -1, 1], np.float32), market, COST, 0.0).trades
    assert list(trades["side"]) == ["long", "short", "long"]
    assert list(trades["bars_held"]) == [2, 2, 1] and list(trades["closed_at_end"]) == [False, False, True]
    assert list(trades["entry_price"]) == [100, 101, 100] and list(trades["exit_price"]) == [101, 100, 103]
    assert trades["exit_time"].iloc[1] == trades["entry_time"].iloc[2] == market.index[4]
    assert trades["exit_time"].iloc[2] == market.index[-1] + pd.Timedelta("1h")  # one bar after the last decision
    flip = math.log1p(-2 * COST)  # a flip trades 2 units: half of its cost is each trade's
    long1 = _r(market, 0) + _r(market, 1) + math.log1p(-COST) + flip / 2
    short = -_r(market, 2) - _r(market, 3) + flip / 2 + flip / 2
    long2 = _r(market, 4) + flip / 2 + math.log1p(-COST)  # the closing sale at the span's end
    assert trades["net_return"].to_numpy() == pytest.approx(np.expm1([long1, short, long2]), rel=1e-6)
    assert trades["gross_return"].iloc[0] == pytest.approx(101 / 100 - 1, rel=1e-6)
    assert trades["gross_return"].iloc[1] == pytest.approx(101 / 100 - 1, rel=1e-5)  # short from 101 to 100: exp(-r)
    assert trades["net_pnl"].iloc[1] == pytest.approx(math.exp(long1) * math.expm1(short), rel=1e-6)


def test_a_partial_exit_stays_one_trade_and_a_gap_closes_one() -> None:
    market = _market([100, 101, 102, 103, 104, 105, 106])
    partial = span_trades(np.array([0.5, 1, 1, 0.5, 0, 0], np.float32), market, COST, 0.0).trades
    assert len(partial) == 1 and partial["size"].iloc[0] == 1.0 and partial["bars_held"].iloc[0] == 4
    log = (0.5 * _r(market, 0) + _r(market, 1) + _r(market, 2) + 0.5 * _r(market, 3)
           + math.log1p(-0.5 * COST) * 3 + math.log1p(-0.5 * COST))  # in 0.5, up 0.5, down 0.5, out 0.5
    assert partial["net_return"].iloc[0] == pytest.approx(math.expm1(log), rel=1e-6)

    gapped = _market([100, 101, 102, 103, 104, 105, 106], tradable=[True, True, False, True, True, True])
    held = span_trades(np.ones(6, np.float32), gapped, COST, 0.0).trades
    assert list(held["bars_held"]) == [2, 3] and held["exit_time"].iloc[0] == gapped.index[2]  # flat across the gap
    assert held["entry_time"].iloc[1] == gapped.index[3] and list(held["closed_at_end"]) == [False, True]


@pytest.mark.parametrize("positions", [
    [0, 0, 0, 0, 0, 0],  # no trade
    [1, 1, 1, 1, 1, 1],  # one winner, no loss: profit factor has no denominator
    [-1, -1, -1, -1, -1, -1],  # one loser, no win
    [0, 0, 0, 0, 0, 1],  # open at the end only
])
def test_every_statistic_is_finite_whatever_the_span_holds(positions) -> None:
    market = _market([100, 101, 102, 103, 104, 105, 106])
    done = span_trades(np.array(positions, np.float32), market, COST, HOLD)
    assert set(done.statistics) == set(STATISTICS)
    assert all(math.isfinite(v) for v in done.statistics.values()), done.statistics
    text = "\n".join(statistics_lines(done.statistics) + statistics_table({"policy": done.statistics}))
    assert "nan" not in text.lower() and "inf" not in text.lower()
    if positions[0] == 1:
        assert done.statistics["profit_factor"] == 0.0 and "n/a (no losing trade)" in text
    if not any(positions):
        assert done.statistics["round_trips"] == 0 and "n/a (no trade)" in text and done.trades.empty


def _pandas_trades(positions: np.ndarray, market: MarketData, rewards: np.ndarray) -> pd.DataFrame:
    """Round trips the plain way: a trade id per run of one side, each bar's reward to the trade holding it,
    the bar that goes flat to the trade it closes, a flip's cost split by size."""
    held = pd.Series(positions.astype(np.float64) * (1 if market.tradable is None else market.tradable))
    side = np.sign(held)
    prev = held.shift(fill_value=0.0)
    new_trade = (side != 0) & (side != np.sign(prev))
    trade_id = new_trade.cumsum().where(side != 0)
    closing = (side == 0) & (prev != 0)
    owner = trade_id.fillna(trade_id.shift().where(closing))
    reward = pd.Series(rewards)
    flip = (side != 0) & (np.sign(prev) == -side)
    share = (np.log1p(-COST * (held - prev).abs()) * prev.abs() / (prev.abs() + held.abs())).where(flip, 0.0)
    net = reward.groupby(owner).sum()
    net = net.add(share.groupby(owner - 1).sum(), fill_value=0.0).sub(share.groupby(owner).sum(), fill_value=0.0)
    net = net.loc[sorted(trade_id.dropna().unique())]
    equity_log = np.concatenate([[0.0], np.cumsum(rewards)])
    first = new_trade[new_trade].index.to_numpy()
    pre = equity_log[first] + share.to_numpy()[first]
    return pd.DataFrame({"net_return": np.expm1(net.to_numpy()), "net_pnl": np.exp(pre) * np.expm1(net.to_numpy()),
                         "bars_held": trade_id.value_counts().sort_index().to_numpy()})


def _pandas_statistics(positions: np.ndarray, market: MarketData, rewards: np.ndarray) -> dict[str, float]:
    trades = _pandas_trades(positions, market, rewards)
    bpy, n = market.bars_per_year, len(rewards)
    r = pd.Series(rewards)
    equity = pd.Series(np.exp(np.concatenate([[0.0], np.cumsum(rewards)])))
    wins, losses = trades.net_pnl[trades.net_pnl > 0].sum(), -trades.net_pnl[trades.net_pnl < 0].sum()
    drawdown = 1 - equity / equity.cummax()
    longest, peak, fell = 0, 0, False
    for i in range(1, len(equity)):  # from a peak to the first point back at it (or the end)
        if equity[i] >= equity[peak]:
            longest, peak, fell = max(longest, i - peak) if fell else longest, i, False
        else:
            fell = True
    longest = max(longest, len(equity) - 1 - peak) if fell else longest
    cagr = equity.iloc[-1] ** (bpy / n) - 1
    mdd = drawdown.max()
    held = positions * (1 if market.tradable is None else market.tradable)
    k = len(trades)
    return {
        "round_trips": k, "win_rate": (trades.net_return > 0).mean() if k else 0.0,
        "profit_factor": wins / losses if losses > 0 else 0.0, "expectancy": trades.net_pnl.mean() if k else 0.0,
        "avg_trade_return": trades.net_return.mean() if k else 0.0,
        "best_trade_return": trades.net_return.max() if k else 0.0,
        "worst_trade_return": trades.net_return.min() if k else 0.0,
        "avg_bars_held": trades.bars_held.mean() if k else 0.0,
        "avg_holding_hours": (trades.bars_held.mean() if k else 0.0) * 8760 / bpy,
        "exposure": (held != 0).mean(), "cagr": cagr, "annual_volatility": r.std(ddof=0) * math.sqrt(bpy),
        "sharpe": r.mean() / r.std(ddof=0) * math.sqrt(bpy) if r.std(ddof=0) > 0 else 0.0,
        "sortino": r.mean() / math.sqrt((r.clip(upper=0) ** 2).mean()) * math.sqrt(bpy) if (r < 0).any() else 0.0,
        "calmar": cagr / mdd if mdd > 0 else 0.0, "max_drawdown": mdd, "max_drawdown_bars": longest,
        "max_drawdown_days": longest * 365 / bpy,
    }


def _check(positions: np.ndarray, market: MarketData) -> dict[str, float]:
    done = span_trades(positions, market, COST, HOLD)
    rewards = step_rewards(positions, market.next_log_return, COST, HOLD, tradable=market.tradable,
                           close_at_end=True).astype(np.float64)
    expected = _pandas_statistics(positions, market, rewards)
    for key in STATISTICS:
        assert done.statistics[key] == pytest.approx(expected[key], rel=1e-9, abs=1e-9), key
    # the trades' net P&L is the equity curve's return, and their returns compound to it
    result = backtest_positions(positions, market, COST, HOLD)
    total = result.equity[-1] - 1
    assert done.trades["net_pnl"].sum() == pytest.approx(total, rel=1e-9, abs=1e-12)
    assert np.prod(1 + done.trades["net_return"]) - 1 == pytest.approx(total, rel=1e-9, abs=1e-12)
    assert done.equity["equity"].to_numpy() == pytest.approx(result.equity, rel=1e-12)
    for key in ("sharpe", "sortino", "max_drawdown"):  # one definition with the span's own figures
        assert done.statistics[key] == pytest.approx(result.figures[key], rel=1e-9, abs=1e-12), key
    return done.statistics


def test_hand_built_positions_match_an_independent_pandas_computation() -> None:
    market = _market([100, 102, 101, 99, 100, 103, 104, 102, 101, 105, 106],
                     tradable=[True, True, True, True, True, True, False, True, True, True])
    for positions in ([1, 1, -1, -1, 0, 0.5, 1, 1, -0.5, -1], [0] * 10, [-1] * 10, [0, 1, 0, -1, 0, 1, 0, 1, 1, 1]):
        _check(np.array(positions, np.float32), market)


@pytest.mark.parametrize("name, freq, gap", [("btcusdt_1h_2017-08_2021-06_cryptodatadownload.csv", "1h", 3),
                                             ("btcusdt_5m_2021-06_binance.csv", "5min", 12)])
def test_statistics_on_the_real_candles_match_an_independent_pandas_computation(name, freq, gap) -> None:
    from btc_ai.domain.data import load_candles, resample_candles

    candles = resample_candles(load_candles(DATA / name)[0], freq)
    market, valid_from = series_market(candles, 24, gap)
    market = market.slice(valid_from, len(market))
    close = pd.Series(market.close[: len(market)])
    trend = np.log(close / close.shift(24)).fillna(0.0).to_numpy()
    # long/short on the day's trend, half size when it is weak, flat when it is flat: flips, partials, gaps
    positions = (np.sign(trend) * np.where(np.abs(trend) > 0.02, 1.0, 0.5) * (np.abs(trend) > 0.002)).astype(np.float32)
    stats = _check(positions, market)
    assert stats["round_trips"] > 100 and 0 < stats["exposure"] < 1


def test_the_backtest_command_shows_the_table_and_writes_trades_and_equity_beside_the_plot(tmp_path) -> None:
    from btc_ai.desk.backtest import _tables

    market = _market([100, 102, 101, 99, 100, 103])
    result = backtest_positions(np.array([1, 1, -1, -1, 1], np.float32), market, COST, 0.0)
    paths = _tables(result, tmp_path)
    trades = pd.read_csv(paths[0])
    equity = pd.read_csv(paths[1])
    assert len(trades) == 3 and list(trades["side"]) == ["long", "short", "long"] and len(equity) == 6
    assert trades["net_pnl"].sum() == pytest.approx(equity["equity"].iloc[-1] - 1, rel=1e-12)
    report = json.loads(json.dumps(result.as_dict(), allow_nan=False))  # strict JSON: no NaN or inf anywhere
    assert report["open_at_end"] and report["policy"]["round_trips"] == 3
    assert set(STATISTICS) <= set(report["baselines"]["sma_crossover"])


def test_the_walk_forward_table_carries_the_test_span_statistics_and_reads_older_rows() -> None:
    from btc_ai.domain.fold_summary import aggregate, row_from_metrics, table_lines

    stats = {f"test/{k}": v for k, v in {"round_trips": 7.0, "win_rate": 0.5714, "max_drawdown": 0.123}.items()}
    new = row_from_metrics(1, 1, "s1", "", {"test/total_return": 0.02, "test/position_changes": 14.0, **stats}, {})
    old = row_from_metrics(2, 1, "s2", "", {"test/total_return": 0.0, "test/trades": 0.0}, {})  # before the rename
    assert new.position_changes == 14 and old.position_changes == 0 and new.as_dict()["test_round_trips"] == 7
    assert math.isnan(old.as_dict()["test_win_rate"])
    text = "\n".join(table_lines([new, old], aggregate([new, old])))
    assert "trips" in text and "57.1%" in text and "12.3%" in text and "never trades on its test span: 1/2" in text
