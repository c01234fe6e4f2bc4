"""Population evaluation behind one small interface: parameters, generation, member indices -> fitness.

:class:`BatchedEvaluator` is the in-process default. It rebuilds every member's perturbation and the
generation's episode windows from (seed, generation, member index) alone, so a remote worker holding
the same data and config returns identical numbers for any subset of members.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch

from btc_ai.domain.baselines import RULES, baseline_stats, rule_label, rule_positions, rule_windows
from btc_ai.domain.config import ConfigProblem, TrainingConfig
from btc_ai.domain.errors import ConfigValidationError
from btc_ai.domain.es import OpenAIES
from btc_ai.domain.market import (
    MarketData,
    decision_rows,
    episode_stats,
    hold_between_decisions,
    max_drawdown,
    positions_from_actions,
    shaped_fitness,
    step_rewards,
    turnover,
)
from btc_ai.domain.metric_names import (
    METRIC_CENTRE_EXPOSURE,
    METRIC_CENTRE_FITNESS,
    METRIC_CENTRE_TURNOVER,
    METRIC_FITNESS_NOISE_STD,
    METRIC_POPULATION_EXPOSURE,
    METRIC_POPULATION_NEVER_TRADE_SHARE,
    METRIC_TEST_BARS,
    METRIC_TEST_NULL_PERCENTILE,
    METRIC_VALIDATION_SCORE,
    SPAN_TEST,
    SPAN_VALIDATION,
    baseline_metric,
    span_metric,
)
from btc_ai.domain.noise import generation_rng
from btc_ai.domain.null_check import null_percentile
from btc_ai.domain.policy import PolicySpec, batched_actions
from btc_ai.domain.trade_stats import SpanTrades, span_trades

_EPISODE_STREAM = 0xE915
_SHARPE_FLOOR = 1e-4  # per-step standard deviation below which an episode counts as riskless (a bar's fee is ~1e-3)


class PopulationEvaluator(Protocol):
    """Scores members of one generation; must be a pure function of its arguments."""

    def evaluate(self, params: np.ndarray, generation: int, members: Sequence[int]) -> np.ndarray:
        """Fitness of each listed member (float64, same order) around centre ``params``."""
        ...


def evaluation_chunks(members: Sequence[int], chunk_members: int) -> list[np.ndarray]:
    """``members`` cut into consecutive chunks of ``chunk_members`` (the last one shorter): the one unit of
    evaluation, in-process and on a cluster alike, so every member is scored in the same tensor shapes
    however chunks are spread over workers (or re-evaluated after a lost one)."""
    members = np.asarray(members, dtype=np.int64)
    return [members[lo : lo + chunk_members] for lo in range(0, len(members), chunk_members)]


def episode_starts(seed: int, generation: int, count: int, steps: int, span: int,
                   allowed: np.ndarray | None = None) -> np.ndarray:
    """First decision row of each episode of ``generation``, drawn uniformly from the training span (from
    the ``allowed`` starts, when gaps rule some out: an episode never spans a gap)."""
    last_start = span - steps
    if last_start < 0:
        raise ConfigValidationError(
            [ConfigProblem("MAX_STEPS_PER_EPISODE", steps, f"longer than the training span of {span} bars", f"<= {span}")]
        )
    rng = generation_rng(seed, generation, _EPISODE_STREAM)
    if allowed is None:
        return rng.integers(0, last_start + 1, size=count)
    if not len(allowed):
        raise ConfigValidationError([ConfigProblem(
            "MAX_STEPS_PER_EPISODE", steps, "no window of this many bars of the training span is free of gaps in the "
            "data", "shorter, or a larger MAX_GAP_BARS")])
    return allowed[rng.integers(0, len(allowed), size=count)]


@dataclass
class BatchedEvaluator:
    """Evaluates members in batched tensor operations on the training span (the default evaluator)."""

    es: OpenAIES
    spec: PolicySpec
    market: MarketData
    config: TrainingConfig
    _activity: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self._features = torch.from_numpy(np.ascontiguousarray(self.market.features))
        self._allowed = self.market.episode_starts_allowed(self.config.MAX_STEPS_PER_EPISODE)
        self._decides = decision_rows(self.market.index, self.config.DECISION_INTERVAL)

    def starts(self, generation: int) -> np.ndarray:
        return episode_starts(self.config.SEED, generation, self.config.EPISODES_PER_EVAL,
                              self.config.MAX_STEPS_PER_EPISODE, len(self.market), self._allowed)

    def windows(self, generation: int) -> tuple[torch.Tensor, np.ndarray]:
        inputs, returns = self.market.windows(self.starts(generation), self.config.MAX_STEPS_PER_EPISODE)
        return torch.from_numpy(inputs), returns

    def positions(self, params: np.ndarray, generation: int, members: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Positions (members, episodes, steps) and the episodes' log returns (episodes, steps)."""
        perturbations = self.es.ask(generation)
        member_params = torch.from_numpy(self.es.member_params(params, perturbations, np.asarray(members)))
        return self._positions_of(member_params, generation)

    def _positions_of(self, flat_params: torch.Tensor, generation: int) -> tuple[np.ndarray, np.ndarray]:
        """Positions (policies, episodes, steps) of the (policies, n_params) ``flat_params`` on the generation's
        windows, and the windows' log returns (episodes, steps)."""
        inputs, returns = self.windows(generation)
        actions = batched_actions(self.spec, flat_params, inputs).numpy()
        positions = positions_from_actions(actions, self.config.POSITION_MODE).reshape(len(flat_params), *returns.shape)
        if self.config.DECISION_INTERVAL > 1:
            rows = self.starts(generation)[:, None] + np.arange(returns.shape[1])[None, :]
            positions = hold_between_decisions(positions, self._decides[rows])
        return positions, returns

    def rewards(self, params: np.ndarray, generation: int, members: Sequence[int]) -> np.ndarray:
        """Per-step rewards (members, episodes, steps) float32, after costs and each episode's closing trade."""
        positions, returns = self.positions(params, generation, members)
        return step_rewards(positions, returns[None], self.config.cost_rate, self.config.holding_cost_rate,
                            close_at_end=True)

    def evaluate(self, params: np.ndarray, generation: int, members: Sequence[int]) -> np.ndarray:
        chunks = evaluation_chunks(members, self.config.RAY_CHUNK_MEMBERS)
        scores = [self.score_chunk(params, generation, chunk) for chunk in chunks]
        return self.keep_activity(scores[0] if len(scores) == 1 else np.concatenate(scores))

    def keep_activity(self, scores: np.ndarray) -> np.ndarray:
        """The fitness column of a generation's :meth:`score_chunk` rows; the rest is kept for
        :meth:`generation_metrics`."""
        self._activity = scores[:, 1:]
        return np.ascontiguousarray(scores[:, 0])

    def generation_metrics(self) -> dict[str, float]:
        """What the population did in the last evaluated generation (see :func:`activity_metrics`)."""
        activity, self._activity = self._activity, None
        return activity_metrics(activity) if activity is not None else {}

    def evaluate_chunk(self, params: np.ndarray, generation: int, members: Sequence[int]) -> np.ndarray:
        """Fitness of one chunk of members (see :func:`evaluation_chunks`)."""
        return np.ascontiguousarray(self.score_chunk(params, generation, members)[:, 0])

    def score_chunk(self, params: np.ndarray, generation: int, members: Sequence[int]) -> np.ndarray:
        """(members, 3) float64 of one chunk: fitness, trades per episode and exposure (mean |position|), one
        row per member: the one unit a worker returns, so local and cluster runs see the same numbers."""
        positions, returns = self.positions(params, generation, members)
        fitness = self.episode_fitness(positions, returns).mean(axis=-1)
        trades = ((turnover(positions) > 0).sum(axis=-1) + (positions[..., -1] != 0)).mean(axis=-1)  # as episode_stats
        exposure = np.abs(positions).mean(axis=(-2, -1))
        return np.stack([fitness, trades.astype(np.float64), exposure.astype(np.float64)], axis=1)

    def episode_fitness(self, positions: np.ndarray, returns: np.ndarray) -> np.ndarray:
        """Shaped fitness (members, episodes) of positions (members, episodes, steps) over the episodes' returns."""
        rewards = step_rewards(positions, returns[None], self.config.cost_rate, self.config.holding_cost_rate,
                               close_at_end=True)
        if self.config.FITNESS == "sharpe":
            return episode_sharpe_fitness(rewards, positions, self.config)
        fitness = shaped_fitness(rewards, self.config.DRAWDOWN_PENALTY)
        if self.config.TURNOVER_PENALTY_BPS:  # shaping against churn: the training's fitness only
            fitness = fitness - self.config.turnover_penalty_rate * turnover(positions, close_at_end=True).sum(axis=-1)
        return fitness

    def centre_metrics(self, params: np.ndarray, generation: int) -> dict[str, float]:
        """The centre policy on the generation's own windows: its fitness, exposure and turnover per episode, and
        the noise of one member's fitness from the choice of windows (the spread of the centre's per-episode
        fitness over sqrt(episodes)), against which ``fitness/std`` across members is the signal."""
        positions, returns = self._positions_of(torch.from_numpy(np.array(params, dtype=np.float32)[None]), generation)
        fitness = self.episode_fitness(positions, returns)[0]
        metrics = {METRIC_CENTRE_FITNESS: float(fitness.mean()), METRIC_CENTRE_EXPOSURE: float(np.abs(positions).mean()),
                   METRIC_CENTRE_TURNOVER: float(turnover(positions, close_at_end=True).sum(axis=-1).mean())}
        if len(fitness) > 1:
            metrics[METRIC_FITNESS_NOISE_STD] = float(fitness.std(ddof=1) / np.sqrt(len(fitness)))
        return metrics

    @property
    def steps_per_member(self) -> int:
        return self.config.EPISODES_PER_EVAL * self.config.MAX_STEPS_PER_EPISODE


