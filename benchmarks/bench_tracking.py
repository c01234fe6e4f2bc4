"""What tracking costs: the default training with and without MLflow logging and checkpoints, in one run."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import Record, guarded
from btc_ai.domain.config import TrainingConfig
from btc_ai.domain.synthetic import default_candles
from btc_ai.recovery import TrainingRecoverySystem
from btc_ai.tracking.attempt_logger import AttemptLogger
from btc_ai.tracking.tracker import Tracker
from btc_ai.training.loop import train_model

REPEATS = 5
GENERATIONS = 150  # each pair of runs ~10 s; more, shorter pairs average out the machine's drift


def run() -> list[Record]:
    return guarded(measure)


def _bare(config: TrainingConfig, data) -> float:
    tick = time.perf_counter()
    train_model(config, data)
    return time.perf_counter() - tick


def _tracked(config: TrainingConfig, data, tracker: Tracker, folder: Path, counts: list[int]) -> float:
    """The same training as an attempt run: every generation's metrics and every checkpoint logged."""
    run_id = tracker.create_run("attempt", name="bench")
    logger = AttemptLogger(tracker, run_id)
    tick = time.perf_counter()
    train_model(config, data, folder, callbacks=logger, emergency_checkpoints=True)
    logger.close()  # the time until everything is on the store counts
    elapsed = time.perf_counter() - tick
    tracker.end_run(run_id, "FINISHED")
    counts.append(len(tracker.client.list_artifacts(run_id, "checkpoints")))
    return elapsed


def measure() -> list[Record]:
    config = TrainingConfig.from_dict({"EPISODES": GENERATIONS})
    data = default_candles()
    train_model(config.replace(EPISODES=5), data)  # warm: imports, noise table
    with tempfile.TemporaryDirectory() as tmp:
        tracker = Tracker(f"sqlite:///{tmp}/mlflow.db", experiment="bench")
        bare, tracked, counts = [], [], []
        for k in range(REPEATS):  # interleaved, so drift in machine speed hits both alike
            bare.append(_bare(config, data))
            tracked.append(_tracked(config, data, tracker, Path(tmp) / f"ck{k}", counts))
        tick = time.perf_counter()
        system = TrainingRecoverySystem(checkpoint_dir=Path(tmp) / "session", tracker=tracker)
        system.start_training_with_recovery(config=config, df=data)
        session = time.perf_counter() - tick
    bare_s, tracked_s = statistics.median(bare), statistics.median(tracked)
    # each pair ran back to back, so its ratio sees one machine state; the median ratio resists drift
    overhead = 100.0 * (statistics.median(t / b for t, b in zip(tracked, bare, strict=True)) - 1.0)
    spread = ", ".join(f"{100.0 * (t / b - 1.0):+.1f}" for t, b in zip(tracked, bare, strict=True))
    checkpoints = statistics.median(counts)
    return [
        Record("tracking_bare_train_seconds", bare_s, "s",
               f"train_model, default config ({config.EPISODES} generations), no tracker, no checkpoints; median of "
               f"{REPEATS}"),
        Record("tracking_tracked_train_seconds", tracked_s, "s",
               f"the same with every generation's metrics and {checkpoints:.0f} checkpoints (every "
               f"{config.MIN_CHECKPOINT_INTERVAL} generations, >= {config.CHECKPOINT_MIN_SECONDS:g} s apart) logged to a SQLite store, "
               "until all is stored"),
        Record("tracking_overhead_pct", overhead, "%", f"median over {REPEATS} back-to-back pairs of tracked / bare - 1 "
               f"(pairs: {spread} %)"),
        Record("tracking_full_session_seconds", session, "s",
               "TrainingRecoverySystem end to end: session and attempt runs, params, training, performance history, "
               "model logged (pt2) and registered"),
    ]
