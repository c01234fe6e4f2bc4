"""Trading-style buckets: complete config presets that a training config names and overrides."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

# Values every bucket shares unless it says otherwise; each bucket below states only what differs.
_COMMON: dict[str, Any] = {
    "SEED": 42,
    "EPISODES": 300,
    "ES_POPULATION": 48,
    "LEARNING_RATE": 0.01,
    "SIGMA": 0.02,
    "WEIGHT_DECAY": 0.005,
    "HIDDEN_SIZE": 128,
    "HIDDEN_LAYERS": 2,
    "EPISODES_PER_EVAL": 8,
    "VALIDATION_FRACTION": 0.2,
    "TEST_FRACTION": 0.15,  # held out: the honest figure of every training
    "VALIDATION_WINDOWS": 3,
    "EARLY_STOP_PATIENCE": 20,  # validations (EVAL_INTERVAL generations each) without a better score
    "MAX_GAP_BARS": 3,
    "EVAL_INTERVAL": 5,
    "MIN_CHECKPOINT_INTERVAL": 5,
    "CHECKPOINT_MIN_SECONDS": 2.0,
    "NOISE_TABLE_SIZE": 1 << 23,
    "STALL_FACTOR": 20.0,
    "STALL_MIN_SECONDS": 60.0,
    "EVALUATOR": "local",  # ray: the population is scored on a Ray cluster (pip install -e .[cluster])
    "RAY_WORKERS": 0,  # 0: one worker per CPU the cluster has
    "RAY_CHUNK_MEMBERS": 16,
    "POSITION_MODE": "long_short",
    "FEATURES": "base",
    "DECISION_INTERVAL": 1,
    "FITNESS": "return",
}


# The learner Swing and Position keep, from issue 22's ablation (docs/evaluation.md, "Does it learn?"), each measured on
# the walk-forward of the shared hourly file: long or flat, trend features, Sharpe fitness, no turnover or
# drawdown shaping (the search used to settle on flat in 4 and 6 of 12 sessions); decisions once a day
_TREND_LEARNER: dict[str, Any] = {"POSITION_MODE": "long_flat", "FEATURES": "trend", "FITNESS": "sharpe",
                                  "TURNOVER_PENALTY_BPS": 0.0, "DRAWDOWN_PENALTY": 0.0}


@dataclass(frozen=True)
class Bucket:
    """One trading style: the timeframe it trades on and every config value it implies."""

    name: str
    description: str
    values: Mapping[str, Any] = field(default_factory=dict)

    def config(self) -> dict[str, Any]:
        """The full preset as config keys (bucket name included)."""
        return {**_COMMON, **self.values, "BUCKET": self.name}


def _bucket(name: str, description: str, **values: Any) -> Bucket:
    return Bucket(name, description, MappingProxyType(values))


BUCKETS: Mapping[str, Bucket] = MappingProxyType(
    {
        b.name: b
        for b in (
            _bucket(
                "Scalping",
                "Very short holds on raw 5-minute bars; low maker-style fees, one-day episodes.",
                TIMEFRAME="5min",
                MAX_STEPS_PER_EPISODE=288,
                LOOKBACK=12,
                FEE_BPS=2.0,
                SLIPPAGE_BPS=1.0,
                TURNOVER_PENALTY_BPS=2.0,
                DRAWDOWN_PENALTY=0.0,
                HOLDING_COST_BPS=0.0,
            ),
            _bucket(
                "Intraday",
                "Positions opened and closed within days on 15-minute bars; two-day episodes.",
                TIMEFRAME="15min",
                MAX_STEPS_PER_EPISODE=192,
                LOOKBACK=16,
                FEE_BPS=4.0,
                SLIPPAGE_BPS=1.0,
                TURNOVER_PENALTY_BPS=4.0,
                DRAWDOWN_PENALTY=0.1,
                HOLDING_COST_BPS=0.0,
            ),
            _bucket(
                "Swing",
                "Multi-day swings on hourly bars, long or flat, decided once a day; one-week episodes scored by "
                "their Sharpe ratio.",
                TIMEFRAME="1h",
                MAX_STEPS_PER_EPISODE=168,
                LOOKBACK=24,
                FEE_BPS=7.5,
                SLIPPAGE_BPS=2.0,
                HOLDING_COST_BPS=0.1,
                EPISODES_PER_EVAL=2,
                DECISION_INTERVAL=24,  # a day of hourly bars
                **_TREND_LEARNER,
            ),
            _bucket(
                "Position",
                "Trend following on 4-hour bars, long or flat, decided once a day; ten-day episodes scored by their "
                "Sharpe ratio, funding-like holding cost.",
                TIMEFRAME="4h",
                MAX_STEPS_PER_EPISODE=60,
                LOOKBACK=12,
                FEE_BPS=10.0,
                SLIPPAGE_BPS=2.0,
                HOLDING_COST_BPS=0.5,
                # and 8 episodes per member: 2 of 60 bars were too noisy (the ablation's Position rows)
                EPISODES_PER_EVAL=8,
                DECISION_INTERVAL=6,  # a day of 4-hour bars
                **_TREND_LEARNER,
            ),
        )
    }
)

DEFAULT_BUCKET = "Scalping"


def find_bucket(name: str) -> Bucket | None:
    """The bucket called ``name`` (any case), or None."""
    for bucket in BUCKETS.values():
        if bucket.name.lower() == str(name).strip().lower():
            return bucket
    return None


def preset_config(name: str) -> dict[str, Any]:
    """The full preset of bucket ``name``; KeyError naming the known buckets when there is none."""
    bucket = find_bucket(name)
    if bucket is None:
        raise KeyError(f"unknown bucket {name!r}; known buckets: {', '.join(BUCKETS)}")
    return bucket.config()

SEARCH_HELD_OUT_SHARE = 0.2  # a search's held-out block by default: the newest fifth of the bars (domain/held_out.py)
