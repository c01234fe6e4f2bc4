"""The trading environment: rewards of short/flat/long positions, vectorised over a whole population.

A decision at bar t is taken on features known at the close of bar t and held over bar t+1; each
change of position pays the costs (fee plus slippage). Reward = position x log return + log(1 - cost x
|change|) - holding cost; a span (an episode, the validation or test span) starts flat and ends with
its closing trade. A bar that spans a gap in the data (more than MAX_GAP_BARS bars missing) is not
tradable: the position is flat across it, so it neither earns that return nor pays for holding, and
training episodes never span one. The gym-style :class:`TradingEnv` steps the same rules one decision
at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from btc_ai.domain.config import ConfigProblem
from btc_ai.domain.errors import ConfigValidationError, DataValidationError, TradingEnvironmentError
from btc_ai.domain.features import compute_features, feature_names, warmup_bars

ACTIONS = np.array([-1.0, 0.0, 1.0], dtype=np.float32)  # action index -> position (short, flat, long)
# POSITION_MODE -> position of each action index: long_flat (a spot account that cannot short) takes "short" as flat
POSITION_MODES = {"long_short": ACTIONS, "long_flat": np.array([0.0, 0.0, 1.0], dtype=np.float32)}
_YEAR = pd.Timedelta(days=365)
_MIN_SPAN_BARS = 8  # a validation or test span shorter than this scores nothing (an empty one cannot be scored)


@dataclass(frozen=True)
class MarketData:
    """Features and next-bar log returns of one chronological span.

    ``next_log_return[t]`` is log(close[t+1] / close[t]); decisions can be taken at rows
    0 .. len-1 of this span, each earning the return of the following bar.
    """

    features: np.ndarray  # (n, F) float32
    next_log_return: np.ndarray  # (n,) float32
    close: np.ndarray  # (n + 1,) float64: closes at decision rows plus the final bar
    index: pd.DatetimeIndex  # timestamps of the decision rows
    bars_per_year: float
    tradable: np.ndarray | None = None  # (n,) bool: False where the next bar is across a gap; None: all
    # closes before the first decision row (the series this span was cut from), so a rule baseline's
    # moving averages are defined from the span's first bar, as the policy's features are
    lead_close: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.next_log_return)

    @property
    def gap_rows(self) -> int:
        """Decision rows whose next bar lies across a gap (held flat)."""
        return 0 if self.tradable is None else int((~self.tradable).sum())

    def episode_starts_allowed(self, steps: int) -> np.ndarray | None:
        """First rows of every window of ``steps`` decisions that spans no gap; None when the span has none."""
        if self.tradable is None or self.tradable.all():
            return None
        blocked = np.concatenate([[0], np.cumsum(~self.tradable)])
        last = len(self) - steps
        starts = np.arange(max(last + 1, 0))
        return starts[blocked[starts + steps] - blocked[starts] == 0]

    def slice(self, lo: int, hi: int) -> MarketData:
        """Decisions lo .. hi-1 of this span as a span of their own."""
        lead = self.close[:lo] if self.lead_close is None else np.concatenate([self.lead_close, self.close[:lo]])
        return MarketData(self.features[lo:hi], self.next_log_return[lo:hi], self.close[lo : hi + 1], self.index[lo:hi],
                          self.bars_per_year, None if self.tradable is None else self.tradable[lo:hi], lead)

    def windows(self, starts: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
        """Features (E*steps, F) and returns (E, steps) of episodes starting at ``starts``."""
        rows = np.asarray(starts)[:, None] + np.arange(steps)[None, :]
        if rows.size and (rows.min() < 0 or rows.max() >= len(self)):
            raise TradingEnvironmentError(
                f"episode rows {rows.min()}..{rows.max()} fall outside the span of {len(self)} decisions",
                key="MAX_STEPS_PER_EPISODE",
            )
        return self.features[rows.reshape(-1)], self.next_log_return[rows]


@dataclass(frozen=True)
class MarketSplit:
    """The chronological train | validation | test split of one candle series (test None when disabled)."""

    train: MarketData
    validation: MarketData
    feature_names: tuple[str, ...]
    test: MarketData | None = None

    @property
    def gap_rows(self) -> int:
        """Decision rows held flat across gaps, in all spans together."""
        return sum(span.gap_rows for span in (self.train, self.validation, self.test) if span is not None)

    def spans(self) -> tuple[tuple[str, pd.Timestamp, pd.Timestamp, int], ...]:
        """(role, first decision row, last one, rows) of each span: train, validation and test."""
        named = (("train", self.train), ("validation", self.validation), ("test", self.test))
        return tuple((role, span.index[0], span.index[-1], len(span.index)) for role, span in named
                     if span is not None and len(span.index))


def series_market(candles: pd.DataFrame, lookback: int, max_gap_bars: int | None = None,
                  features: str = "base") -> tuple[MarketData, int]:
    """Every decision row of ``candles`` (all but the last bar) as one span, features computed causally on the
    whole series, and the first row whose features are defined (the warm-up before it)."""
    feats = compute_features(candles, lookback, features)
    close = candles["close"].to_numpy(np.float64)
    index = pd.DatetimeIndex(candles.index)
    next_ret = np.diff(np.log(close)).astype(np.float32)  # decision rows 0 .. n-2
    n = len(close)
    step = (index[1:] - index[:-1]).min() if n > 1 else pd.Timedelta(minutes=5)
    tradable = None
    if max_gap_bars is not None and n > 1:
        tradable = np.asarray((index[1:] - index[:-1]) <= step * max_gap_bars)
    market = MarketData(features=feats.values[: n - 1], next_log_return=next_ret, close=close, index=index[: n - 1],
                        bars_per_year=float(_YEAR / step), tradable=tradable)
    return market, feats.valid_from


def split_market(candles: pd.DataFrame, lookback: int, validation_fraction: float, test_fraction: float = 0.0,
                 max_gap_bars: int | None = None, features: str = "base") -> MarketSplit:
    """Features on the whole series (causal), then train = oldest part, validation = the next
    ``validation_fraction`` of the data, test = the newest ``test_fraction``; with a test span, the spans
    are apart by the feature warm-up (5 x ``lookback`` bars), so no window reaches across a border."""
    market, lo = series_market(candles, lookback, max_gap_bars, features)
    names = feature_names(lookback, features)
    n = len(candles)
    end = n - 1

    def span(first: int, last: int) -> MarketData:  # decisions first .. last-1
        return market.slice(first, last)

    if not test_fraction:
        split = round(n * (1.0 - validation_fraction))
        return MarketSplit(span(lo, max(lo, split - 1)), span(max(split, lo), end), names)
    if validation_fraction + test_fraction > 0.8:
        raise ConfigValidationError([ConfigProblem(
            "TEST_FRACTION", test_fraction, f"with VALIDATION_FRACTION={validation_fraction} leaves less than a "
            "fifth of the data to train on", f"<= {0.8 - validation_fraction:.2f}")])
    purge = warmup_bars(lookback, features)
    test_start = round(n * (1.0 - test_fraction))
    val_start = round(n * (1.0 - test_fraction - validation_fraction))
    train = span(lo, max(lo, val_start - purge))
    validation = span(max(val_start, lo), max(val_start, lo, test_start - purge))
    return MarketSplit(train, validation, names, span(max(test_start, lo), end))


def check_split(split: MarketSplit, bars: int, lookback: int) -> None:
    """Refuse data too short to leave a training, validation or test span that can be used (an empty span
    cannot be scored): DataValidationError in one line, with how to get longer spans."""
    counts = {"train": len(split.train), "validate": len(split.validation)}
    if split.test is not None:
        counts["test"] = len(split.test)
    n = bars
    for name, count in counts.items():
        if count < _MIN_SPAN_BARS:
            raise DataValidationError(
                f"the data leaves {count} bars to {name} on ({n} bars after resampling, the feature warm-up of 5 x "
                f"LOOKBACK={lookback} bars before and between the spans); at least {_MIN_SPAN_BARS} are needed: give "
                "more candles (or a finer TIMEFRAME, a shorter LOOKBACK or a smaller TEST_FRACTION)")


def positions_from_actions(actions: np.ndarray, mode: str = "long_short") -> np.ndarray:
    """Action indices (0 short, 1 flat, 2 long) to positions (-1, 0, +1; "short" is flat in long_flat mode)."""
    return POSITION_MODES[mode][actions]


def decision_rows(index: pd.DatetimeIndex, interval: int) -> np.ndarray:
    """Rows where a policy that decides every ``interval`` bars decides: bars on a grid fixed in time (a daily
    decision on hourly bars falls at midnight UTC whichever span it is in), so a span and its sub-spans agree."""
    if interval <= 1 or not len(index):
        return np.ones(len(index), dtype=bool)
    step = (index[1:] - index[:-1]).min() if len(index) > 1 else pd.Timedelta(hours=1)
    return np.asarray(index.asi8 // step.value % interval == 0)


def hold_between_decisions(positions: np.ndarray, decides: np.ndarray) -> np.ndarray:
    """Positions (..., T) held from each deciding row until the next; a span's first row always decides (a span
    starts flat and must be able to open). ``decides`` is (T,) or broadcasts to ``positions``."""
    decides = np.array(np.broadcast_to(decides, positions.shape), dtype=bool)
    if decides.all():
        return positions
    decides[..., 0] = True
    last = np.maximum.accumulate(np.where(decides, np.arange(positions.shape[-1]), 0), axis=-1)
    return np.take_along_axis(positions, last, axis=-1)


def effective_positions(positions: np.ndarray, tradable: np.ndarray | None) -> np.ndarray:
    """Positions as held: flat on bars across a gap."""
    return positions if tradable is None else positions * tradable


def turnover(positions: np.ndarray, *, close_at_end: bool = False) -> np.ndarray:
    """|change of position| at each step (..., T), from flat at the start; the closing trade added to the
    last step with ``close_at_end``."""
    previous = np.zeros_like(positions)
    previous[..., 1:] = positions[..., :-1]
    traded = np.abs(positions - previous)
    if close_at_end and traded.shape[-1]:
        traded[..., -1] += np.abs(positions[..., -1])
    return traded


def step_rewards(positions: np.ndarray, returns: np.ndarray, cost_rate: float, holding_cost: float, *,
                 tradable: np.ndarray | None = None, close_at_end: bool = False) -> np.ndarray:
    """Per-step log rewards of ``positions`` (..., T) over bars with log ``returns`` broadcast to (..., T).

    Every span starts flat, so the first step pays the cost of opening a position; with ``close_at_end``
    the last step also pays for closing it (a span ends flat). ``cost_rate`` is the fee plus slippage per
    unit change of position; on bars that are not ``tradable`` (across a gap) the position is flat.
    """
    held = effective_positions(positions, tradable)
    traded = turnover(held, close_at_end=False)
    rewards = held * returns + np.log1p(-cost_rate * traded) - holding_cost * np.abs(held)
    if close_at_end and rewards.shape[-1]:
        rewards[..., -1] += np.log1p(-cost_rate * np.abs(held[..., -1]))
    return rewards


def max_drawdown(rewards: np.ndarray) -> np.ndarray:
    """Largest fractional fall of equity from its running peak, per episode (..., T) -> (...)."""
    equity_log = np.cumsum(rewards, axis=-1)
    peak = np.maximum.accumulate(np.maximum(equity_log, 0.0), axis=-1)
    return -np.expm1(-(peak - equity_log).max(axis=-1))


def shaped_fitness(rewards: np.ndarray, drawdown_penalty: float) -> np.ndarray:
    """Episode log return minus the drawdown penalty, per episode (..., T) -> (...)."""
    total = rewards.sum(axis=-1, dtype=np.float64)
    if drawdown_penalty:
        total = total - drawdown_penalty * max_drawdown(rewards)
    return total


@dataclass(frozen=True)
class EpisodeStats:
    """What a trader reads off one episode: net (after costs) and gross figures."""

    total_return: float
    log_return: float
    sharpe: float
    max_drawdown: float
    position_changes: int  # bars where the held position changed, the closing trade included (not round trips)
    reward: float
    steps: int
    gross_return: float = 0.0
    turnover: float = 0.0
    sortino: float = 0.0


def episode_stats(
    positions: np.ndarray, returns: np.ndarray, fee_rate: float, holding_cost: float, drawdown_penalty: float,
    bars_per_year: float, *, tradable: np.ndarray | None = None, close_at_end: bool = False,
) -> EpisodeStats:
    """Statistics of one episode of positions (T,) over log returns (T,); ``fee_rate`` is the cost per unit
    change of position (fee plus slippage)."""
    rewards = step_rewards(positions, returns, fee_rate, holding_cost, tradable=tradable,
                           close_at_end=close_at_end).astype(np.float64)
    held = effective_positions(positions, tradable)
    gross = float((held * returns).astype(np.float64).sum())
    log_ret = float(rewards.sum())
    std = float(rewards.std())
    sharpe = float(rewards.mean() / std * np.sqrt(bars_per_year)) if std > 0 else 0.0
    downside = float(np.sqrt(np.mean(np.minimum(rewards, 0.0) ** 2))) if len(rewards) else 0.0
    sortino = float(rewards.mean() / downside * np.sqrt(bars_per_year)) if downside > 0 else 0.0
    traded = turnover(held, close_at_end=close_at_end)
    closing = int(close_at_end and len(held) > 0 and held[-1] != 0)  # the span's closing trade is a trade too
    return EpisodeStats(
        total_return=float(np.expm1(log_ret)),
        log_return=log_ret,
        sharpe=sharpe,
        max_drawdown=float(max_drawdown(rewards)),
        position_changes=int((turnover(held) > 0).sum()) + closing,
        reward=float(shaped_fitness(rewards, drawdown_penalty)),
        steps=len(rewards),
        gross_return=float(np.expm1(gross)),
        turnover=float(traded.sum()),
        sortino=sortino,
    )


class TradingEnv:
    """Gym-style single-member environment with the same rules, one decision per :meth:`step`; the last
    step of an episode pays its closing trade when ``close_at_end``."""

    def __init__(self, market: MarketData, fee_rate: float, holding_cost: float, *, close_at_end: bool = False,
                 position_mode: str = "long_short") -> None:
        self.market = market
        self.positions = POSITION_MODES[position_mode]
        self.fee_rate = fee_rate
        self.holding_cost = holding_cost
        self.close_at_end = close_at_end
        self._t = 0
        self._end = 0
        self._position = 0.0

    def reset(self, start: int, steps: int) -> np.ndarray:
        if start < 0 or start + steps > len(self.market):
            raise TradingEnvironmentError(f"episode {start}..{start + steps} outside the span", key="MAX_STEPS_PER_EPISODE")
        self._t, self._end, self._position = start, start + steps, 0.0
        return self.market.features[start]

    def step(self, action: int) -> tuple[np.ndarray | None, float, bool]:
        position = float(self.positions[action])
        if self.market.tradable is not None and not self.market.tradable[self._t]:
            position = 0.0  # flat across a gap
        traded = abs(position - self._position)
        reward = (
            position * float(self.market.next_log_return[self._t])
            + float(np.log1p(np.float32(-self.fee_rate * traded)))
            - self.holding_cost * abs(position)
        )
        self._position = position
        self._t += 1
        done = self._t >= self._end
        if done and self.close_at_end:
            reward += float(np.log1p(np.float32(-self.fee_rate * abs(position))))
        return (None if done else self.market.features[self._t]), reward, done
