"""The trading environment: rewards of short/flat/long positions, vectorised over a whole population.

A decision at bar t is taken on features known at the close of bar t and held over bar t+1; each
change of position pays the fee. Reward = position x log return + log(1 - fee x |change|) - holding
cost. The gym-style :class:`TradingEnv` steps the same rules one decision at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from btc_ai.domain.errors import TradingEnvironmentError
from btc_ai.domain.features import compute_features

ACTIONS = np.array([-1.0, 0.0, 1.0], dtype=np.float32)  # action index -> position (short, flat, long)
_YEAR = pd.Timedelta(days=365)


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

    def __len__(self) -> int:
        return len(self.next_log_return)

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
    """The chronological train/validation split of one candle series."""

    train: MarketData
    validation: MarketData
    feature_names: tuple[str, ...]


def split_market(candles: pd.DataFrame, lookback: int, validation_fraction: float) -> MarketSplit:
    """Features on the whole series (causal), then train = older part, validation = newest part."""
    feats = compute_features(candles, lookback)
    close = candles["close"].to_numpy(np.float64)
    index = pd.DatetimeIndex(candles.index)
    log_close = np.log(close)
    next_ret = np.diff(log_close).astype(np.float32)  # decision rows 0 .. n-2
    n = len(close)
    split = round(n * (1.0 - validation_fraction))
    step = (index[1:] - index[:-1]).min() if n > 1 else pd.Timedelta(minutes=5)
    bars_per_year = _YEAR / step

    def span(lo: int, hi: int) -> MarketData:
        # decisions lo .. hi-1, each earning the return into the next bar
        return MarketData(
            features=feats.values[lo:hi],
            next_log_return=next_ret[lo:hi],
            close=close[lo : hi + 1],
            index=index[lo:hi],
            bars_per_year=float(bars_per_year),
        )

    lo = feats.valid_from
    train_hi = max(lo, split - 1)
    return MarketSplit(span(lo, train_hi), span(max(split, lo), n - 1), feats.names)


def positions_from_actions(actions: np.ndarray) -> np.ndarray:
    """Action indices (0 short, 1 flat, 2 long) to positions (-1, 0, +1)."""
    return ACTIONS[actions]


def step_rewards(positions: np.ndarray, returns: np.ndarray, fee_rate: float, holding_cost: float) -> np.ndarray:
    """Per-step log rewards of ``positions`` (..., T) over bars with log ``returns`` broadcast to (..., T).

    Every episode starts flat, so the first step pays the fee of opening a position.
    """
    previous = np.zeros_like(positions)
    previous[..., 1:] = positions[..., :-1]
    turnover = np.abs(positions - previous)
    return positions * returns + np.log1p(-fee_rate * turnover) - holding_cost * np.abs(positions)


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
    """What a trader reads off one episode."""

    total_return: float
    log_return: float
    sharpe: float
    max_drawdown: float
    trades: int
    reward: float
    steps: int

    def as_metrics(self, prefix: str) -> dict[str, float]:
        return {f"{prefix}/{k}": float(v) for k, v in self.__dict__.items()}


def episode_stats(
    positions: np.ndarray, returns: np.ndarray, fee_rate: float, holding_cost: float, drawdown_penalty: float,
    bars_per_year: float,
) -> EpisodeStats:
    """Statistics of one episode of positions (T,) over log returns (T,)."""
    rewards = step_rewards(positions, returns, fee_rate, holding_cost).astype(np.float64)
    log_ret = float(rewards.sum())
    std = float(rewards.std())
    sharpe = float(rewards.mean() / std * np.sqrt(bars_per_year)) if std > 0 else 0.0
    changes = np.abs(np.diff(np.concatenate([[0.0], positions]))) > 0
    return EpisodeStats(
        total_return=float(np.expm1(log_ret)),
        log_return=log_ret,
        sharpe=sharpe,
        max_drawdown=float(max_drawdown(rewards)),
        trades=int(changes.sum()),
        reward=float(shaped_fitness(rewards, drawdown_penalty)),
        steps=len(rewards),
    )


class TradingEnv:
    """Gym-style single-member environment with the same rules, one decision per :meth:`step`."""

    def __init__(self, market: MarketData, fee_rate: float, holding_cost: float) -> None:
        self.market = market
        self.fee_rate = fee_rate
        self.holding_cost = holding_cost
        self._t = 0
        self._end = 0
        self._position = 0.0

    def reset(self, start: int, steps: int) -> np.ndarray:
        if start < 0 or start + steps > len(self.market):
            raise TradingEnvironmentError(f"episode {start}..{start + steps} outside the span", key="MAX_STEPS_PER_EPISODE")
        self._t, self._end, self._position = start, start + steps, 0.0
        return self.market.features[start]

    def step(self, action: int) -> tuple[np.ndarray | None, float, bool]:
        position = float(ACTIONS[action])
        turnover = abs(position - self._position)
        reward = (
            position * float(self.market.next_log_return[self._t])
            + float(np.log1p(np.float32(-self.fee_rate * turnover)))
            - self.holding_cost * abs(position)
        )
        self._position = position
        self._t += 1
        done = self._t >= self._end
        return (None if done else self.market.features[self._t]), reward, done
