"""Walk-forward folds: K expanding-window folds in time order over one candle series.

How they are built (`FOLD_CONSTRUCTION`, also written on the walk-forward run): the candles are resampled
to the config's timeframe (n bars). The newest part of them (`HELD_OUT_SHARE`, half, less where the limits
of TEST_FRACTION demand it) is cut into K equal, disjoint, consecutive test blocks of L bars, the last one
ending with the data. Fold k trains on every candle before the end of block k (m_k bars) with
TEST_FRACTION = L / m_k, so the session's own split makes block k its test span exactly: train |
validation | test = block k, apart by the feature warm-up. Fold k's training and selection never see
block k or a later one; each fold is an ordinary training session on its slice of the data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from btc_ai.domain.config import TrainingConfig
from btc_ai.domain.data import resample_candles
from btc_ai.domain.errors import DataValidationError, UserInputError
from btc_ai.domain.market import MarketData, split_market

HELD_OUT_SHARE = 0.5  # the newest half of the data is cut into the K test blocks
MAX_TEST_FRACTION = 0.4  # TEST_FRACTION's upper limit
MAX_HELD_FRACTIONS = 0.8  # VALIDATION_FRACTION + TEST_FRACTION may not exceed this
MIN_SPAN_BARS = 8  # every fold's train, validation and test span holds at least this many decisions

FOLD_CONSTRUCTION = (
    "Expanding-window walk-forward: the newest {share:.0%} of the {n} {timeframe} bars is cut into {k} equal, "
    "disjoint, consecutive test blocks of {block} bars (the last ends with the data). Fold k is one training "
    "session on every candle before the end of block k, with TEST_FRACTION set so that its held-out test span "
    "is block k exactly: train | validation | test, apart by the feature warm-up ({purge} bars). No fold trains, "
    "validates or selects on its own test block or a later one."
)


@dataclass(frozen=True)
class Span:
    """A stretch of bars: first and last decision time, and how many decisions."""

    start: pd.Timestamp
    end: pd.Timestamp
    bars: int

    def label(self) -> str:
        return f"{self.start:%Y-%m-%d %H:%M} .. {self.end:%Y-%m-%d %H:%M} UTC"


@dataclass(frozen=True)
class Fold:
    """One fold: the session's candles are those before ``until`` (all of them when None)."""

    number: int  # 1 .. K, oldest first
    until: pd.Timestamp | None
    bars: int  # bars at the config's timeframe the session gets
    test_fraction: float
    train: Span
    validation: Span
    test: Span

    def as_dict(self) -> dict[str, object]:
        return {"fold": self.number, "until": None if self.until is None else self.until.isoformat(), "bars": self.bars,
                "test_fraction": self.test_fraction, "train": self.train.label(),
                "validation": self.validation.label(), "test": self.test.label(), "test_bars": self.test.bars}


@dataclass(frozen=True)
class FoldPlan:
    """Every fold of one walk-forward, and the words that say how they were built."""

    folds: tuple[Fold, ...]
    held_out_share: float
    block_bars: int
    construction: str


def held_out_share(folds: int, validation_fraction: float) -> float:
    """The share of the data cut into test blocks: `HELD_OUT_SHARE`, less where fold 1's TEST_FRACTION
    (one block of the bars up to the end of block 1) would pass its limits."""
    limit = min(MAX_TEST_FRACTION, MAX_HELD_FRACTIONS - validation_fraction)
    # fold 1: TEST_FRACTION = (h/K) / (1 - (K-1) h/K) <= limit  <=>  h <= limit K / (1 + limit (K-1))
    return min(HELD_OUT_SHARE, limit * folds / (1.0 + limit * (folds - 1)))


def plan_folds(candles: pd.DataFrame, config: TrainingConfig, folds: int) -> FoldPlan:
    """The K folds of validated 5-minute ``candles`` under ``config`` (its timeframe, look-back, validation
    share, gaps). UserInputError for K < 1; DataValidationError when the data is too short for K folds."""
    if folds < 1:
        raise UserInputError(f"--folds {folds}: a walk-forward needs at least 1 fold")
    bars = resample_candles(candles, config.TIMEFRAME)
    n = len(bars)
    share = held_out_share(folds, config.VALIDATION_FRACTION)
    block = int(n * share) // folds
    made = []
    for number in range(1, folds + 1):
        fold = _fold(bars, config, number, n - (folds - number) * block, block) if block > MIN_SPAN_BARS else None
        short = _short_span(fold, config)
        if short:
            raise DataValidationError(_too_few(bars, config, folds, number, short), key="TIMEFRAME")
        made.append(fold)
    from btc_ai.domain.features import warmup_bars

    text = FOLD_CONSTRUCTION.format(share=folds * block / n, n=n, timeframe=config.TIMEFRAME, k=folds, block=block,
                                    purge=warmup_bars(config.LOOKBACK, config.FEATURES))
    return FoldPlan(tuple(made), share, block, text)


