"""A policy on candles: its positions bar by bar (what the registered model returns), and a backtest of
them with the training's cost model, against the rule baselines (buy-and-hold, flat, SMA crossover,
momentum) over the same span, with the null
check of its timing (the statistics of backtesting.py, named as plainly)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from btc_ai.domain.baselines import baseline_stats, rule_label, rule_positions, rule_windows
from btc_ai.domain.data import load_candles, resample_candles
from btc_ai.domain.errors import DataValidationError
from btc_ai.domain.features import compute_features
from btc_ai.domain.market import (
    POSITION_MODES,
    MarketData,
    decision_rows,
    episode_stats,
    hold_between_decisions,
    series_market,
    step_rewards,
)
from btc_ai.domain.null_check import null_percentile
from btc_ai.domain.policy import PolicyNet
from btc_ai.domain.policy_files import PolicyCard
from btc_ai.domain.trade_stats import span_trades


def prepared_candles(candles: Any, card: PolicyCard) -> pd.DataFrame:
    """Clean candles at the policy's timeframe from any layout `load_candles` reads (a DataFrame with a
    timestamp column or index, or a file); DataValidationError (a user mistake) when they cannot be."""
    frame = candles if isinstance(candles, pd.DataFrame) and isinstance(candles.index, pd.DatetimeIndex) and \
        candles.index.tz is not None and {"open", "high", "low", "close", "volume"} <= set(candles.columns) else None
    clean = frame if frame is not None else load_candles(candles)[0]
    return resample_candles(clean, card.timeframe)


def policy_frame(net: PolicyNet, card: PolicyCard, candles: Any) -> pd.DataFrame:
    """The policy's decision at the close of every bar: position (-1 short, 0 flat, +1 long) and the three
    action probabilities; ``ready`` is False for the warm-up bars whose features are not yet defined (the
    position there is flat)."""
    bars = prepared_candles(candles, card)
    positions, probabilities, ready = _decide(net, card, bars)
    positions = hold_between_decisions(positions, decision_rows(bars.index, card.decision_interval))
    return pd.DataFrame({"timestamp": bars.index, "position": positions.astype(np.int64),
                         "p_short": probabilities[:, 0], "p_flat": probabilities[:, 1], "p_long": probabilities[:, 2],
                         "ready": ready})


def _decide(net: PolicyNet, card: PolicyCard, bars: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions, action probabilities and readiness at every bar (the last one included)."""
    features = compute_features(bars, card.lookback, card.features)
    with torch.inference_mode():
        probabilities = torch.softmax(net(torch.from_numpy(features.values)), dim=-1).numpy().astype(np.float64)
    positions = POSITION_MODES[card.position_mode][probabilities.argmax(axis=1)].astype(np.int64)
    ready = np.arange(len(bars)) >= features.valid_from
    positions[~ready] = 0
    return positions, probabilities, ready


@dataclass(frozen=True)
class BacktestResult:
    """One backtest: the span, the policy's figures net and gross of costs, buy-and-hold's, the null check."""

    start: pd.Timestamp
    end: pd.Timestamp
    bars: int
    figures: dict[str, float]
    buy_and_hold: dict[str, float]
    null_percentile: float
    cost_bps: float
    equity: np.ndarray = field(repr=False)
    hold_equity: np.ndarray = field(repr=False)
    index: pd.DatetimeIndex = field(repr=False)
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)  # rule -> figures, same costs
    windows: str = ""  # the rules' windows, stated
    rule_equity: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # label (SMA 24/168) -> equity
    trades: pd.DataFrame | None = field(default=None, repr=False)  # the policy's round trips (trades.TRADE_COLUMNS)
    equity_table: pd.DataFrame | None = field(default=None, repr=False)  # ... and its equity bar by bar

    def as_dict(self) -> dict[str, Any]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "bars": self.bars,
                "cost_bps_per_unit_traded": self.cost_bps, "policy": self.figures, "buy_and_hold": self.buy_and_hold,
                "flat": {"total_return": 0.0, "sharpe": 0.0}, "baselines": self.baselines,
                "baseline_windows": self.windows, "null_percentile": self.null_percentile,
                "open_at_end": bool(self.trades is not None and self.trades["closed_at_end"].any())}


