"""System metrics: on (MLflow's variable, or --system-metrics), each attempt run gets MLflow's system/...
CPU, memory, disk and network metrics from its own monitor; off by default; the monitor's thread is stopped
on every way out of an attempt (success, an error that is retried, an interrupt) and no run is left RUNNING."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

import pytest
from mlflow import MlflowClient

from btc_ai.cli.common import apply_system_metrics_flag, undo_outlier_flag

CONFIG = {"EPISODES": 4, "ES_POPULATION": 8, "HIDDEN_SIZE": 8, "MAX_STEPS_PER_EPISODE": 64, "EPISODES_PER_EVAL": 2,
          "EVAL_INTERVAL": 2, "MIN_CHECKPOINT_INTERVAL": 2, "CHECKPOINT_MIN_SECONDS": 0.0,
          "NOISE_TABLE_SIZE": 1 << 16, "BUCKET": "Scalping"}
KINDS = ("system/cpu_utilization_percentage", "system/system_memory_usage_megabytes",
         "system/disk_usage_megabytes", "system/network_receive_megabytes")


def _monitors() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "SystemMetricsMonitor"]


def _train(tmp_path: Path, fault: str) -> list:
    from btc_ai import TrainingRecoverySystem, train_model
    from btc_ai.domain.synthetic import synthetic_candles
    from btc_ai.training.faults import inject_fault

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    system = TrainingRecoverySystem(checkpoint_dir=tmp_path / "ck", max_retries=1, tracking_uri=uri,
                                    experiment="sys", sleep=lambda s: None)
    with contextlib.suppress(KeyboardInterrupt):  # the interrupted case ends the command
        system.start_training_with_recovery(inject_fault(train_model, fault), dict(CONFIG),
                                            synthetic_candles(3000, seed=3))
    client = MlflowClient(uri)
    return client.search_runs([client.get_experiment_by_name("sys").experiment_id])


@pytest.mark.slow  # a training
@pytest.mark.parametrize("fault", ["ValueError@3:LEARNING_RATE", "KeyboardInterrupt@3"])
def test_attempts_log_system_metrics_and_the_monitor_stops_on_every_way_out(tmp_path, monkeypatch, fault) -> None:
    # samples every 0.02 s: an attempt of a few generations (a second or more) outlasts several
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.02")
    monkeypatch.delenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", raising=False)
    apply_system_metrics_flag(type("Args", (), {"system_metrics": True})())  # what --system-metrics does
    try:
        runs = _train(tmp_path, fault)
    finally:
        undo_outlier_flag()
    assert "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING" not in os.environ  # the flag is the command's own
    assert not _monitors()  # every monitor thread ended
    assert all(r.info.status != "RUNNING" for r in runs)
    attempts = sorted((r for r in runs if r.data.tags["btc_ai.kind"] == "attempt"),
                      key=lambda r: int(r.data.tags["btc_ai.attempt"]))
    assert attempts[0].data.tags["btc_ai.outcome"] in {"recoverable_error", "interrupted"}
    for attempt in attempts:  # the failed or interrupted one too
        assert set(KINDS) <= set(attempt.data.metrics), attempt.data.tags["btc_ai.outcome"]
    session = next(r for r in runs if r.data.tags["btc_ai.kind"] == "session")
    assert not any(k.startswith("system/") for k in session.data.metrics)


def test_system_metrics_are_off_by_default_and_on_with_mlflows_variable(tmp_path, monkeypatch) -> None:
    from btc_ai.tracking.system_metrics import system_metrics
    from btc_ai.tracking.tracker import Tracker

    monkeypatch.delenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", raising=False)
    monkeypatch.chdir(tmp_path)
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="sys")
    run = tracker.create_run("attempt", name="a")
    with system_metrics(tracker, run) as monitor:
        assert monitor is None and not _monitors()
    monkeypatch.setenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "true")
    with system_metrics(tracker, run) as monitor:
        assert monitor is not None and _monitors()
    assert not _monitors()