def _span_floor(config: TrainingConfig) -> int:
    """The fewest decisions a fold's train, validation or test span may hold: one training episode (a
    shorter test block scores less than one episode of trading, a shorter train span cannot hold one)."""
    return max(MIN_SPAN_BARS, config.MAX_STEPS_PER_EPISODE)


def _short_span(fold: Fold | None, config: TrainingConfig) -> tuple[str, int] | None:
    """The first of a fold's spans shorter than `_span_floor` (name, decisions); None when all are long enough."""
    if fold is None:
        return ("test", 0)
    for name, span in (("test", fold.test), ("train", fold.train), ("validation", fold.validation)):
        if span.bars < _span_floor(config):
            return name, span.bars
    return None


def _too_few(bars: pd.DataFrame, config: TrainingConfig, folds: int, number: int, short: tuple[str, int]) -> str:
    """The one line refusing ``folds`` folds: which span is short, and the most folds (or the data) that fit."""
    n = len(bars)
    fewer = next((k for k in range(folds - 1, 0, -1) if _fits(bars, config, k)), 0)
    needed = _bars_needed(config, folds)
    step = pd.Timedelta(config.TIMEFRAME)
    way = f"use at most {fewer} fold(s), " if fewer else ""
    return (f"{n} {config.TIMEFRAME} bars are too few for {folds} walk-forward fold(s): fold {number}'s {short[0]} span "
            f"would hold {short[1]} bars, less than one episode (MAX_STEPS_PER_EPISODE={config.MAX_STEPS_PER_EPISODE}, "
            f"after the feature warm-up); {way}give at least about {needed:.0f} bars ({needed * step / pd.Timedelta('1D'):.1f} "
            "days) of candles, or a shorter MAX_STEPS_PER_EPISODE")


def _bars_needed(config: TrainingConfig, folds: int) -> int:
    """About how many bars ``folds`` folds need: each test block, and fold 1's validation and train spans
    (the shortest), one episode long after their warm-ups (the split's arithmetic, solved for the bars)."""
    from btc_ai.domain.features import warmup_bars

    floor, purge, val = _span_floor(config), warmup_bars(config.LOOKBACK), config.VALIDATION_FRACTION
    share = held_out_share(folds, val)
    first = 1.0 - share * (folds - 1) / folds  # fold 1's share of the bars
    return math.ceil(max((floor + 1) * folds / share, (floor + purge) / (val * first),
                         (floor + 2 * purge) / (first * (1.0 - val) - share / folds)))


def _fits(bars: pd.DataFrame, config: TrainingConfig, folds: int) -> bool:
    block = int(len(bars) * held_out_share(folds, config.VALIDATION_FRACTION)) // folds
    if block <= _span_floor(config):
        return False
    return all(_short_span(_fold(bars, config, k, len(bars) - (folds - k) * block, block), config) is None
               for k in (1, folds))  # fold 1 has the shortest train and validation spans, every block is equal


def _fold(bars: pd.DataFrame, config: TrainingConfig, number: int, m: int, block: int) -> Fold:
    fraction = block / m
    split = split_market(bars.iloc[:m], config.LOOKBACK, config.VALIDATION_FRACTION, fraction, config.MAX_GAP_BARS,
                         config.FEATURES)
    assert split.test is not None
    if len(split.test) and split.test.index[0] != bars.index[m - block]:  # the session's own split must agree
        raise AssertionError(f"fold {number}: test span starts {split.test.index[0]}, block at {bars.index[m - block]}")
    until = bars.index[m] if m < len(bars) else None
    return Fold(number, until, m, fraction, _span(split.train), _span(split.validation), _span(split.test))


def _span(market: MarketData) -> Span:
    if not len(market):
        return Span(pd.Timestamp(0, tz="UTC"), pd.Timestamp(0, tz="UTC"), 0)
    return Span(market.index[0], market.index[-1], len(market))


def fold_candles(candles: pd.DataFrame, fold: Fold) -> pd.DataFrame:
    """The 5-minute candles fold ``fold``'s session trains on: those before the end of its test block. The
    candles are in time order (validated), so this is a slice, not a mask over every bar of every fold."""
    return candles if fold.until is None else candles.iloc[:int(candles.index.searchsorted(fold.until))]
