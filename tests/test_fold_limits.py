"""Walk-forward folds too short to trade one episode are refused before anything is made: 50 folds on a
week of 5-minute bars (100-minute test blocks against one-day episodes) is one line, exit 2, naming the
most folds (or the data) that fit."""

from __future__ import annotations

import pytest
from conftest import tiny_flags, write_binance_csv

from btc_ai.domain.config import TrainingConfig
from btc_ai.domain.data import load_candles
from btc_ai.domain.errors import DataValidationError
from btc_ai.domain.folds import plan_folds

WEEK = 7 * 288  # 5-minute bars


def test_fifty_folds_on_a_week_of_five_minute_bars_is_refused(here, run_main, candles) -> None:
    data = write_binance_csv(here / "week.csv", candles.iloc[:WEEK])
    code, _, err = run_main("walk-forward", str(data), "--folds", "50", *tiny_flags(MAX_STEPS_PER_EPISODE=None))
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert "fold 1's test span would hold 19 bars" in lines[0] and "MAX_STEPS_PER_EPISODE=288" in lines[0], lines[0]
    assert "use at most 1 fold(s)" in lines[0] and "give at least about" in lines[0], lines[0]
    assert not (here / "mlruns").exists() and not (here / "checkpoints").exists()


@pytest.mark.parametrize(("steps", "folds", "accepted"), [(288, 1, True), (288, 2, False), (16, 50, True),
                                                          (19, 50, True), (20, 50, False)])
def test_every_span_of_every_fold_holds_one_episode(candles, steps: int, folds: int, accepted: bool) -> None:
    week = load_candles(candles.iloc[:WEEK])[0]
    config = TrainingConfig.from_dict({"BUCKET": "Scalping", "MAX_STEPS_PER_EPISODE": steps})
    if not accepted:
        with pytest.raises(DataValidationError, match="less than one episode"):
            plan_folds(week, config, folds)
        return
    for fold in plan_folds(week, config, folds).folds:
        assert min(fold.train.bars, fold.validation.bars, fold.test.bars) >= steps
