"""System metrics (CPU, memory, disk, network; GPU where there is one) of an attempt, by MLflow's own
`SystemMetricsMonitor` wired to the client-created run (MLflow starts it only from `mlflow.start_run`).

Off by default; on with ``MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING=true`` (``--system-metrics`` sets it for one
command). ``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL`` (seconds, default 10) sets how often it samples. They are
MLflow's ``system/...`` metrics, written by the monitor's own thread straight to the store: best effort, never
journaled (an outage stops them; the training goes on).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mlflow.environment_variables import MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING

from btc_ai.tracking.journal import is_placeholder

_log = logging.getLogger(__name__)


def enabled() -> bool:
    return bool(MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING.get())


def _start(tracking_uri: str, run_id: str) -> Any:
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    monitor = SystemMetricsMonitor(run_id, tracking_uri=tracking_uri)
    monitor.start()
    return monitor


@contextmanager
def system_metrics(tracker: Any, run_id: str) -> Iterator[Any]:
    """Monitor ``run_id`` while inside, when system metrics are on (and the run is on the store: not while
    its creation waits in the journal). The monitor's thread is stopped, and its last samples sent, on every
    way out (an error, an interrupt), before the caller closes the run."""
    monitor = None
    if enabled() and not is_placeholder(run_id):
        try:
            monitor = _start(tracker.tracking_uri, run_id)
        except Exception as exc:  # a missing psutil, a refused store: the training goes on without them
            _log.warning("system metrics not logged for run %s: %s: %s", run_id, type(exc).__name__, exc)
    try:
        yield monitor
    finally:
        if monitor is not None:
            monitor.finish()
