"""Trading statistics over round trips and the equity curve: what backtesting.py, vectorbt, freqtrade and
QuantStats report, computed from the simulator's own per-bar rewards (docs/trades.md has the formulas).

Every figure is a finite float whatever the span holds (no trade, no loss, a flat curve): the
conventions for the undefined cases are stated beside each figure below.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from btc_ai.domain.market import MarketData, effective_positions
from btc_ai.domain.metric_names import legacy_metric
from btc_ai.domain.trades import equity_frame, round_trips, span_rewards

# the statistics, in the order a table shows them
TRADE_FIGURES = ("round_trips", "win_rate", "profit_factor", "expectancy", "avg_trade_return", "best_trade_return",
                 "worst_trade_return", "avg_bars_held", "avg_holding_hours", "exposure")
CURVE_FIGURES = ("cagr", "annual_volatility", "sharpe", "sortino", "calmar", "max_drawdown", "max_drawdown_bars",
                 "max_drawdown_days")
STATISTICS = TRADE_FIGURES + CURVE_FIGURES
_MAX_LOG = 700.0  # exp(700) ~ 1e304: an annualised log return above it (a span of minutes) is reported at the cap


@dataclass(frozen=True)
class SpanTrades:
    """One policy's (or rule's) trades over a span, its equity curve, and their statistics."""

    trades: pd.DataFrame  # btc_ai.domain.trades.TRADE_COLUMNS
    equity: pd.DataFrame  # btc_ai.domain.trades.EQUITY_COLUMNS
    statistics: dict[str, float]


def span_tables(spans: Mapping[str, SpanTrades]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The trades and the equity of several spans (validation, test, ...) as two tables with a ``span`` column
    first: what ``trades.csv`` and ``equity.csv`` hold."""
    def joined(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
        return pd.concat([frame.assign(span=name)[["span", *frame.columns]] for name, frame in frames.items()],
                         ignore_index=True)
    return (joined({name: st.trades for name, st in spans.items()}),
            joined({name: st.equity for name, st in spans.items()}))


def span_trades(positions: np.ndarray, market: MarketData, cost_rate: float, holding_cost: float) -> SpanTrades:
    """Round trips, equity and :data:`STATISTICS` of ``positions`` over ``market``, flat to flat, with the
    simulator's costs (the same rewards as the span's figures and its equity curve)."""
    rewards = span_rewards(positions, market, cost_rate, holding_cost)
    trades = round_trips(positions, market, cost_rate, holding_cost, rewards)
    held = effective_positions(np.asarray(positions), market.tradable)
    return SpanTrades(trades, equity_frame(positions, market, rewards),
                      trade_statistics(trades, rewards, held, market.bars_per_year))


def trade_statistics(trades: pd.DataFrame, rewards: np.ndarray, held: np.ndarray,
                     bars_per_year: float) -> dict[str, float]:
    """:data:`STATISTICS` of ``trades`` (from :func:`btc_ai.domain.trades.round_trips`) and of the per-bar log
    ``rewards`` with the positions ``held`` over a span of bars ``bars_per_year`` to the year."""
    return {**_trade_figures(trades, held, bars_per_year), **curve_statistics(rewards, bars_per_year)}


def _trade_figures(trades: pd.DataFrame, held: np.ndarray, bars_per_year: float) -> dict[str, float]:
    net = trades["net_return"].to_numpy(np.float64)
    pnl = trades["net_pnl"].to_numpy(np.float64)
    count = len(net)
    wins, losses = pnl[pnl > 0].sum(), -pnl[pnl < 0].sum()
    hours_per_bar = 365 * 24 / bars_per_year
    bars = float(trades["bars_held"].mean()) if count else 0.0
    return {
        "round_trips": float(count),
        "win_rate": float((net > 0).mean()) if count else 0.0,  # a trade at exactly 0 is no win
        # gross profit over gross loss; 0 when there is no losing trade (no denominator; freqtrade's convention)
        "profit_factor": float(wins / losses) if losses > 0 else 0.0,
        "expectancy": float(pnl.mean()) if count else 0.0,  # mean net P&L, in starting equity
        "avg_trade_return": float(net.mean()) if count else 0.0,
        "best_trade_return": float(net.max()) if count else 0.0,
        "worst_trade_return": float(net.min()) if count else 0.0,
        "avg_bars_held": bars,
        "avg_holding_hours": bars * hours_per_bar,
        "exposure": float((np.asarray(held) != 0).mean()) if len(held) else 0.0,
    }


def curve_statistics(rewards: np.ndarray, bars_per_year: float) -> dict[str, float]:
    """:data:`CURVE_FIGURES` of per-bar log ``rewards``: Sharpe and Sortino as the span's figures compute them
    (mean over the standard deviation, or the downside deviation, of per-bar log rewards, times
    sqrt(bars a year); 0 when that deviation is 0); CAGR from the span's length in bars; Calmar = CAGR over
    the maximum drawdown (0 without a drawdown); the drawdown's duration from its peak to the bar equity
    is back at that peak (or the span's end)."""
    rewards = np.asarray(rewards, dtype=np.float64)
    n = len(rewards)
    if not n:
        return dict.fromkeys(CURVE_FIGURES, 0.0)
    std = float(rewards.std())
    downside = float(np.sqrt(np.mean(np.minimum(rewards, 0.0) ** 2)))
    mean = float(rewards.mean())
    log_equity = np.concatenate([[0.0], np.cumsum(rewards)])
    fall = np.maximum.accumulate(log_equity) - log_equity
    max_drawdown = float(-np.expm1(-fall.max()))
    cagr = float(np.expm1(min(log_equity[-1] * bars_per_year / n, _MAX_LOG)))
    duration = drawdown_duration(log_equity)
    return {
        "cagr": cagr,
        "annual_volatility": std * float(np.sqrt(bars_per_year)),
        "sharpe": mean / std * float(np.sqrt(bars_per_year)) if std > 0 else 0.0,
        "sortino": mean / downside * float(np.sqrt(bars_per_year)) if downside > 0 else 0.0,
        "calmar": cagr / max_drawdown if max_drawdown > 0 else 0.0,
        "max_drawdown": max_drawdown,
        "max_drawdown_bars": float(duration),
        "max_drawdown_days": duration * 365 / bars_per_year,
    }


def drawdown_duration(log_equity: np.ndarray) -> int:
    """The longest stretch, in bars, from a peak of ``log_equity`` to the first point back at or above it (to
    the last point when it never recovers); 0 for a curve that never falls."""
    rows = np.arange(len(log_equity))
    under = log_equity < np.maximum.accumulate(log_equity)
    if not under.any():
        return 0
    peak_at = np.maximum.accumulate(np.where(under, 0, rows))  # the last point at the running high
    # a stretch under water ends at the next point back at the high (its recovery) or at the span's end
    next_high = np.minimum.accumulate(np.where(under, len(rows), rows)[::-1])[::-1]
    return int((np.minimum(next_high, len(rows) - 1) - peak_at)[under].max())


def legacy_figure(metrics: Mapping[str, Any], name: str, default: Any = None) -> Any:
    """``metrics[name]``, or what runs recorded before the rename under the old name (``.../trades`` counted the
    bars where the position changed, now ``.../position_changes``)."""
    if name in metrics:
        return metrics[name]
    return metrics.get(legacy_metric(name), default)


def statistics_lines(stats: dict[str, Any]) -> list[str]:
    """Two lines a console shows: the trades and the equity curve (profit factor 'n/a' without a loss); none
    when ``stats`` lacks any of :data:`STATISTICS` (a run recorded before them)."""
    if any(key not in stats for key in STATISTICS):
        return []
    pf = stats.get("profit_factor", 0.0)
    wins = stats.get("win_rate", 0.0)
    factor = f"{pf:.2f}" if pf > 0 or not wins else "n/a (no losing trade)"
    if not stats.get("round_trips"):
        factor = "n/a (no trade)"
    trades = (f"{stats['round_trips']:.0f} round trips, win rate {wins:.1%}, profit factor {factor}, expectancy "
              f"{stats['expectancy']:+.3%}, average trade {stats['avg_trade_return']:+.3%} (best "
              f"{stats['best_trade_return']:+.2%}, worst {stats['worst_trade_return']:+.2%}), held "
              f"{stats['avg_bars_held']:.1f} bars ({stats['avg_holding_hours']:.1f} h) on average, in the market "
              f"{stats['exposure']:.1%} of the time")
    curve = (f"CAGR {stats['cagr']:+.2%}, volatility {stats['annual_volatility']:.2%} a year, Sharpe "
             f"{stats['sharpe']:+.2f}, Sortino {stats['sortino']:+.2f}, Calmar {stats['calmar']:+.2f}, max drawdown "
             f"{stats['max_drawdown']:.2%} lasting {stats['max_drawdown_bars']:.0f} bars "
             f"({stats['max_drawdown_days']:.1f} days)")
    return [trades, curve]


# how a table shows each figure: its label and format
_SHOWN = {"round_trips": ("round trips", "{:.0f}"), "win_rate": ("win rate", "{:.1%}"),
          "profit_factor": ("profit factor", "{:.2f}"), "expectancy": ("expectancy (P&L/trade)", "{:+.3%}"),
          "avg_trade_return": ("average trade", "{:+.3%}"), "best_trade_return": ("best trade", "{:+.2%}"),
          "worst_trade_return": ("worst trade", "{:+.2%}"), "avg_bars_held": ("average bars held", "{:.1f}"),
          "avg_holding_hours": ("average holding (h)", "{:.1f}"), "exposure": ("exposure", "{:.1%}"),
          "cagr": ("CAGR", "{:+.2%}"), "annual_volatility": ("volatility (annual)", "{:.2%}"),
          "sharpe": ("Sharpe", "{:+.2f}"), "sortino": ("Sortino", "{:+.2f}"), "calmar": ("Calmar", "{:+.2f}"),
          "max_drawdown": ("max drawdown", "{:.2%}"), "max_drawdown_bars": ("max drawdown (bars)", "{:.0f}"),
          "max_drawdown_days": ("max drawdown (days)", "{:.1f}")}


def statistics_table(columns: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """:data:`STATISTICS` as a text table, one column per label (the policy, each rule); a profit factor
    without a losing trade shows as ``n/a`` (it is recorded as 0)."""
    width = max([12, *(len(label) + 1 for label in columns)])
    lines = [f"{'':<24}" + "".join(f"{label:>{width}}" for label in columns)]
    for key in STATISTICS:
        label, form = _SHOWN[key]
        cells = []
        for stats in columns.values():
            value = stats.get(key)
            no_ratio = key == "profit_factor" and value == 0 and stats.get("win_rate", 0) > 0
            cells.append("n/a" if value is None or no_ratio else form.format(value))
        lines.append(f"{label:<24}" + "".join(f"{c:>{width}}" for c in cells))
    return lines
