"""`TrainingRecoverySystem`: a training as an MLflow session of attempts, retried by a tenacity policy.

Each attempt is a child run; a recoverable error is classified, answered by a repair (a child run of
the failed attempt) and retried from the last good state; every run ends with a terminal status.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_when_event_set,
    wait_exponential_jitter,
)

from btc_ai.domain.config import STRUCTURAL_KEYS, ConfigProblem, TrainingConfig, normalize_key
from btc_ai.domain.data import DataReport, clean_candles, data_fingerprint, load_candles
from btc_ai.domain.errors import (
    CheckpointError,
    ConfigValidationError,
    DataValidationError,
    NaNError,
    ResumeError,
)
from btc_ai.domain.presets import DEFAULT_BUCKET, preset_config
from btc_ai.recovery.classify import Classification, classify
from btc_ai.recovery.error_report import build_error_report, render_markdown
from btc_ai.recovery.repairs import (
    PresetSource,
    Repair,
    RepairContext,
    choose_repair,
    fit_episode_to_data,
    validate_and_repair,
)
from btc_ai.recovery.state import (
    LEASE_HEARTBEAT,
    LEASE_OWNER,
    TAG_DATA_SOURCE,
    RecoveryState,
    attempt_runs,
    claim_lease,
    heartbeat,
    lease_token,
)
from btc_ai.tracking.store import (
    TAG_ATTEMPT,
    TAG_ERROR_TYPE,
    TAG_FINAL_SHA,
    TAG_OUTCOME,
    TAG_STATUS,
    AttemptLogger,
    Tracker,
)
from btc_ai.training.checkpoint import TrainingState
from btc_ai.training.loop import train_model, training_bars, validation_equity

TrainingFunc = Callable[..., tuple[Any, dict[str, Any], float, float]]
TAG_REPAIRED_BY = "btc_ai.repaired_by"
BUILTIN_DATA = "builtin:default"
HEARTBEAT_S = 20.0
_log = logging.getLogger(__name__)


def registered_model_name(bucket: str) -> str:
    """``btc-ai-<bucket>`` in lower case: one registry entry per trading style."""
    return f"btc-ai-{bucket.lower()}"


class ProgressReporter:
    """What a person watching the training is told; silent here, the CLI prints."""

    def session_started(self, run_id: str, config: TrainingConfig) -> None:
        """A session run was created."""

    def attempt_started(self, attempt: int, run_id: str, repair: Repair | None) -> None:
        """An attempt run was opened (after ``repair``, if any)."""

    def generation_done(self, generation: int, metrics: Mapping[str, float]) -> None:
        """A generation finished (global generation number)."""

    def attempt_failed(self, attempt: int, report: Mapping[str, Any]) -> None:
        """An attempt ended with an error; ``report`` is its error report."""


class TrainingRecoverySystem:
    """Trains with recovery: validated and repaired config, classified retries, emergency checkpoints,
    error reports, performance history, all recorded in MLflow."""

    def __init__(
        self,
        checkpoint_dir: str | Path = "checkpoints",
        max_retries: int = 3,
        min_checkpoint_interval: int = 5,
        enable_emergency_checkpoints: bool = True,
        *,
        tracker: Tracker | None = None,
        tracking_uri: str | None = None,
        experiment: str = "btc-ai",
        reporter: ProgressReporter | None = None,
        error_handler: Callable[[dict[str, Any]], None] | None = None,
        preset_source: PresetSource = preset_config,
        extra_recoverable: tuple[type[BaseException], ...] = (),
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
        backoff_jitter: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        stop_event: threading.Event | None = None,
        keep_checkpoints: int | None = 3,
        allow_data_change: bool = False,
        max_nan_repairs: int = 3,
    ) -> None:
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.checkpoint_dir = Path(checkpoint_dir)
        self.max_retries = max_retries
        self.min_checkpoint_interval = min_checkpoint_interval
        self.enable_emergency_checkpoints = enable_emergency_checkpoints
        self._tracker = tracker
        self._tracking_uri = tracking_uri
        self._experiment = experiment
        self.reporter = reporter or ProgressReporter()
        self.error_handler = error_handler
        self.preset_source = preset_source
        self.extra_recoverable = tuple(extra_recoverable)
        self.wait = wait_exponential_jitter(initial=backoff_initial, max=backoff_max, jitter=backoff_jitter)
        self.sleep = sleep
        self.stop_event = stop_event or threading.Event()
        self.session_run_id: str | None = None
        self.keep_checkpoints = keep_checkpoints
        self.max_nan_repairs = max_nan_repairs
        self.allow_data_change = allow_data_change

    @property
    def tracker(self) -> Tracker:
        if self._tracker is None:
            self._tracker = Tracker(self._tracking_uri, self._experiment)
        return self._tracker

    @property
    def opened_tracker(self) -> Tracker | None:
        """The tracker if this system opened (or was given) one, without opening it."""
        return self._tracker

    def is_recoverable(self, exc: BaseException) -> bool:
        """Retry predicate: the classification table (plus any configured extra types)."""
        return classify(exc, self.extra_recoverable).recoverable

    def start_training_with_recovery(
        self,
        training_func: TrainingFunc = train_model,
        config: TrainingConfig | Mapping[str, Any] | str | Path | None = None,
        df: pd.DataFrame | str | Path | None = None,
        save_path: str | Path | None = None,
        recovery_state: TrainingState | str | Path | None = None,
    ) -> tuple[Any, dict[str, Any], float, float]:
        """Train and return ``(model, metrics, best_reward, elapsed_time)``.

        On failure ``model`` is None and ``metrics["error"]`` says why. ``config`` may be a dict of
        config keys, a TrainingConfig or the path of a JSON file; ``df`` candles, a data file, or
        None for the built-in default data.
        """
        session = _Session(self, training_func, save_path)
        return session.run(config, df, recovery_state)


@dataclass
class _Plan:
    """What the next attempt runs, and the repair that led to it."""

    config: TrainingConfig
    data: pd.DataFrame
    start: TrainingState | None
    repair: Repair | None = None
    repair_run_id: str | None = None
    data_changed: bool = False

    def signature(self) -> tuple[Any, ...]:
        start = self.start.generation if self.start is not None else 0
        return json.dumps(self.config.to_dict(), sort_keys=True), data_fingerprint(self.data), start


@dataclass
class _AttemptRecord:
    number: int
    run_id: str
    plan: _Plan
    outcome: str = "running"
    error: str | None = None
    failure: tuple[str, int] | None = None  # (error type, generation reached)
    error_obj: BaseException | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


class _Session:
    """One call of start_training_with_recovery: the session run and its attempts."""

    def __init__(self, system: TrainingRecoverySystem, training_func: TrainingFunc, save_path: str | Path | None):
        self.system = system
        self.training_func = training_func
        self.save_path = save_path
        self.started = time.perf_counter()
        self.run_id = ""
        self.plan: _Plan | None = None
        self.attempts: list[_AttemptRecord] = []
        self.data_report: DataReport | None = None
        self.last_good_config: TrainingConfig | None = None
        self.repairs: list[Repair] = []
        self.attempt_offset = 0  # attempts of this session made by earlier processes
        self.resumed_from: RecoveryState | None = None
        self.previous_rows: list[dict[str, Any]] = []

    # -- the whole session ----------------------------------------------------------------------

    def run(self, config: Any, df: Any, recovery_state: Any) -> tuple[Any, dict[str, Any], float, float]:
        resume = _resume_ref(recovery_state)
        try:
            if resume is not None:
                rs = resume if isinstance(resume, RecoveryState) else RecoveryState.from_run(resume, self.tracker)
                cfg = _resumed_config(rs, config)
                if rs.completed and rs.generation >= cfg.EPISODES:
                    return self._already_completed(rs)
                data, report, _ = self._resolve_data(df if df is not None else _recorded_source(rs))
                data_changed = self._check_fingerprint(rs, data)
                start, requested, repairs = rs.training_state, {}, []
            else:
                requested, cfg, repairs = self._resolve_config(config)
                data, report, data_repair = self._resolve_data(df)
                repairs += [data_repair] if data_repair is not None else []
                start, data_changed = _as_state(recovery_state), False
            episode_repair = fit_episode_to_data(cfg, training_bars(data, cfg))
            if episode_repair is not None:
                repairs.append(episode_repair)
                cfg = episode_repair.apply(cfg)
            self.data_report = report
            if resume is not None:
                self._reopen_session(rs, cfg)  # a session busy elsewhere is refused here
        except (ConfigValidationError, DataValidationError, FileNotFoundError, ResumeError, CheckpointError) as exc:
            # the caller's mistake, found before any attempt: nothing was trained, nothing half-written
            return None, {"error": f"{type(exc).__name__}: {exc}", "message": str(exc), "attempts": 0,
                          "bad_input": True}, float("-inf"), self.elapsed()
        if resume is None:
            self._open_session(requested, cfg, repairs, _source_label(df))
        self.plan = _Plan(cfg, data, start, data_changed=data_changed)
        try:
            model, metrics, best_reward = self._retrying()
            version = self._register(model, metrics)
            self._log_plots(model)
        except KeyboardInterrupt:
            self._close_session("interrupted", "KILLED")
            raise
        except BaseException as exc:
            self._close_session("failed", "FAILED")
            metrics = {"error": f"{type(exc).__name__}: {exc}", "attempts": self.total_attempts,
                       "session_run_id": self.run_id, "repairs": [r.summary() for r in self.repairs]}
            return None, metrics, float("-inf"), self.elapsed()
        self._close_session("completed", "FINISHED", {TAG_FINAL_SHA: metrics["final_params_sha256"]})
        metrics = {**metrics, "attempts": self.total_attempts, "session_run_id": self.run_id, "model_version": version,
                   "repairs": [r.summary() for r in self.repairs]}
        return model, metrics, best_reward, self.elapsed()

    @property
    def total_attempts(self) -> int:
        """Attempts of the whole session, earlier processes' included."""
        return self.attempt_offset + len(self.attempts)

    @property
    def tracker(self) -> Tracker:
        """Opened on first use: bad input found before that leaves no store behind."""
        return self.system.tracker

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def _already_completed(self, rs: RecoveryState) -> tuple[Any, dict[str, Any], float, float]:
        self.run_id = self.system.session_run_id = rs.session_run_id
        best = rs.training_state.es.best_reward if rs.training_state is not None else float("-inf")
        message = (f"session {rs.session_run_id} already completed {rs.generation} generations "
                   f"(final params sha256 {rs.final_params_sha256}); nothing to do (pass more episodes to extend it)")
        return None, {"already_completed": True, "message": message, "session_run_id": rs.session_run_id,
                      "final_params_sha256": rs.final_params_sha256, "attempts": 0}, best, 0.0

    def _check_fingerprint(self, rs: RecoveryState, data: pd.DataFrame) -> bool:
        """True when the data changed and the change is allowed; ResumeError when it is not allowed."""
        if rs.data_fingerprint is None or data_fingerprint(data) == rs.data_fingerprint:
            return False
        if not self.system.allow_data_change:
            raise ResumeError(f"the data differs from the data session {rs.session_run_id} trained on "
                              "(fingerprint mismatch); pass the original data, or allow the change with "
                              "--allow-data-change")
        return True

    def _reopen_session(self, rs: RecoveryState, cfg: TrainingConfig) -> None:
        """Continue an existing session: claim its lease, reopen its run, carry on its numbering."""
        self.run_id = self.system.session_run_id = rs.session_run_id
        self.tracker.experiment_id = self.tracker.experiment_of(self.run_id)  # attempts join the session's experiment
        claim_lease(self.tracker, self.run_id)
        self.tracker.client.update_run(self.run_id, status="RUNNING")
        self.tracker.set_tags(self.run_id, {TAG_STATUS: "running"})
        self.attempt_offset = rs.attempts
        self.resumed_from = rs
        self.previous_rows = [row for run in attempt_runs(self.tracker, self.run_id)
                              for row in self.tracker.metric_rows(run.info.run_id,
                                                                  int(run.data.tags.get(TAG_ATTEMPT, 0)))]
        self.system.reporter.session_started(self.run_id, cfg)

    def _resolve_config(self, config: Any) -> tuple[dict[str, Any], TrainingConfig, list[Repair]]:
        if isinstance(config, (str, Path)):
            try:
                raw = json.loads(Path(config).read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                preset = self.system.preset_source(DEFAULT_BUCKET)
                repair = Repair("fall_back_to_backup_config", f"{config} is not valid JSON ({exc.msg}, line "
                                f"{exc.lineno}): the bucket preset is used", type(exc).__name__)
                return {"config_file": str(config)}, TrainingConfig.from_dict(preset), [repair]
            if not isinstance(raw, dict):
                raise ConfigValidationError([ConfigProblem("", type(raw).__name__,
                                                           f"{config} must hold a JSON object of config keys")])
        elif isinstance(config, TrainingConfig):
            raw = config.to_dict()
        else:
            raw = dict(config or {})
        cfg, repairs = validate_and_repair(raw, self.system.preset_source)
        requested = {**self.system.preset_source(cfg.BUCKET), **{str(k): v for k, v in raw.items()}}
        if "MIN_CHECKPOINT_INTERVAL" not in {str(k).upper() for k in raw}:
            cfg = cfg.replace(MIN_CHECKPOINT_INTERVAL=self.system.min_checkpoint_interval)
        return requested, cfg, repairs

    def _resolve_data(self, df: Any) -> tuple[pd.DataFrame, DataReport, Repair | None]:
        if df is None or (isinstance(df, str) and df == BUILTIN_DATA):
            from btc_ai.domain.synthetic import default_candles

            df = default_candles()
        try:
            data, report = load_candles(df)
            return data, report, None
        except DataValidationError as exc:
            if not isinstance(df, pd.DataFrame):
                raise
            cleaned, actions = clean_candles(df)
            data, report = load_candles(cleaned)
            repair = Repair("clean_data", f"the data failed validation ({exc}): cleaned", "DataValidationError",
                            {}, cleaned, tuple(actions))
            return data, report, repair

    def _open_session(self, requested: Mapping[str, Any], cfg: TrainingConfig, repairs: list[Repair],
                      data_source: str) -> None:
        tracker = self.tracker
        self.run_id = tracker.create_run("session", name=f"{cfg.BUCKET.lower()}-session",
                                         tags={TAG_STATUS: "running", "btc_ai.bucket": cfg.BUCKET,
                                               TAG_DATA_SOURCE: data_source, LEASE_OWNER: lease_token(),
                                               LEASE_HEARTBEAT: f"{time.time():.0f}"})
        self.system.session_run_id = self.run_id
        tracker.log_params(self.run_id, requested)
        if self.data_report is not None:  # the data as read from its source, with what the loader repaired
            tracker.log_dict(self.run_id, {"source": data_source, "report": self.data_report.to_dict()},
                             "data_report.json")
        for repair in repairs:
            self._log_repair(repair, parent=self.run_id)
        self.system.reporter.session_started(self.run_id, cfg)

    def _close_session(self, status: str, run_status: str, tags: Mapping[str, Any] | None = None) -> None:
        tracker = self.tracker
        rows = self.previous_rows + [row for record in self.attempts for row in record.history]
        if rows:
            tracker.log_table_csv(self.run_id, rows, "performance_history.csv")
        best = max((row.get("validation/best_reward", float("-inf")) for row in rows), default=float("-inf"))
        summary = {"attempts": self.total_attempts, "elapsed_time": self.elapsed(), "repairs": len(self.repairs)}
        if np.isfinite(best):
            summary["best_reward"] = best
        tracker.log_values(self.run_id, summary, step=max((row["generation"] for row in rows), default=0))
        # the lease is released in the same write as the final status
        tracker.set_tags(self.run_id, {TAG_STATUS: status, LEASE_OWNER: "", **(tags or {})})
        tracker.end_run(self.run_id, run_status)

    def _register(self, model: Any, metrics: Mapping[str, Any]) -> str:
        cfg = self.attempts[-1].plan.config
        self.tracker.log_values(self.run_id, {k: v for k, v in metrics.items()
                                              if k.startswith(("validation/", "best/"))}, step=int(metrics["generations"]))
        example = np.zeros((2, model.spec.n_inputs), dtype=np.float32)  # 2 rows: the batch size stays dynamic
        return self.tracker.log_and_register_model(self.run_id, model, registered_model_name(cfg.BUCKET), example,
                                                   tags={"session_run_id": self.run_id})

    def _log_plots(self, model: Any) -> None:
        """Fitness history and equity curve PNGs under ``plots/`` of the session: a picture that cannot be
        drawn is a warning (tag ``btc_ai.plots_warning``), never a failed training."""
        from btc_ai.desk.session_plots import write_session_plots

        plan = self.attempts[-1].plan
        try:
            if self.tracker.offline:  # they are drawn from the store's records
                raise ConnectionError(f"the tracking store is unreachable; later: btc-ai report {self.run_id} --plots")
            plots = write_session_plots(self.tracker, self.run_id,
                                        equity=lambda: validation_equity(model, plan.config, plan.data))
            warning = plots.equity_skipped and f"equity curve skipped: {plots.equity_skipped}"
        except Exception as exc:
            warning = f"plots skipped: {type(exc).__name__}: {exc}"
        if warning:
            _log.warning("session %s: %s", self.run_id, warning)
            with contextlib.suppress(Exception):
                self.tracker.set_tags(self.run_id, {"btc_ai.plots_warning": warning[:5000]})

    def _log_repair(self, repair: Repair, parent: str) -> str:
        run = self.tracker.create_run("repair", parent=parent, name=repair.rule,
                                      tags={"btc_ai.repair_rule": repair.rule, "btc_ai.triggered_by": repair.triggered_by,
                                            "btc_ai.session": self.run_id})
        self.tracker.log_params(run, repair.as_params())
        self.tracker.end_run(run, "FINISHED")
        self.repairs.append(repair)
        return run

    # -- attempts -------------------------------------------------------------------------------

    def _retrying(self) -> tuple[Any, dict[str, Any], float]:
        system = self.system
        retrying = Retrying(
            retry=retry_if_exception(system.is_recoverable) & retry_if_exception(self._repair_planned),
            stop=stop_after_attempt(system.max_retries + 1) | stop_when_event_set(system.stop_event),
            wait=system.wait,
            sleep=system.sleep,
            before=self._open_attempt,
            before_sleep=self._record_repair,
            reraise=True,
        )
        return retrying(self._attempt)

    def _repair_planned(self, exc: BaseException) -> bool:
        return self.plan is not None and self.plan is not self.attempts[-1].plan

    def _open_attempt(self, state: RetryCallState) -> None:
        plan = self.plan
        assert plan is not None
        number = self.attempt_offset + state.attempt_number
        tags: dict[str, Any] = {TAG_ATTEMPT: number, "btc_ai.start_generation": plan.start.generation if plan.start else 0}
        if plan.repair_run_id:
            tags[TAG_REPAIRED_BY] = plan.repair_run_id
        if self.resumed_from is not None and state.attempt_number == 1:
            rs = self.resumed_from
            tags["btc_ai.resumed_from"] = rs.checkpoint.artifact_path + "@" + rs.checkpoint.run_id if rs.checkpoint \
                else "generation 0 (no usable checkpoint)"
            if rs.skipped:
                tags["btc_ai.skipped_checkpoints"] = " | ".join(rs.skipped)[:5000]
            if rs.stale:
                tags["btc_ai.stale_attempts"] = " | ".join(rs.stale)[:5000]
        run = self.tracker.create_run("attempt", parent=self.run_id, name=f"attempt-{number}", tags=tags)
        self.tracker.log_params(run, plan.config.to_dict())
        self.attempts.append(_AttemptRecord(number, run, plan))
        self.system.reporter.attempt_started(number, run, plan.repair)

    def _record_repair(self, state: RetryCallState) -> None:
        """Another attempt follows: the planned repair becomes a child run of the failed attempt."""
        assert self.plan is not None and self.plan.repair is not None
        self.plan.repair_run_id = self._log_repair(self.plan.repair, parent=self.attempts[-1].run_id)

    def _attempt(self) -> tuple[Any, dict[str, Any], float]:
        record = self.attempts[-1]
        plan = record.plan
        logger = _AttemptLogger(self.tracker, record.run_id, self.system.reporter, record.number, self.run_id,
                                self.system.keep_checkpoints)
        save_dir = Path(self.save_path) if self.save_path is not None else self.system.checkpoint_dir / self.run_id
        try:
            model, metrics, best_reward, _ = self.training_func(
                plan.config, plan.data, save_dir, plan.start, callbacks=logger,
                emergency_checkpoints=self.system.enable_emergency_checkpoints, allow_data_change=plan.data_changed,
            )
        except BaseException as exc:
            self._attempt_failed(record, logger, exc)
            raise
        logger.close()
        record.history = logger.history
        record.outcome = "success"
        self.tracker.set_tags(record.run_id, {TAG_OUTCOME: "success", TAG_ERROR_TYPE: ""})
        self.tracker.end_run(record.run_id, "FINISHED")
        return model, metrics, best_reward

    def _attempt_failed(self, record: _AttemptRecord, logger: _AttemptLogger, exc: BaseException) -> None:
        """Close the failed attempt: plan the repair, write the report, end the run. Never raises."""
        with contextlib.suppress(Exception):  # the store failed too; the report below still says what happened
            logger.close()
        record.history = logger.history
        interrupted = isinstance(exc, KeyboardInterrupt)
        classification = classify(exc, self.system.extra_recoverable)
        if logger.last_good is not None and logger.generations_done:
            self.last_good_config = record.plan.config
        repair, decision = (None, "interrupted: never retried") if interrupted else self._plan_next(record, logger, exc,
                                                                                                   classification)
        record.outcome = ("interrupted" if interrupted else
                          "recoverable_error" if classification.recoverable else "unrecoverable_error")
        record.error = f"{type(exc).__name__}: {exc}"
        record.error_obj = exc
        record.failure = (type(exc).__name__, logger.last_generation)
        report = build_error_report(
            exc, classification=classification, attempt=record.number, generation_reached=logger.last_generation,
            last_metrics=logger.last_metrics, config=record.plan.config.to_dict(),
            data_summary=self.data_report.to_dict() if self.data_report else {},
            repair=repair.summary() if repair else None, decision=decision,
            session_run_id=self.run_id, attempt_run_id=record.run_id,
        )
        try:
            self.tracker.log_dict(record.run_id, report, "error_report.json")
            self.tracker.log_text(record.run_id, render_markdown(report), "error_report.md")
            self.tracker.set_tags(record.run_id, {TAG_OUTCOME: record.outcome, TAG_ERROR_TYPE: type(exc).__name__,
                                                  "btc_ai.generation_reached": logger.last_generation})
            self.tracker.end_run(record.run_id, "KILLED" if interrupted else "FAILED")
        finally:
            self.system.reporter.attempt_failed(record.number, report)
            if self.system.error_handler is not None:
                self.system.error_handler(report)

    def _plan_next(self, record: _AttemptRecord, logger: _AttemptLogger, exc: BaseException,
                   classification: Classification) -> tuple[Repair | None, str]:
        """Choose the repair and the next plan; leaves ``self.plan`` unchanged when no retry makes sense."""
        if not classification.recoverable:
            return None, f"unrecoverable ({classification.reason}): no retry"
        previous = self.attempts[-2] if len(self.attempts) > 1 else None
        failure = (type(exc).__name__, logger.last_generation)
        nans = 1 + sum(isinstance(r.error_obj, NaNError) for r in self.attempts[:-1])  # this failure included
        if isinstance(exc, NaNError) and nans > self.system.max_nan_repairs:
            return None, (f"non-finite numbers {nans} times in this session, more than max_nan_repairs="
                          f"{self.system.max_nan_repairs}: the training diverges, stopping")
        if previous is not None and previous.failure == failure and record.plan.repair is not None:
            return None, (f"the same failure ({failure[0]} at generation {failure[1]}) repeated after the repair "
                          f"'{record.plan.repair.rule}': stopping the retries")
        plan = record.plan
        start = logger.last_good if logger.last_good is not None else plan.start
        ctx = RepairContext(
            error=exc, config=plan.config, preset=self.system.preset_source(plan.config.BUCKET), data=plan.data,
            has_checkpoints=start is not None, backup_config=self.last_good_config,
            train_bars=training_bars(plan.data, plan.config),
        )
        repair = choose_repair(ctx)
        data = repair.data if repair.data is not None else plan.data
        next_plan = _Plan(repair.apply(plan.config), data, start, repair,
                          data_changed=plan.data_changed or repair.data is not None)
        if next_plan.signature() == plan.signature():
            return repair, ("retrying would change nothing (same config, data and starting state) and the failure is "
                            "deterministic: stopping the retries")
        if record.number >= self.system.max_retries + 1:
            return repair, f"no retries left (max_retries={self.system.max_retries})"
        self.plan = next_plan
        where = f"generation {start.generation}" if start is not None else "the start"
        return repair, f"retry from {where} after repair '{repair.rule}'"


def _resume_ref(recovery_state: Any) -> RecoveryState | str | None:
    """A run ID or model URI (or a RecoveryState) to resume from; None for a local state or checkpoint file."""
    if isinstance(recovery_state, RecoveryState):
        return recovery_state
    if isinstance(recovery_state, str) and not Path(recovery_state).exists():
        return recovery_state
    return None


def _resumed_config(rs: RecoveryState, overrides: Any) -> TrainingConfig:
    """The recovered config (after repairs) with the caller's overrides, e.g. more EPISODES."""
    if isinstance(overrides, TrainingConfig):
        overrides = overrides.overrides()
    changes = {normalize_key(k): v for k, v in dict(overrides or {}).items()}
    changes = {k: v for k, v in changes.items() if rs.config.to_dict().get(k) != v}
    structural = sorted(set(changes) & STRUCTURAL_KEYS)
    if structural and rs.training_state is not None:
        raise ResumeError(f"cannot change {', '.join(structural)} when resuming: the checkpoint fixes the network shape")
    return rs.config.replace(**changes) if changes else rs.config


def _source_label(df: Any) -> str:
    if df is None:
        return BUILTIN_DATA
    if isinstance(df, (str, Path)):
        return str(Path(df).resolve())
    return "dataframe"


def _recorded_source(rs: RecoveryState) -> Any:
    if rs.data_source in (None, BUILTIN_DATA):
        return None
    if rs.data_source == "dataframe":
        raise ResumeError(f"session {rs.session_run_id} trained on a DataFrame passed in Python; pass the same data "
                          "again (df=... or --data_path)")
    if not Path(rs.data_source).exists():
        raise ResumeError(f"the data file {rs.data_source} of session {rs.session_run_id} is not here; pass it "
                          "with --data_path")
    return rs.data_source


def _as_state(recovery_state: Any) -> TrainingState | None:
    if recovery_state is None or isinstance(recovery_state, TrainingState):
        return recovery_state
    from btc_ai.training.checkpoint import load_checkpoint

    return load_checkpoint(recovery_state)


class _AttemptLogger(AttemptLogger):
    """The attempt's MLflow logger, plus what the recovery needs: history rows and the last good state."""

    def __init__(self, tracker: Tracker, run_id: str, reporter: ProgressReporter, attempt: int, session_id: str,
                 keep_checkpoints: int | None) -> None:
        super().__init__(tracker, run_id, keep_periodic=keep_checkpoints)
        self.session_id = session_id
        self.last_heartbeat = time.monotonic()
        self.reporter = reporter
        self.attempt = attempt
        self.history: list[dict[str, Any]] = []
        self.last_good: TrainingState | None = None
        self.generations_done = 0

    def on_generation(self, generation: int, metrics: Mapping[str, float]) -> None:
        super().on_generation(generation, metrics)
        self.generations_done += 1
        self.history.append({"generation": generation, "attempt": self.attempt, **metrics})
        self.reporter.generation_done(generation, metrics)

    def on_checkpoint(self, state: TrainingState, path: Path | None, sha256: str | None, *, emergency: bool) -> None:
        super().on_checkpoint(state, path, sha256, emergency=emergency)
        self.last_good = state
        if time.monotonic() - self.last_heartbeat > HEARTBEAT_S:
            self.last_heartbeat = time.monotonic()
            self.writer.submit(heartbeat, self.tracker, self.session_id)