def activity_metrics(activity: np.ndarray) -> dict[str, float]:
    """A generation's population at a glance from its (members, 2) trades per episode and exposure: the
    share of members that never trade (a population collapsing to flat) and the mean exposure."""
    return {METRIC_POPULATION_NEVER_TRADE_SHARE: float((activity[:, 0] == 0).mean()),
            METRIC_POPULATION_EXPOSURE: float(activity[:, 1].mean())}


def episode_sharpe_fitness(rewards: np.ndarray, positions: np.ndarray, config: TrainingConfig) -> np.ndarray:
    """FITNESS=sharpe: each episode's Sharpe ratio (mean over standard deviation of its per-step rewards, turnover
    penalty included, times sqrt(steps)) less the drawdown penalty. A calm week and a wild one weigh alike, so the
    few most volatile windows do not decide the ranking; flat scores 0."""
    shaped = rewards.astype(np.float64) - config.turnover_penalty_rate * turnover(positions, close_at_end=True)
    sharpe = shaped.mean(axis=-1) / (shaped.std(axis=-1) + _SHARPE_FLOOR) * np.sqrt(shaped.shape[-1])
    if config.DRAWDOWN_PENALTY:
        sharpe = sharpe - config.DRAWDOWN_PENALTY * max_drawdown(rewards)
    return sharpe


