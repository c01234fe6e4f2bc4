"""The trading environment: hand-computed rewards, statistics, and batched == one-at-a-time."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from btc_ai.domain.config import TrainingConfig
from btc_ai.domain.errors import TradingEnvironmentError
from btc_ai.domain.es import OpenAIES
from btc_ai.domain.evaluation import BatchedEvaluator, episode_starts
from btc_ai.domain.market import TradingEnv, episode_stats, max_drawdown, split_market, step_rewards
from btc_ai.domain.policy import PolicyNet, PolicySpec


def test_rewards_match_a_hand_computed_episode() -> None:
    positions = np.array([1.0, 1.0, 0.0, -1.0], dtype=np.float32)
    returns = np.array([0.01, -0.02, 0.03, -0.01], dtype=np.float32)
    fee = 0.001
    rewards = step_rewards(positions, returns, fee, 0.0)
    expected = [0.01 + math.log(1 - fee), -0.02, math.log(1 - fee), 0.01 + math.log(1 - fee)]
    np.testing.assert_allclose(rewards, expected, rtol=1e-6)


def test_flip_from_long_to_short_pays_double_fee_and_holding_cost_applies() -> None:
    rewards = step_rewards(np.array([1.0, -1.0], np.float32), np.zeros(2, np.float32), 0.001, 0.0002)
    np.testing.assert_allclose(rewards, [math.log(1 - 0.001) - 0.0002, math.log(1 - 0.002) - 0.0002], rtol=1e-6)


def test_episode_statistics() -> None:
    positions = np.array([1.0, 1.0, 1.0, 0.0], dtype=np.float32)
    returns = np.log(np.array([1.10, 0.90, 1.05, 1.20])).astype(np.float32)
    stats = episode_stats(positions, returns, 0.0, 0.0, 0.0, bars_per_year=365.0)
    assert stats.total_return == pytest.approx(1.10 * 0.90 * 1.05 - 1, rel=1e-5)
    assert stats.max_drawdown == pytest.approx(0.10, rel=1e-5)  # 1.10 -> 0.99
    assert stats.position_changes == 2  # open long, close
    rewards = np.log([1.10, 0.90, 1.05, 1.0])
    assert stats.sharpe == pytest.approx(rewards.mean() / rewards.std() * math.sqrt(365.0), rel=1e-4)


def test_max_drawdown_counts_a_loss_from_the_start() -> None:
    assert max_drawdown(np.log(np.array([0.5, 1.0]))) == pytest.approx(0.5)
    assert max_drawdown(np.log(np.array([1.1, 1.1]))) == pytest.approx(0.0)


def test_batched_evaluation_equals_the_one_member_one_step_loop(candles) -> None:
    config = TrainingConfig.from_dict({"ES_POPULATION": 6, "HIDDEN_SIZE": 16, "MAX_STEPS_PER_EPISODE": 50,
                                       "EPISODES_PER_EVAL": 2, "FEE_BPS": 5.0, "HOLDING_COST_BPS": 0.3,
                                       "NOISE_TABLE_SIZE": 1 << 16})
    split = split_market(candles, config.LOOKBACK, config.VALIDATION_FRACTION)
    spec = PolicySpec(len(split.feature_names), config.HIDDEN_SIZE, config.HIDDEN_LAYERS)
    es = OpenAIES(spec.n_params, config.ES_POPULATION, 0.5, 0.01, 0.0, config.SEED, config.NOISE_TABLE_SIZE)
    evaluator = BatchedEvaluator(es, spec, split.train, config)
    params = spec.init_params(0)
    generation = 3
    batched = evaluator.rewards(params, generation, list(range(config.ES_POPULATION)))

    starts = episode_starts(config.SEED, generation, 2, 50, len(split.train))
    member_params = es.member_params(params, es.ask(generation), np.arange(config.ES_POPULATION))
    env = TradingEnv(split.train, config.cost_rate, config.holding_cost_rate, close_at_end=True)
    for member in range(config.ES_POPULATION):
        net = PolicyNet(spec).load_flat(member_params[member])
        for e, start in enumerate(starts):
            obs, done, rewards = env.reset(int(start), 50), False, []
            while not done:
                action = int(net(torch.from_numpy(obs)[None]).argmax())
                obs, reward, done = env.step(action)
                rewards.append(reward)
            np.testing.assert_allclose(batched[member, e], rewards, rtol=1e-5, atol=1e-7)


def test_episode_outside_the_span_is_a_trading_environment_error(candles) -> None:
    split = split_market(candles, 12, 0.2)
    with pytest.raises(TradingEnvironmentError):
        split.train.windows(np.array([len(split.train) - 5]), 10)


def test_split_is_chronological_and_disjoint(candles) -> None:
    split = split_market(candles, 12, 0.25)
    assert split.train.index.max() < split.validation.index.min()
    total = len(split.train) + len(split.validation)
    assert len(split.validation) == pytest.approx(0.25 * len(candles), abs=2)
    assert total <= len(candles) - 12
