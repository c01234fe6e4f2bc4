"""Honest evaluation: a test span selection never sees, early stopping that resumes exactly, the costs an
exchange charges (fee, slippage, the closing trade), and gaps that are not one bar's return."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from conftest import TINY

from btc_ai.domain.config import TrainingConfig
from btc_ai.domain.evaluation import episode_starts, evaluate_span
from btc_ai.domain.market import episode_stats, split_market, step_rewards
from btc_ai.domain.null_check import null_percentile
from btc_ai.domain.policy import PolicySpec
from btc_ai.training import train_model
from btc_ai.training.loop import market_split

CONFIG = {**TINY, "EPISODES": 10, "EARLY_STOP_PATIENCE": 0}


@pytest.mark.slow  # trainings
def test_changing_the_test_span_changes_no_choice_of_the_training(candles) -> None:
    """Candles inside the test span only are changed: the selected (and the final) parameters stay
    bit-identical, while the test figures do change (the change was seen, by the test alone)."""
    config = TrainingConfig.from_dict(CONFIG)
    test_start = market_split(candles, config).test.index[0]
    changed = candles.copy()
    inside = changed.index >= test_start
    factor = np.random.default_rng(0).uniform(0.8, 1.25, size=inside.sum())
    for column in ("open", "high", "low", "close"):
        changed.loc[inside, column] = changed.loc[inside, column].to_numpy() * factor
    assert (changed.index < test_start).sum() > 0.8 * len(changed)  # most of the data is left as it was
    _, first, _, _ = train_model(CONFIG, candles)
    _, second, _, _ = train_model(CONFIG, changed)
    assert first["best_params_sha256"] == second["best_params_sha256"]
    assert first["final_params_sha256"] == second["final_params_sha256"]
    assert first["best_reward"] == second["best_reward"] and first["best_generation"] == second["best_generation"]
    assert first["test/buy_and_hold_return"] != second["test/buy_and_hold_return"]


def test_spans_are_in_time_order_and_apart_by_the_feature_warm_up(candles) -> None:
    split = split_market(candles, 12, 0.2, 0.15)
    assert split.train.index[-1] < split.validation.index[0] < split.validation.index[-1] < split.test.index[0]
    step = candles.index[1] - candles.index[0]
    assert split.validation.index[0] - split.train.index[-1] > 60 * step  # 5 x LOOKBACK bars apart
    assert split.test.index[0] - split.validation.index[-1] > 60 * step
    assert len(split.test) == pytest.approx(0.15 * len(candles), abs=2)


@pytest.mark.slow  # trainings
def test_early_stopping_stops_and_a_resumed_training_stops_at_the_same_generation(candles, tmp_path) -> None:
    config = {**TINY, "EPISODES": 60, "EVAL_INTERVAL": 2, "EARLY_STOP_PATIENCE": 2, "MIN_CHECKPOINT_INTERVAL": 2}
    _, whole, _, _ = train_model(config, candles)
    assert whole["stop_reason"].startswith("early stopping") and whole["generations"] < 60
    stopped_at = whole["generations"]

    class StopAt:  # an interrupt half-way, after a checkpoint
        def on_start(self, setup): ...
        def on_checkpoint(self, state, path, sha256, *, emergency): ...
        def on_generation(self, generation, metrics):
            if generation == stopped_at // 2:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_model(config, candles, tmp_path, callbacks=StopAt(), emergency_checkpoints=True)
    emergency = next(tmp_path.glob("emergency-*.pt"))
    _, resumed, _, _ = train_model(config, candles, tmp_path / "again", recovery_state=emergency)
    for key in ("generations", "stop_reason", "final_params_sha256", "best_params_sha256", "best_reward"):
        assert resumed[key] == whole[key], key
    # the last checkpoint of a stopped training says so: resuming it trains no further
    final = tmp_path / "again" / f"gen-{stopped_at:06d}.pt"
    _, again, _, _ = train_model(config, candles, recovery_state=final)
    assert again["generations"] == stopped_at and again["final_params_sha256"] == whole["final_params_sha256"]
    assert again["history"] == []


def test_costs_match_a_hand_computed_example_with_fee_slippage_and_a_closing_trade() -> None:
    config = TrainingConfig.from_dict({"FEE_BPS": 4.0, "SLIPPAGE_BPS": 1.0, "HOLDING_COST_BPS": 0.0})
    cost = 0.0005  # 4 bps fee + 1 bps slippage per unit traded
    assert config.cost_rate == pytest.approx(cost)
    positions = np.array([1.0, 1.0, -1.0, -1.0], dtype=np.float32)
    returns = np.log(np.array([1.02, 0.99, 0.97, 1.01])).astype(np.float32)
    rewards = step_rewards(positions, returns, config.cost_rate, 0.0, close_at_end=True)
    expected = [
        math.log(1.02) + math.log(1 - cost),  # open long: one unit
        math.log(0.99),
        -math.log(0.97) + math.log(1 - 2 * cost),  # long to short: two units
        -math.log(1.01) + math.log(1 - cost),  # and the closing trade of the span: one unit
    ]
    np.testing.assert_allclose(rewards, expected, rtol=1e-5)
    stats = episode_stats(positions, returns, config.cost_rate, 0.0, 0.0, 365.0, close_at_end=True)
    gross = 1.02 * 0.99 / 0.97 / 1.01
    assert stats.gross_return == pytest.approx(gross - 1, rel=1e-5)
    assert stats.total_return == pytest.approx(gross * (1 - cost) ** 2 * (1 - 2 * cost) - 1, rel=1e-5)
    assert stats.turnover == 4.0 and stats.position_changes == 3


def _candles_with_a_gap(hours: float) -> pd.DataFrame:
    index = pd.date_range("2024-01-01", periods=400, freq="5min", tz="UTC")
    index = index[:100].append(index[100:] + pd.Timedelta(hours=hours))
    close = np.full(400, 100.0)
    close[100:] = 130.0  # the price moved while there were no candles
    return pd.DataFrame({"open": close, "high": close * 1.001, "low": close * 0.999, "close": close,
                         "volume": 1.0}, index=index)


def test_a_gap_of_two_hours_is_not_one_bars_return() -> None:
    candles = _candles_with_a_gap(2.0)
    split = split_market(candles, 4, 0.5, 0.0, max_gap_bars=3)
    market = split.train
    assert market.gap_rows == 1 and split.gap_rows == 1
    gap_row = int(np.flatnonzero(~market.tradable)[0])
    assert market.next_log_return[gap_row] == pytest.approx(math.log(1.3), rel=1e-6)  # the move across the gap
    long = np.ones(len(market), dtype=np.float32)
    stats = episode_stats(long, market.next_log_return, 0.0, 0.0, 0.0, market.bars_per_year,
                          tradable=market.tradable, close_at_end=True)
    assert abs(stats.total_return) < 1e-6  # always long, but not across the gap: the 30 % is not earned
    # episodes never span the gap
    allowed = market.episode_starts_allowed(20)
    starts = episode_starts(1, 3, 500, 20, len(market), allowed)
    assert not any(s <= gap_row < s + 20 for s in starts)
    assert allowed is not None and len(allowed) == len(market) - 20 + 1 - 20
    # a short step is no gap
    assert split_market(_candles_with_a_gap(0.1), 4, 0.5, 0.0, max_gap_bars=3).train.gap_rows == 0


def test_validation_figures_and_the_null_check_of_buy_and_hold(candles) -> None:
    config = TrainingConfig.from_dict(CONFIG)
    split = market_split(candles, config)
    spec = PolicySpec(len(split.feature_names), config.HIDDEN_SIZE, config.HIDDEN_LAYERS)
    metrics = evaluate_span(spec, spec.init_params(0), split.validation, config)
    assert {"validation/score", "validation/total_return", "validation/gross_return", "validation/turnover",
            "validation/buy_and_hold_return"} <= set(metrics)
    market = split.test
    # positions held all the time (buy-and-hold-like): every shifted copy is the same, so about 50
    always = np.ones(len(market), dtype=np.float32)
    assert null_percentile(always, market.next_log_return, config.cost_rate, 0.0) == pytest.approx(50.0)
    # positions that know the next bar (look-ahead) beat every shifted copy of themselves
    cheat = np.sign(market.next_log_return).astype(np.float32)
    assert null_percentile(cheat, market.next_log_return, 0.0, 0.0) > 99.0
