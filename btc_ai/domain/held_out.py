"""The block a search holds out: the newest share of the bars, which no trial trains, validates or is scored
on, and on which the chosen configuration is scored once at the end. Its session is an ordinary one on all
the candles whose TEST_FRACTION makes the block its test span exactly (as a walk-forward fold does)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from btc_ai.domain.config import TrainingConfig
from btc_ai.domain.data import resample_candles
from btc_ai.domain.errors import DataValidationError, UserInputError
from btc_ai.domain.folds import MAX_TEST_FRACTION, MIN_SPAN_BARS
from btc_ai.domain.market import split_market


@dataclass(frozen=True)
class HeldOut:
    """The held-out block: it begins at ``cut`` (the study sees the candles before it only)."""

    cut: pd.Timestamp
    test_fraction: float
    bars: int
    label: str


def held_out_block(candles: pd.DataFrame, config: TrainingConfig, share: float) -> HeldOut:
    """The newest ``share`` of the bars of ``candles`` at the config's timeframe; UserInputError when the share
    is out of range or the block would hold less than one episode."""
    if not 0 < share <= MAX_TEST_FRACTION:
        raise UserInputError(f"--holdout {share}: the held-out share is above 0 and at most {MAX_TEST_FRACTION}")
    bars = resample_candles(candles, config.TIMEFRAME)
    n = len(bars)
    block = int(n * share)
    floor = max(MIN_SPAN_BARS, config.MAX_STEPS_PER_EPISODE)
    if block <= floor:
        raise DataValidationError(f"the held-out block ({share:.0%} of {n} {config.TIMEFRAME} bars = {block}) is shorter "
                                  f"than one episode ({floor} bars); give more data or a larger --holdout",
                                  key="TIMEFRAME")
    fraction = block / n
    split = split_market(bars, config.LOOKBACK, config.VALIDATION_FRACTION, fraction, config.MAX_GAP_BARS,
                         config.FEATURES)
    start = bars.index[n - block]
    if split.test is None or not len(split.test) or split.test.index[0] != start:  # the session's split must agree
        raise AssertionError(f"the held-out session's test span does not begin at the block ({start})")
    return HeldOut(start, fraction, len(split.test),
                   f"{split.test.index[0]:%Y-%m-%d %H:%M} .. {split.test.index[-1]:%Y-%m-%d %H:%M} UTC")


def study_candles(candles: pd.DataFrame, held: HeldOut) -> pd.DataFrame:
    """The candles every trial sees: those before the held-out block."""
    return candles.loc[candles.index < held.cut]
