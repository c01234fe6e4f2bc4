"""A walk-forward on three years of 5-minute candles (issue 23's target: 6 folds x 2 seeds within 15 minutes
on 2 cores): synthetic candles like the scale family's (315,360 rows, one Parquet file), the default config
(Scalping), every session tracked on a local SQLite store with its recovery, checkpoints, model and plots,
as `btc-ai walk-forward DATA --folds 6 --seeds 1 2` runs them. Its own family (``--only scale_walk_forward``,
~15 minutes): the scale family stays a few minutes.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import THREADS, Record, guarded
from btc_ai.desk.walk_forward import WalkForward, prepare
from btc_ai.domain.presets import preset_config
from btc_ai.domain.synthetic import synthetic_candles
from btc_ai.recovery import TrainingRecoverySystem
from btc_ai.recovery.validation import validated_config
from btc_ai.tracking.tracker import Tracker

YEARS, FOLDS, SEEDS = 3, 6, (1, 2)
ROWS = YEARS * 365 * 288


def run() -> list[Record]:
    return guarded(measure)


def measure(overrides: dict[str, object] | None = None, folds: int = FOLDS,
            seeds: tuple[int, ...] = SEEDS) -> list[Record]:
    """The target's walk-forward; ``overrides`` (of the config), ``folds`` and ``seeds`` only for a smoke run of
    this script (`python -m benchmarks.bench_scale_walk_forward --smoke`), never for the recorded number."""
    torch.set_num_threads(THREADS)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "candles.parquet"
        synthetic_candles(n_rows=ROWS, seed=11, start="2021-01-01", interval="5min").reset_index().to_parquet(
            data, index=False)
        tracker = Tracker(f"sqlite:///{tmp}/mlflow.db", experiment="bench")  # the store exists before the clock
        tick = time.perf_counter()
        inputs = prepare(data, validated_config({**preset_config("Scalping"), **(overrides or {})}), folds, seeds)
        prepared = time.perf_counter() - tick
        system = TrainingRecoverySystem(checkpoint_dir=Path(tmp) / "checkpoints", tracker=tracker)
        result = WalkForward(system).start(inputs)
        wall = time.perf_counter() - tick
    assert result.outcome == "completed" and result.aggregate is not None, result.error
    sessions = len(result.rows)
    bars = [f.bars for f in inputs.plan.folds]
    return [
        Record("scale_walk_forward_3y_seconds_6x2", wall, "s",
               f"walk-forward of {FOLDS} folds x {len(SEEDS)} seeds on {ROWS:,} synthetic 5-minute candles (3 years, "
               f"one Parquet file), default config (Scalping), local SQLite store, in-process; {sessions} sessions "
               f"on {bars[0]:,} .. {bars[-1]:,} bars each, model logging and plots included"),
        Record("scale_walk_forward_3y_seconds_per_session", wall / max(sessions, 1), "s",
               "the 3-year walk-forward's wall time over its sessions"),
        Record("scale_walk_forward_3y_prepare_seconds", prepared, "s",
               "reading the 3 years and planning the folds (`prepare`)"),
    ]


if __name__ == "__main__":
    smoke = "--smoke" in sys.argv[1:]  # 2 folds x 1 seed of 2 generations: the script works, nothing measured
    for record in (measure({"EPISODES": 2}, 2, (1,)) if smoke else run()):
        print(record)