def policy_positions(spec: PolicySpec, params: np.ndarray, market: MarketData, config: TrainingConfig) -> np.ndarray:
    """Positions of one policy at every decision row of ``market`` (the span's first row decides)."""
    flat = torch.from_numpy(np.array(params, dtype=np.float32)).unsqueeze(0)
    actions = batched_actions(spec, flat, torch.from_numpy(np.ascontiguousarray(market.features)))[0].numpy()
    positions = positions_from_actions(actions, config.POSITION_MODE)
    return hold_between_decisions(positions, decision_rows(market.index, config.DECISION_INTERVAL))


def evaluate_span(spec: PolicySpec, params: np.ndarray, market: MarketData, config: TrainingConfig,
                  span: str = SPAN_VALIDATION) -> dict[str, float]:
    """One policy traded over a whole span from flat to flat, with buy-and-hold (and flat, 0 by definition)
    over the same span after the same costs. Metrics are named ``<span>/...``; the validation span's
    ``score`` (the mean reward of its VALIDATION_WINDOWS windows) is what selection compares."""
    positions = policy_positions(spec, params, market, config)
    stats, hold = _span_stats(positions, market, config)
    metrics = {span_metric(span, k): v for k, v in (
        ("total_return", stats.total_return), ("sharpe", stats.sharpe), ("max_drawdown", stats.max_drawdown),
        ("position_changes", float(stats.position_changes)), ("reward", stats.reward), ("gross_return", stats.gross_return),
        ("turnover", stats.turnover), ("sortino", stats.sortino), ("buy_and_hold_return", hold.total_return),
        ("buy_and_hold_sharpe", hold.sharpe), ("long_share", float((positions > 0).mean())),
        ("short_share", float((positions < 0).mean())))}
    if span == SPAN_VALIDATION:
        metrics[METRIC_VALIDATION_SCORE] = selection_score(positions, market, config)
    return metrics


