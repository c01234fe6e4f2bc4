"""Tracking-server outages: what a dead server costs a training, and whether a 30 s outage loses anything.

A real `mlflow server` on 127.0.0.1 (its own SQLite store). Three trainings of the default config
against it, in this process: server up throughout; server killed after the first generation and left
dead; server killed mid-training and started again 30 s later. The last must leave every generation's
metrics on the server exactly once.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from benchmarks.common import Record, guarded
from btc_ai.domain.config import TrainingConfig
from btc_ai.domain.synthetic import default_candles
from btc_ai.recovery import TrainingRecoverySystem
from btc_ai.recovery.system import ProgressReporter
from btc_ai.tracking.server import LocalMlflowServer
from btc_ai.tracking.tracker import Tracker
from btc_ai.training.loop import train_model

OUTAGE_S = 30.0


def run() -> list[Record]:
    return guarded(measure)


class _At(ProgressReporter):
    """Calls ``action`` (in a thread: the training must not wait for it) when ``generation`` is done."""

    def __init__(self, generation: int, action) -> None:
        self.generation = generation
        self.action = action
        self.thread: threading.Thread | None = None

    def generation_done(self, generation: int, metrics: Mapping[str, float]) -> None:
        if generation == self.generation:
            self.thread = threading.Thread(target=self.action)
            self.thread.start()


def _train(url: str, config: TrainingConfig, folder: Path, reporter: ProgressReporter) -> tuple[float, str, Tracker]:
    tracker = Tracker(url, experiment="bench-outage")
    system = TrainingRecoverySystem(checkpoint_dir=folder, tracker=tracker, reporter=reporter)
    tick = time.perf_counter()
    model, metrics, _, _ = system.start_training_with_recovery(train_model, config=config, df=default_candles())
    seconds = time.perf_counter() - tick
    if model is None:
        raise RuntimeError(f"benchmark training failed: {metrics.get('error')}")
    return seconds, metrics["session_run_id"], tracker


def _steps(tracker: Tracker, session_id: str, key: str = "fitness/mean") -> list[int]:
    client = tracker.client
    runs = client.search_runs([tracker.experiment_id], f"tags.`mlflow.parentRunId` = '{session_id}'")
    return sorted(m.step for r in runs if r.data.tags.get("btc_ai.kind") == "attempt"
                  for m in client.get_metric_history(r.info.run_id, key))


def measure() -> list[Record]:
    config = TrainingConfig.from_dict({})
    long_config = config.replace(EPISODES=1000)  # ~45 s: room for a 30 s outage in the middle
    train_model(config.replace(EPISODES=5), default_candles())  # warm: imports, data, noise table
    tick = time.perf_counter()
    train_model(config, default_candles())
    bare = time.perf_counter() - tick
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        previous = os.getcwd()
        os.chdir(root)  # the journal lives under ./mlruns/journal
        server = LocalMlflowServer(root / "server")
        try:
            server.start()
            up, _, _ = _train(server.url, config, root / "up", ProgressReporter())

            server_dead = _At(1, server.stop)
            down, _, tracker = _train(server.url, config, root / "down", server_dead)
            journaled = tracker.pending()
            server.start()
            tracker.replay()

            def outage() -> None:
                server.stop()
                time.sleep(OUTAGE_S)
                server.start()

            mid = _At(100, outage)
            long_seconds, long_session, long_tracker = _train(server.url, long_config, root / "long", mid)
            if mid.thread is not None:
                mid.thread.join()
            long_tracker.replay()  # had the training ended first, the next command would send the rest
            steps = _steps(long_tracker, long_session)
        finally:
            server.stop()
            os.chdir(previous)
    expected = list(range(1, long_config.EPISODES + 1))
    lost = len(set(expected) - set(steps))
    duplicated = len(steps) - len(set(steps))
    return [
        Record("outage_server_up_train_seconds", up, "s",
               f"default config ({config.EPISODES} generations) tracked on a live mlflow server (HTTP, 127.0.0.1)"),
        Record("outage_server_dead_train_seconds", down, "s",
               f"the same with the server killed after generation 1 and left dead; {journaled} writes journaled"),
        Record("outage_untracked_train_seconds", bare, "s", "the same training with no tracking at all (train_model)"),
        Record("outage_dead_server_overhead_pct", 100.0 * (down / bare - 1.0), "%",
               "training wall time with a dead tracking server vs no tracking at all"),
        Record("outage_dead_vs_live_server_pct", 100.0 * (down / up - 1.0), "%",
               "training wall time with a dead tracking server vs a live one (the live server shares the 2 cores)"),
        Record("outage_30s_metrics_lost", float(lost), "generations",
               f"server killed at generation 100 of {long_config.EPISODES}, restarted {OUTAGE_S:.0f} s later "
               f"({long_seconds:.0f} s training): generations with no fitness/mean on the server"),
        Record("outage_30s_metrics_duplicated", float(duplicated), "rows", "fitness/mean rows logged twice"),
    ]
