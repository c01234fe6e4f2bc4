"""Rule baselines scored beside the policy: buy-and-hold, flat, a moving-average crossover and time-series
momentum (both long or flat), on the same span, with the same costs and statistics as the policy.

A rule's position at decision row t uses only closes up to bar t (the span's own and those before it,
:attr:`MarketData.lead_close`), so a rule never sees a later bar. Its windows are wall-clock lengths (a
day and a week) in bars of the span's timeframe: 24/168 on 1h bars, 6/42 on 4h, 288/2016 on 5min.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from btc_ai.domain.market import EpisodeStats, MarketData, episode_stats
from btc_ai.domain.metric_names import SPAN_TEST, baseline_metric

RULES = ("buy_and_hold", "flat", "sma_crossover", "momentum")
RULE_NAMES = {"buy_and_hold": "buy-and-hold", "flat": "flat", "sma_crossover": "SMA crossover", "momentum": "momentum"}
FAST_WINDOW = pd.Timedelta(days=1)  # the crossover's fast average
SLOW_WINDOW = pd.Timedelta(days=7)  # the crossover's slow average and momentum's look-back
_YEAR = pd.Timedelta(days=365)
_TIE = 1e-9


@dataclass(frozen=True)
class RuleWindows:
    """The rules' windows in bars of one timeframe."""

    fast: int
    slow: int
    bar: pd.Timedelta

    def describe(self) -> str:
        """What a reader needs to redo the rules, e.g. ``SMA 24/168 bars of 1h (1 d / 7 d); momentum 168``."""
        return (f"SMA {self.fast}/{self.slow} bars of {_duration(self.bar)} ({_duration(FAST_WINDOW)} / "
                f"{_duration(SLOW_WINDOW)}); momentum over {self.slow} bars")


def rule_label(rule: str, windows: RuleWindows) -> str:
    """How a reader sees ``rule``: ``SMA 24/168``, ``momentum 168``, ``buy-and-hold``, ``flat``."""
    return {"sma_crossover": f"SMA {windows.fast}/{windows.slow}", "momentum": f"momentum {windows.slow}",
            "buy_and_hold": "buy-and-hold"}.get(rule, rule)


def rule_windows(bars_per_year: float) -> RuleWindows:
    """A day and a week in bars of the timeframe with ``bars_per_year`` bars a year (at least 1 and 2)."""
    bar = _YEAR / bars_per_year
    fast = max(1, round(FAST_WINDOW / bar))
    return RuleWindows(fast=fast, slow=max(fast + 1, round(SLOW_WINDOW / bar)), bar=pd.Timedelta(bar).round("s"))


def timeframe_windows(timeframe: str) -> RuleWindows:
    """:func:`rule_windows` of a TIMEFRAME such as ``1h`` (what a report reads off a session's params)."""
    return rule_windows(_YEAR / pd.Timedelta(timeframe))


def known_closes(market: MarketData, history: int) -> tuple[np.ndarray, int]:
    """Closes known at the span's decision rows, with up to ``history`` bars before the span, and the
    position of decision row 0 in them (row t knows closes[: offset + t + 1])."""
    lead = market.lead_close[len(market.lead_close) - min(history, len(market.lead_close)):] \
        if market.lead_close is not None else np.empty(0)
    closes = np.concatenate([lead, market.close[: len(market)]]).astype(np.float64)
    return closes, len(lead)


def sma_crossover_positions(market: MarketData, fast: int, slow: int) -> np.ndarray:
    """Long (1) where the mean of the last ``fast`` closes is above that of the last ``slow``, else flat;
    flat while fewer than ``slow`` closes are known."""
    closes, offset = known_closes(market, slow - 1)
    fast_mean, slow_mean = _trailing_mean(closes, fast), _trailing_mean(closes, slow)
    # a margin far above the sums' rounding, so equal averages (a plateau) stay flat
    return (fast_mean - slow_mean > _TIE * slow_mean)[offset:].astype(np.float32)