def _span_stats(positions: np.ndarray, market: MarketData, config: TrainingConfig) -> tuple[Any, Any]:
    returns = market.next_log_return
    stats = episode_stats(positions, returns, config.cost_rate, config.holding_cost_rate, config.DRAWDOWN_PENALTY,
                          market.bars_per_year, tradable=market.tradable, close_at_end=True)
    hold = episode_stats(np.ones_like(positions), returns, config.cost_rate, config.holding_cost_rate, 0.0,
                         market.bars_per_year, tradable=market.tradable, close_at_end=True)
    return stats, hold


BASELINE_FIGURES = ("total_return", "gross_return", "sharpe", "sortino", "max_drawdown", "position_changes",
                    "turnover")


def baseline_metrics(market: MarketData, config: TrainingConfig, span: str = SPAN_TEST) -> dict[str, float]:
    """The rule baselines over ``market`` with the policy's costs, as ``baseline/<rule>/<figure>`` for the test
    span and ``baseline/<rule>/<span>_<figure>`` for another (as ``best/validation_<figure>`` names the policy's)."""
    stats = baseline_stats(market, config.cost_rate, config.holding_cost_rate, config.DRAWDOWN_PENALTY)
    return {baseline_metric(rule, figure, span): float(getattr(stats[rule], figure))
            for rule in RULES for figure in BASELINE_FIGURES}


def selection_score(positions: np.ndarray, market: MarketData, config: TrainingConfig) -> float:
    """The mean shaped reward of the span cut into VALIDATION_WINDOWS windows, each from flat to flat: a
    policy that is good in one stretch only scores lower than one that holds up across the span."""
    edges = np.linspace(0, len(positions), config.VALIDATION_WINDOWS + 1).round().astype(int)
    rewards = []
    for lo, hi in itertools.pairwise(edges):
        if hi > lo:
            window = market.slice(lo, hi)
            rewards.append(episode_stats(positions[lo:hi], window.next_log_return, config.cost_rate,
                                         config.holding_cost_rate, config.DRAWDOWN_PENALTY, window.bars_per_year,
                                         tradable=window.tradable, close_at_end=True).reward)
    return float(np.mean(rewards))


