"""A walk-forward end to end: 4 folds x 2 seeds on the shared month of real BTCUSDT candles, default config
(Scalping), every session tracked on a local SQLite store with its recovery, checkpoints, model and plots."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import Record, guarded
from btc_ai.desk.walk_forward import WalkForward, prepare
from btc_ai.domain.presets import preset_config
from btc_ai.recovery import TrainingRecoverySystem
from btc_ai.recovery.validation import validated_config
from btc_ai.tracking.tracker import Tracker

SHARED_MONTH = Path(__file__).resolve().parents[2] / "shared" / "data" / "btcusdt_5m_2021-06_binance.csv"
FOLDS, SEEDS = 4, (1, 2)


def run() -> list[Record]:
    if not SHARED_MONTH.exists():
        print(f"[bench] walk_forward skipped: {SHARED_MONTH} is not here", file=sys.stderr)
        return []
    return guarded(measure)


def measure() -> list[Record]:
    with tempfile.TemporaryDirectory() as tmp:
        tracker = Tracker(f"sqlite:///{tmp}/mlflow.db", experiment="bench")  # the store exists before the clock
        tick = time.perf_counter()
        inputs = prepare(SHARED_MONTH, validated_config(preset_config("Scalping")), FOLDS, SEEDS)
        system = TrainingRecoverySystem(checkpoint_dir=Path(tmp) / "checkpoints", tracker=tracker)
        result = WalkForward(system).start(inputs)
        wall = time.perf_counter() - tick
    assert result.outcome == "completed" and result.aggregate is not None, result.error
    agg = result.aggregate
    sessions = len(result.rows)
    figures = (f"mean test return {agg.mean_test_return:+.2%} (median {agg.median_test_return:+.2%}, t "
               f"{agg.t_statistic:+.2f}), buy-and-hold {agg.mean_buy_and_hold_return:+.2%}, above flat "
               f"{agg.share_above_flat:.0%} / above buy-and-hold {agg.share_above_buy_and_hold:.0%} of folds, "
               f"null percentile {agg.mean_null_percentile:.0f}")
    return [
        Record("walk_forward_seconds_4x2", wall, "s",
               f"btc-ai walk-forward {SHARED_MONTH.name} --folds {FOLDS} --seeds 1 2 in-process, default config "
               f"(Scalping), local SQLite store; {sessions} sessions, each with model logging and plots; {figures}"),
        Record("walk_forward_seconds_per_session", wall / max(sessions, 1), "s",
               "the walk-forward's wall time over its sessions"),
    ]