def momentum_positions(market: MarketData, window: int) -> np.ndarray:
    """Long (1) where the close is above the close ``window`` bars before (the sign of the return over the
    window), else flat; flat while that close is not known."""
    closes, offset = known_closes(market, window)
    long = np.zeros(len(closes), dtype=bool)
    long[window:] = closes[window:] > closes[:-window]
    return long[offset:].astype(np.float32)


def rule_positions(rule: str, market: MarketData, windows: RuleWindows | None = None) -> np.ndarray:
    """Positions (n,) of ``rule`` (one of :data:`RULES`) at every decision row of ``market``."""
    windows = windows or rule_windows(market.bars_per_year)
    if rule == "buy_and_hold":
        return np.ones(len(market), dtype=np.float32)
    if rule == "flat":
        return np.zeros(len(market), dtype=np.float32)
    if rule == "sma_crossover":
        return sma_crossover_positions(market, windows.fast, windows.slow)
    if rule == "momentum":
        return momentum_positions(market, windows.slow)
    raise ValueError(f"unknown rule {rule!r}; known rules: {', '.join(RULES)}")


def baseline_stats(market: MarketData, cost_rate: float, holding_cost: float, drawdown_penalty: float = 0.0,
                   windows: RuleWindows | None = None) -> dict[str, EpisodeStats]:
    """Every rule traded over ``market`` from flat to flat, by the statistics function of the policy's
    own figures (same fee and slippage per unit traded, closing trade, holding cost, flat across gaps)."""
    windows = windows or rule_windows(market.bars_per_year)
    return {rule: episode_stats(rule_positions(rule, market, windows), market.next_log_return, cost_rate, holding_cost,
                                drawdown_penalty, market.bars_per_year, tradable=market.tradable, close_at_end=True)
            for rule in RULES}


def best_rule(sharpes: dict[str, float]) -> tuple[str, float]:
    """The rule with the highest Sharpe (the first of :data:`RULES` on a tie), and that Sharpe."""
    rule = max((r for r in RULES if r in sharpes), key=lambda r: (sharpes[r], -RULES.index(r)))
    return rule, sharpes[rule]


def baselines_line(metrics: Mapping[str, Any], span: str = SPAN_TEST) -> str | None:
    """``buy-and-hold +27.90% (Sharpe +1.90), flat +0.00% (Sharpe +0.00), SMA crossover ...`` from the
    ``baseline/<rule>/...`` metrics of ``span`` (None when there are none)."""
    parts = []
    for rule in RULES:
        ret, sharpe = (metrics.get(baseline_metric(rule, figure, span)) for figure in ("total_return", "sharpe"))
        if ret is not None and sharpe is not None:
            parts.append(f"{RULE_NAMES[rule]} {ret:+.2%} (Sharpe {sharpe:+.2f})")
    return ", ".join(parts) or None


def baseline_lines(metrics: Mapping[str, Any], windows: str | None = None) -> list[str]:
    """One line per span with rule baselines in ``metrics``, stating the rules' windows (``windows``, else the
    ``baseline_windows`` the training reported)."""
    windows = windows or metrics.get("baseline_windows")
    lines = []
    for span in ("validation", "test"):
        line = baselines_line(metrics, span)
        if line:
            lines.append(f"rule baselines, {span} span, same costs" + (f" ({windows})" if windows else "") + f": {line}")
    return lines


def _trailing_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last ``window`` values at each position (NaN before ``window`` values exist); each entry
    depends on earlier values only, and the cumulative sum is shifted to keep its rounding small."""
    out = np.full(len(values), np.nan)
    if len(values) >= window:
        sums = np.concatenate([[0.0], np.cumsum(values - values[0])])
        out[window - 1:] = (sums[window:] - sums[:-window]) / window + values[0]
    return out


def _duration(delta: pd.Timedelta) -> str:
    """1 d, 7 d, 4h, 5min: the shortest plain name of a whole duration."""
    delta = pd.Timedelta(delta)
    for unit, name in ((pd.Timedelta(days=1), " d"), (pd.Timedelta(hours=1), "h"), (pd.Timedelta(minutes=1), "min")):
        if delta >= unit and delta % unit == pd.Timedelta(0):
            return f"{delta // unit}{name}"
    return str(delta)