@dataclass(frozen=True)
class EquityCurve:
    """One policy's equity bar by bar over a span, beside buy-and-hold and the other rule baselines (flat
    stays at 1.0).

    Point 0 is the span's start (1.0); point t+1 is the equity after decision t is held over its bar,
    so ``equity[-1] - 1`` is the span's total return as :func:`evaluate_span` reports it.
    """

    index: pd.DatetimeIndex  # n + 1 timestamps: each decision row, then one bar after the last
    equity: np.ndarray  # (n + 1,) float64
    buy_and_hold: np.ndarray  # (n + 1,) float64, paying the costs of the opening buy and closing sale
    positions: np.ndarray  # (n,) the policy's positions (-1, 0, +1)
    rules: Mapping[str, np.ndarray] = field(default_factory=dict)  # label (SMA 24/168, ...) -> that rule's equity
    trades: SpanTrades | None = field(default=None, repr=False)  # the policy's round trips, equity and statistics

    @property
    def total_return(self) -> float:
        return float(self.equity[-1] - 1.0)


def equity_curve(spec: PolicySpec, params: np.ndarray, market: MarketData, config: TrainingConfig) -> EquityCurve:
    """The per-bar record behind :func:`evaluate_span`: same positions, same rewards, same fees."""
    positions = policy_positions(spec, params, market, config)
    returns = market.next_log_return
    rewards = step_rewards(positions, returns, config.cost_rate, config.holding_cost_rate, tradable=market.tradable,
                           close_at_end=True).astype(np.float64)
    windows = rule_windows(market.bars_per_year)

    def rule_equity(rule: str) -> np.ndarray:
        rewards = step_rewards(rule_positions(rule, market, windows), returns, config.cost_rate,
                               config.holding_cost_rate, tradable=market.tradable, close_at_end=True)
        return np.exp(np.concatenate([[0.0], np.cumsum(rewards.astype(np.float64))]))

    index = market.index
    step = index[-1] - index[-2] if len(index) > 1 else pd.Timedelta(config.TIMEFRAME)
    return EquityCurve(
        index=index.append(pd.DatetimeIndex([index[-1] + step])) if len(index) else index,
        equity=np.exp(np.concatenate([[0.0], np.cumsum(rewards)])),
        buy_and_hold=rule_equity("buy_and_hold"),
        positions=positions,
        rules={rule_label(rule, windows): rule_equity(rule) for rule in ("sma_crossover", "momentum")},
        trades=span_trades(positions, market, config.cost_rate, config.holding_cost_rate),
    )


def trade_metrics(positions: np.ndarray, market: MarketData, config: TrainingConfig,
                  span: str = SPAN_TEST) -> dict[str, float]:
    """The round trips' and equity curve's statistics of ``positions`` over ``market`` as ``<span>/<figure>``
    (:data:`btc_ai.domain.trade_stats.STATISTICS`; Sharpe, Sortino and max drawdown equal the span's own)."""
    stats = span_trades(positions, market, config.cost_rate, config.holding_cost_rate).statistics
    return {span_metric(span, k): v for k, v in stats.items()}


def score_test_span(spec: PolicySpec, params: np.ndarray, market: MarketData, config: TrainingConfig) -> dict[str, Any]:
    """The out-of-sample figures of one policy: the test span's statistics, buy-and-hold over it, and the
    null check (the percentile of its return among time-shifted copies of its own positions)."""
    positions = policy_positions(spec, params, market, config)
    metrics: dict[str, Any] = {**evaluate_span(spec, params, market, config, SPAN_TEST),
                                **trade_metrics(positions, market, config), **baseline_metrics(market, config)}
    metrics[METRIC_TEST_NULL_PERCENTILE] = null_percentile(positions, market.next_log_return, config.cost_rate,
                                                      config.holding_cost_rate, tradable=market.tradable)
    metrics[METRIC_TEST_BARS] = float(len(market))
    metrics["test_span"] = f"{market.index[0]:%Y-%m-%d %H:%M} .. {market.index[-1]:%Y-%m-%d %H:%M} UTC" if len(market) else ""
    return metrics
