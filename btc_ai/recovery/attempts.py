"""Attempts: one try of a session as an MLflow attempt run — opened, trained, and closed with its outcome,
its error report and the decision on what comes next."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from btc_ai.recovery.error_report import build_error_report, render_markdown
from btc_ai.recovery.lease import heartbeat
from btc_ai.recovery.reporter import ProgressReporter
from btc_ai.recovery.retry import Failure, Plan, Retry, Stop
from btc_ai.tracking.attempt_logger import AttemptLogger
from btc_ai.tracking.run_model import (
    BUILTIN_DATA,
    DataInputs,
    DataSpan,
    RunModel,
)
from btc_ai.training import TrainingSetup
from btc_ai.training.checkpoint import TrainingState

HEARTBEAT_S = 20.0


@dataclass
class Attempt:
    """An attempt of this command: its number in the session, its run, its plan, and how it ended."""

    number: int
    run_id: str
    plan: Plan
    outcome: str = "running"
    error: str | None = None
    failure: Failure | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


class RecoveryLogger(AttemptLogger):
    """The attempt's MLflow logger, plus what the recovery needs: history rows, the last good state, the
    progress reporter and the session lease's heartbeat."""

    def __init__(self, runs: RunModel, run_id: str, reporter: ProgressReporter, attempt: int, session_id: str,
                 keep_checkpoints: int | None, logged_through: int = 0, data_source: str = BUILTIN_DATA,
                 data_report: Any = None, data_origin: DataInputs | None = None) -> None:
        super().__init__(runs.tracker, run_id, keep_periodic=keep_checkpoints, logged_through=logged_through)
        self.runs = runs
        self.session_id = session_id
        self.last_heartbeat = time.monotonic()
        self.reporter = reporter
        self.attempt = attempt
        self.history: list[dict[str, Any]] = []
        self.last_good: TrainingState | None = None
        self.generations_done = 0
        self.data_source, self.data_report = data_source, data_report  # as read from the source (its files)
        self.data_origin = data_origin  # where a DataFrame was cut from (a fold's files), named in its inputs

    def on_start(self, setup: TrainingSetup) -> None:
        super().on_start(setup)
        # the session's data as dataset inputs, its spans as their contexts; a later attempt's are the same
        # inputs (MLflow keeps one), unless the data changed (a resume allowed to): then they are added
        data = (self.data_origin.cut(setup.data_fingerprint) if self.data_origin is not None else
                DataInputs.of(self.data_source, setup.data_fingerprint, self.data_report or setup.data_report))
        spans = [DataSpan(role, start.isoformat(), end.isoformat(), bars) for role, start, end, bars in setup.spans]
        self.writer.submit(self.runs.log_data_inputs, self.session_id, data, spans)

    def on_generation(self, generation: int, metrics: Mapping[str, float]) -> None:
        super().on_generation(generation, metrics)
        self.generations_done += 1
        if generation > self.logged_through:  # else its row is an earlier attempt's (see AttemptLogger)
            self.history.append({"generation": generation, "attempt": self.attempt, **metrics})
        self.reporter.generation_done(generation, metrics)

    def on_checkpoint(self, state: TrainingState, path: Path | None, sha256: str | None, *, emergency: bool) -> None:
        super().on_checkpoint(state, path, sha256, emergency=emergency)
        self.last_good = state
        if time.monotonic() - self.last_heartbeat > HEARTBEAT_S:
            self.last_heartbeat = time.monotonic()
            self.writer.submit(heartbeat, self.runs, self.session_id)


def close_failed_attempt(runs: RunModel, attempt: Attempt, logger: RecoveryLogger, failure: Failure,
                         decision: Retry | Stop, *, session_run_id: str, data_summary: Mapping[str, Any],
                         notify: Callable[[Attempt, dict[str, Any]], None]) -> None:
    """Close a failed attempt with how it ended and what comes next: its error report, its run ended; ``notify``
    hears of the report even when the store fails."""
    exc, classification = failure.error, failure.classification
    attempt.history = logger.history
    attempt.failure = failure
    attempt.outcome = ("interrupted" if failure.interrupted else
                       "recoverable_error" if classification.recoverable else "unrecoverable_error")
    attempt.error = f"{type(exc).__name__}: {exc}"
    report = build_error_report(
        exc, classification=classification, attempt=attempt.number, generation_reached=logger.last_generation,
        last_metrics=logger.last_metrics, config=attempt.plan.config.to_dict(), data_summary=dict(data_summary),
        repair=decision.repair.summary() if decision.repair else None, decision=decision.reason,
        session_run_id=session_run_id, attempt_run_id=attempt.run_id,
    )
    try:
        runs.record_error_report(attempt.run_id, report, render_markdown(report))
        runs.attempt_failed(attempt.run_id, number=attempt.number, outcome=attempt.outcome, error_type=type(exc).__name__,
                            generation_reached=logger.last_generation, interrupted=failure.interrupted)
    finally:
        notify(attempt, report)
