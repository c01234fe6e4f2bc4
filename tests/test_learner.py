"""The learner's options (issue 22): trend features, long-or-flat positions, decisions every N bars. Each must stay
causal, be scored the same by the batched evaluator, the one-step environment and the backtest of a saved policy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from btc_ai.domain.config import STRUCTURAL_KEYS, TrainingConfig
from btc_ai.domain.errors import ConfigValidationError
from btc_ai.domain.es import OpenAIES
from btc_ai.domain.evaluation import BatchedEvaluator, episode_starts, policy_positions
from btc_ai.domain.features import CLIP, compute_features, feature_names, warmup_bars
from btc_ai.domain.market import TradingEnv, decision_rows, hold_between_decisions, split_market
from btc_ai.domain.policy import PolicyNet, PolicySpec
from btc_ai.domain.shapes import n_features


def test_trend_features_never_look_ahead(candles) -> None:
    base = compute_features(candles, 12, "trend")
    rng = np.random.default_rng(1)
    for t in (150, 2500, len(candles) - 2):
        changed = candles.copy()
        factor = np.exp(rng.normal(0, 0.01, len(candles) - t - 1))
        for column in ("open", "high", "low", "close"):
            changed.iloc[t + 1 :, changed.columns.get_loc(column)] *= factor
        other = compute_features(changed, 12, "trend")
        np.testing.assert_array_equal(base.values[: t + 1], other.values[: t + 1])
        assert not np.array_equal(base.values[t + 1 :, -3:], other.values[t + 1 :, -3:])


def test_trend_features_are_finite_bounded_named_and_live(candles) -> None:
    feats = compute_features(candles, 12, "trend")
    assert feats.values.shape == (len(candles), n_features(12, "trend")) == (len(candles), len(feature_names(12, "trend")))
    assert feats.names[:-3] == feature_names(12) and feats.valid_from == warmup_bars(12, "trend") == 8 * 12
    assert np.isfinite(feats.values).all() and np.abs(feats.values).max() <= CLIP
    assert (feats.values[feats.valid_from :].std(axis=0) > 0).all()
    np.testing.assert_array_equal(feats.values[:, :-3], compute_features(candles, 12).values *
                                  (np.arange(len(candles)) >= feats.valid_from)[:, None])


def test_the_new_keys_are_checked_and_features_fix_the_network_shape() -> None:
    for key, bad in (("POSITION_MODE", "short_only"), ("FEATURES", "magic"), ("DECISION_INTERVAL", 0)):
        with pytest.raises(ConfigValidationError, match=key):
            TrainingConfig.from_dict({key: bad})
    assert TrainingConfig.from_dict({"position-mode": "LONG_FLAT"}).POSITION_MODE == "long_flat"
    assert "FEATURES" in STRUCTURAL_KEYS


@pytest.mark.parametrize("mode", ["long_flat", "long_short"])
def test_batched_evaluation_equals_the_one_step_loop_in_each_position_mode(candles, mode) -> None:
    config = TrainingConfig.from_dict({"ES_POPULATION": 6, "HIDDEN_SIZE": 16, "MAX_STEPS_PER_EPISODE": 40,
                                       "EPISODES_PER_EVAL": 2, "HOLDING_COST_BPS": 0.3, "POSITION_MODE": mode,
                                       "FEATURES": "trend", "NOISE_TABLE_SIZE": 1 << 16})
    split = split_market(candles, config.LOOKBACK, config.VALIDATION_FRACTION, features=config.FEATURES)
    spec = PolicySpec(len(split.feature_names), config.HIDDEN_SIZE, config.HIDDEN_LAYERS)
    es = OpenAIES(spec.n_params, config.ES_POPULATION, 0.5, 0.01, 0.0, config.SEED, config.NOISE_TABLE_SIZE)
    evaluator = BatchedEvaluator(es, spec, split.train, config)
    members = list(range(config.ES_POPULATION))
    positions, _ = evaluator.positions(spec.init_params(0), 2, members)
    assert (positions.min() >= 0) == (mode == "long_flat") and positions.max() == 1
    batched = evaluator.rewards(spec.init_params(0), 2, members)
    starts = episode_starts(config.SEED, 2, 2, 40, len(split.train))
    env = TradingEnv(split.train, config.cost_rate, config.holding_cost_rate, close_at_end=True, position_mode=mode)
    params = es.member_params(spec.init_params(0), es.ask(2), np.arange(config.ES_POPULATION))
    for member in members:
        net = PolicyNet(spec).load_flat(params[member])
        for e, start in enumerate(starts):
            obs, done, rewards = env.reset(int(start), 40), False, []
            while not done:
                obs, reward, done = env.step(int(net(torch.from_numpy(obs)[None]).argmax()))
                rewards.append(reward)
            np.testing.assert_allclose(batched[member, e], rewards, rtol=1e-5, atol=1e-7)


def test_a_policy_deciding_every_n_bars_changes_position_only_on_its_grid(candles) -> None:
    config = TrainingConfig.from_dict({"ES_POPULATION": 4, "HIDDEN_SIZE": 16, "MAX_STEPS_PER_EPISODE": 60,
                                       "EPISODES_PER_EVAL": 3, "DECISION_INTERVAL": 12, "NOISE_TABLE_SIZE": 1 << 16})
    split = split_market(candles, config.LOOKBACK, config.VALIDATION_FRACTION)
    spec = PolicySpec(len(split.feature_names), config.HIDDEN_SIZE, config.HIDDEN_LAYERS)
    es = OpenAIES(spec.n_params, config.ES_POPULATION, 2.0, 0.01, 0.0, config.SEED, config.NOISE_TABLE_SIZE)
    evaluator = BatchedEvaluator(es, spec, split.train, config)
    positions, _ = evaluator.positions(spec.init_params(0), 0, range(4))
    every_bar, _ = BatchedEvaluator(es, spec, split.train, config.replace(DECISION_INTERVAL=1)).positions(
        spec.init_params(0), 0, range(4))
    grid = decision_rows(split.train.index, 12)
    rows = evaluator.starts(0)[:, None] + np.arange(60)[None, :]
    decides = grid[rows]
    decides[:, 0] = True
    changed = np.diff(positions, axis=-1) != 0
    assert changed.any() and not (changed & ~decides[None, :, 1:]).any()
    np.testing.assert_array_equal(positions[..., decides], every_bar[..., decides])  # the network decides there
    assert (np.diff(every_bar, axis=-1) != 0).sum() > changed.sum()
    # a span and a later span starting on the grid hold the same positions: the grid is fixed in time
    whole = policy_positions(spec, spec.init_params(5), split.validation, config)
    first = int(np.flatnonzero(decision_rows(split.validation.index, 12))[3])
    np.testing.assert_array_equal(whole[first:], policy_positions(spec, spec.init_params(5),
                                                                  split.validation.slice(first, len(whole)), config))
    np.testing.assert_array_equal(hold_between_decisions(np.arange(5.0), np.zeros(5, bool)), np.zeros(5))


def test_a_saved_policy_backtests_to_the_trainings_own_test_figures_with_every_option(candles, tiny) -> None:
    from btc_ai.domain.backtest import backtest_policy
    from btc_ai.domain.policy_files import PolicyCard
    from btc_ai.training import train_model
    from btc_ai.training.loop import market_split

    values = {**tiny, "POSITION_MODE": "long_flat", "FEATURES": "trend", "DECISION_INTERVAL": 6,
              "TEST_FRACTION": 0.2, "NOISE_TABLE_SIZE": 1 << 17}
    net, metrics, _, _ = train_model(values, candles)
    config = TrainingConfig.from_dict(values)
    test = market_split(candles, config).test
    done = backtest_policy(net, PolicyCard.of(config), candles, start=test.index[0],
                           end=test.index[-1] + (candles.index[1] - candles.index[0]))
    for key in ("total_return", "position_changes", "turnover", "sharpe"):
        assert done.figures[key] == pytest.approx(metrics["test/" + key], rel=1e-9, abs=1e-12), key
    assert metrics["test/short_share"] == 0.0


def test_sharpe_fitness_weighs_calm_and_wild_episodes_alike_and_flat_scores_zero() -> None:
    from btc_ai.domain.evaluation import episode_sharpe_fitness
    from btc_ai.domain.market import step_rewards

    config = TrainingConfig.from_dict({"FITNESS": "sharpe", "FEE_BPS": 0, "SLIPPAGE_BPS": 0, "TURNOVER_PENALTY_BPS": 0,
                                       "DRAWDOWN_PENALTY": 0, "HOLDING_COST_BPS": 0})
    returns = np.random.default_rng(0).normal(0.001, 0.01, (2, 50)).astype(np.float32)
    returns[1] = returns[0] * 4  # the same week, four times as wild
    positions = np.stack([np.ones((2, 50)), np.zeros((2, 50))]).astype(np.float32)  # members: long, flat
    rewards = step_rewards(positions, returns[None], 0.0, 0.0, close_at_end=True)
    fitness = episode_sharpe_fitness(rewards, positions, config)
    assert fitness[0, 0] == pytest.approx(fitness[0, 1], rel=0.02) and fitness[0, 0] > 0  # the floor aside
    np.testing.assert_array_equal(fitness[1], [0.0, 0.0])
