"""Population evaluation behind one small interface: parameters, generation, member indices -> fitness.

:class:`BatchedEvaluator` is the in-process default. It rebuilds every member's perturbation and the
generation's episode windows from (seed, generation, member index) alone, so a remote worker holding
the same data and config returns identical numbers for any subset of members.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd
import torch

from btc_ai.domain.config import ConfigProblem, TrainingConfig
from btc_ai.domain.errors import ConfigValidationError
from btc_ai.domain.es import OpenAIES
from btc_ai.domain.market import (
    MarketData,
    episode_stats,
    positions_from_actions,
    shaped_fitness,
    step_rewards,
)
from btc_ai.domain.noise import generation_rng
from btc_ai.domain.policy import PolicySpec, batched_actions

_EPISODE_STREAM = 0xE915


class PopulationEvaluator(Protocol):
    """Scores members of one generation; must be a pure function of its arguments."""

    def evaluate(self, params: np.ndarray, generation: int, members: Sequence[int]) -> np.ndarray:
        """Fitness of each listed member (float64, same order) around centre ``params``."""
        ...


def episode_starts(seed: int, generation: int, count: int, steps: int, span: int) -> np.ndarray:
    """First decision row of each episode of ``generation``, drawn uniformly from the training span."""
    last_start = span - steps
    if last_start < 0:
        raise ConfigValidationError(
            [ConfigProblem("MAX_STEPS_PER_EPISODE", steps, f"longer than the training span of {span} bars", f"<= {span}")]
        )
    return generation_rng(seed, generation, _EPISODE_STREAM).integers(0, last_start + 1, size=count)


@dataclass
class BatchedEvaluator:
    """Evaluates members in batched tensor operations on the training span (the default evaluator)."""

    es: OpenAIES
    spec: PolicySpec
    market: MarketData
    config: TrainingConfig

    def __post_init__(self) -> None:
        self._features = torch.from_numpy(np.ascontiguousarray(self.market.features))

    def windows(self, generation: int) -> tuple[torch.Tensor, np.ndarray]:
        starts = episode_starts(
            self.config.SEED, generation, self.config.EPISODES_PER_EVAL, self.config.MAX_STEPS_PER_EPISODE, len(self.market)
        )
        inputs, returns = self.market.windows(starts, self.config.MAX_STEPS_PER_EPISODE)
        return torch.from_numpy(inputs), returns

    def rewards(self, params: np.ndarray, generation: int, members: Sequence[int]) -> np.ndarray:
        """Per-step rewards (members, episodes, steps) float32."""
        perturbations = self.es.ask(generation)
        member_params = torch.from_numpy(self.es.member_params(params, perturbations, np.asarray(members)))
        inputs, returns = self.windows(generation)
        actions = batched_actions(self.spec, member_params, inputs).numpy()
        positions = positions_from_actions(actions).reshape(len(members), *returns.shape)
        return step_rewards(positions, returns[None], self.config.fee_rate, self.config.holding_cost_rate)

    def evaluate(self, params: np.ndarray, generation: int, members: Sequence[int]) -> np.ndarray:
        rewards = self.rewards(params, generation, members)
        return shaped_fitness(rewards, self.config.DRAWDOWN_PENALTY).mean(axis=-1)

    @property
    def steps_per_member(self) -> int:
        return self.config.EPISODES_PER_EVAL * self.config.MAX_STEPS_PER_EPISODE


def policy_positions(spec: PolicySpec, params: np.ndarray, market: MarketData) -> np.ndarray:
    """Positions of one policy at every decision row of ``market``."""
    flat = torch.from_numpy(np.array(params, dtype=np.float32)).unsqueeze(0)
    actions = batched_actions(spec, flat, torch.from_numpy(np.ascontiguousarray(market.features)))[0].numpy()
    return positions_from_actions(actions)


def evaluate_span(spec: PolicySpec, params: np.ndarray, market: MarketData, config: TrainingConfig) -> dict[str, float]:
    """One policy traded over a whole span (validation), with buy-and-hold and flat for comparison."""
    positions = policy_positions(spec, params, market)
    returns = market.next_log_return
    stats = episode_stats(
        positions, returns, config.fee_rate, config.holding_cost_rate, config.DRAWDOWN_PENALTY, market.bars_per_year
    )
    hold = episode_stats(np.ones_like(positions), returns, config.fee_rate, 0.0, 0.0, market.bars_per_year)
    metrics = stats.as_metrics("validation")
    del metrics["validation/log_return"], metrics["validation/steps"]  # derivable: kept out of the store
    metrics["validation/buy_and_hold_return"] = hold.total_return  # flat is 0 by definition
    metrics["validation/long_share"] = float((positions > 0).mean())
    metrics["validation/short_share"] = float((positions < 0).mean())
    return metrics


@dataclass(frozen=True)
class EquityCurve:
    """One policy's equity bar by bar over a span, beside buy-and-hold (flat stays at 1.0).

    Point 0 is the span's start (1.0); point t+1 is the equity after decision t is held over its bar,
    so ``equity[-1] - 1`` is the span's total return as :func:`evaluate_span` reports it.
    """

    index: pd.DatetimeIndex  # n + 1 timestamps: each decision row, then one bar after the last
    equity: np.ndarray  # (n + 1,) float64
    buy_and_hold: np.ndarray  # (n + 1,) float64, paying the fee of the opening buy like the metric
    positions: np.ndarray  # (n,) the policy's positions (-1, 0, +1)

    @property
    def total_return(self) -> float:
        return float(self.equity[-1] - 1.0)


def equity_curve(spec: PolicySpec, params: np.ndarray, market: MarketData, config: TrainingConfig) -> EquityCurve:
    """The per-bar record behind :func:`evaluate_span`: same positions, same rewards, same fees."""
    positions = policy_positions(spec, params, market)
    returns = market.next_log_return
    rewards = step_rewards(positions, returns, config.fee_rate, config.holding_cost_rate).astype(np.float64)
    hold = step_rewards(np.ones_like(positions), returns, config.fee_rate, 0.0).astype(np.float64)
    index = market.index
    step = index[-1] - index[-2] if len(index) > 1 else pd.Timedelta(config.TIMEFRAME)
    return EquityCurve(
        index=index.append(pd.DatetimeIndex([index[-1] + step])) if len(index) else index,
        equity=np.exp(np.concatenate([[0.0], np.cumsum(rewards)])),
        buy_and_hold=np.exp(np.concatenate([[0.0], np.cumsum(hold)])),
        positions=positions,
    )