def backtest_policy(net: PolicyNet, card: PolicyCard, candles: Any, *, start: Any = None, end: Any = None,
                    fee_bps: float | None = None, slippage_bps: float | None = None) -> BacktestResult:
    """Trade the policy over the bars from ``start`` to ``end`` (decisions at bars in [start, end), each
    held over its next bar), flat to flat, with the policy's own cost model (or the given fee and slippage),
    features computed on everything before too (its look-back)."""
    bars = prepared_candles(candles, card)
    market, valid_from = series_market(bars, card.lookback, card.max_gap_bars, card.features)
    lo, hi = _rows(market, valid_from, start, end)
    span = market.slice(lo, hi)
    positions = _decide(net, card, bars)[0].astype(np.float32)[lo:hi]
    positions = hold_between_decisions(positions, decision_rows(span.index, card.decision_interval))
    cost = (card.fee_bps if fee_bps is None else fee_bps) + (card.slippage_bps if slippage_bps is None else slippage_bps)
    return backtest_positions(positions, span, cost * 1e-4, card.holding_cost_bps * 1e-4)


def backtest_positions(positions: np.ndarray, span: MarketData, cost_rate: float, holding_cost: float) -> BacktestResult:
    """The figures of ``positions`` over ``span`` (see :func:`backtest_policy`)."""
    returns = span.next_log_return
    stats = episode_stats(positions, returns, cost_rate, holding_cost, 0.0, span.bars_per_year, tradable=span.tradable,
                          close_at_end=True)
    hold_positions = np.ones_like(positions)
    hold = episode_stats(hold_positions, returns, cost_rate, holding_cost, 0.0, span.bars_per_year,
                         tradable=span.tradable, close_at_end=True)
    rewards = step_rewards(positions, returns, cost_rate, holding_cost, tradable=span.tradable,
                           close_at_end=True).astype(np.float64)
    hold_rewards = step_rewards(hold_positions, returns, cost_rate, holding_cost, tradable=span.tradable,
                                close_at_end=True).astype(np.float64)
    held = positions if span.tradable is None else positions * span.tradable
    traded = span_trades(positions, span, cost_rate, holding_cost)
    figures = {"total_return": stats.total_return, "gross_return": stats.gross_return, "sharpe": stats.sharpe,
               "sortino": stats.sortino, "max_drawdown": stats.max_drawdown,
               "position_changes": float(stats.position_changes), "turnover": stats.turnover,
               "long_share": float((held > 0).mean()), "short_share": float((held < 0).mean()), **traded.statistics}
    hold_figures = {"total_return": hold.total_return, "gross_return": hold.gross_return, "sharpe": hold.sharpe,
                    "sortino": hold.sortino, "max_drawdown": hold.max_drawdown}
    windows = rule_windows(span.bars_per_year)
    rules = baseline_stats(span, cost_rate, holding_cost, windows=windows)
    rule_equity = {rule_label(rule, windows): _equity(step_rewards(
        rule_positions(rule, span, windows), returns, cost_rate, holding_cost, tradable=span.tradable, close_at_end=True))
        for rule in ("sma_crossover", "momentum")}
    step = span.index[-1] - span.index[-2] if len(span.index) > 1 else pd.Timedelta(0)
    return BacktestResult(
        start=span.index[0], end=span.index[-1] + step, bars=len(span), figures=figures, buy_and_hold=hold_figures,
        null_percentile=null_percentile(positions, returns, cost_rate, holding_cost, tradable=span.tradable),
        cost_bps=cost_rate * 1e4, equity=np.exp(np.concatenate([[0.0], np.cumsum(rewards)])),
        hold_equity=np.exp(np.concatenate([[0.0], np.cumsum(hold_rewards)])),
        index=span.index.append(pd.DatetimeIndex([span.index[-1] + step])),
        baselines={rule: {**{k: float(getattr(st, k)) for k in _RULE_FIGURES}, **span_trades(
            rule_positions(rule, span, windows), span, cost_rate, holding_cost).statistics} for rule, st in rules.items()},
        windows=windows.describe(), rule_equity=rule_equity, trades=traded.trades, equity_table=traded.equity,
    )


_RULE_FIGURES = ("total_return", "gross_return", "sharpe", "sortino", "max_drawdown", "position_changes", "turnover")


def _equity(rewards: np.ndarray) -> np.ndarray:
    return np.exp(np.concatenate([[0.0], np.cumsum(rewards.astype(np.float64))]))


def _rows(market: MarketData, valid_from: int, start: Any, end: Any) -> tuple[int, int]:
    """Decision rows of the span: at or after ``start`` and the warm-up, before ``end``."""
    index = market.index
    lo = max(valid_from, int(index.searchsorted(_utc(start))) if start is not None else 0)
    hi = int(index.searchsorted(_utc(end))) if end is not None else len(index)
    if hi - lo < 2:
        first = index[min(valid_from, len(index) - 1)] if len(index) else None
        raise DataValidationError(
            f"the candles leave {max(hi - lo, 0)} bars to trade between {start or 'the start'} and {end or 'the end'} "
            f"after the {valid_from}-bar look-back of the features (first tradable bar: {first}); give more candles "
            "or a wider --from/--to")
    return lo, hi


def _utc(value: Any) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
