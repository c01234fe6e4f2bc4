"""Checkpoint save/load at hidden 512 and resume latency from the tracking server (local SQLite store)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from benchmarks.common import Record, guarded, median_seconds
from btc_ai.domain.config import TrainingConfig
from btc_ai.domain.synthetic import default_candles
from btc_ai.recovery import TrainingRecoverySystem
from btc_ai.recovery.system import ProgressReporter
from btc_ai.tracking.tracker import Tracker
from btc_ai.training.checkpoint import load_checkpoint, save_checkpoint
from btc_ai.training.faults import inject_fault
from btc_ai.training.loop import TrainingCallbacks, train_model


def run() -> list[Record]:
    return guarded(measure)


class _Keep(TrainingCallbacks):
    def on_checkpoint(self, state, path, sha256, *, emergency):
        self.state = state


class _FirstGeneration(ProgressReporter):
    def __init__(self) -> None:
        self.first: float | None = None

    def generation_done(self, generation, metrics):
        if self.first is None:
            self.first = time.perf_counter()


def measure() -> list[Record]:
    data = default_candles()
    keep = _Keep()
    big = TrainingConfig.from_dict({"HIDDEN_SIZE": 512, "EPISODES": 1, "ES_POPULATION": 8, "EPISODES_PER_EVAL": 1})
    train_model(big, data, callbacks=keep)
    state = keep.state
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gen-000001.pt"
        save = median_seconds(lambda: save_checkpoint(state, path), repeats=9)
        sha = save_checkpoint(state, path)
        load = median_seconds(lambda: load_checkpoint(path, expected_sha256=sha), repeats=9)
        size_mb = path.stat().st_size / (1 << 20)

        # a default-config session that died at generation 11 (checkpoints every 5), then resumed
        tracker = Tracker(f"sqlite:///{tmp}/mlflow.db", experiment="bench")
        config = {"EPISODES": 20}
        crashed = TrainingRecoverySystem(checkpoint_dir=Path(tmp) / "a", tracker=tracker)
        crashed.start_training_with_recovery(inject_fault(train_model, "PermissionError@11"), config, data)
        reporter = _FirstGeneration()
        resumer = TrainingRecoverySystem(checkpoint_dir=Path(tmp) / "b", tracker=Tracker(tracker.tracking_uri, "bench"),
                                         reporter=reporter)
        tick = time.perf_counter()
        _, result, _, _ = resumer.start_training_with_recovery(train_model, None, data,
                                                               recovery_state=crashed.session_run_id)
        assert "error" not in result, result
        latency = (reporter.first or float("nan")) - tick
    return [
        Record("checkpoint_save_ms_h512", save * 1000, "ms",
               f"save_checkpoint (serialise, temp file, fsync, rename, sha256), hidden 512: {state.es.params.size:,} "
               f"parameters + Adam moments + best, {size_mb:.1f} MiB"),
        Record("checkpoint_load_ms_h512", load * 1000, "ms", "load_checkpoint with sha256 check, weights_only"),
        Record("resume_latency_seconds", latency, "s",
               "RecoveryState.from_run (find the session, mark stale attempts, list, download and verify the newest "
               "checkpoint) + lease + reopen + data + first new generation; default config, local store, imports "
               "excluded"),
    ]
