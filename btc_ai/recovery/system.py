"""`TrainingRecoverySystem`: a training as an MLflow session of attempts, retried by a tenacity policy.

Each attempt is a child run; a recoverable error is classified, answered by a repair (a child run of
the failed attempt) and retried from the last good state; every run ends with a terminal status.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tenacity import wait_exponential_jitter

from btc_ai.domain.config import TrainingConfig
from btc_ai.domain.errors import UserInputError
from btc_ai.domain.presets import preset_config
from btc_ai.recovery.descriptions import after_failure
from btc_ai.recovery.inputs import (
    load_state,
    new_session_inputs,
    resume_reference,
    resumed_config,
    resumed_inputs,
)
from btc_ai.recovery.repairs import PresetSource
from btc_ai.recovery.reporter import ProgressReporter
from btc_ai.recovery.retry import Budget
from btc_ai.recovery.session import Session, SessionSettings, TrainingFunc
from btc_ai.recovery.state import RecoveryState
from btc_ai.recovery.validation import ValidatedConfig, validated_config
from btc_ai.tracking.run_model import DataInputs, ParentLink, RunModel, registered_model_name
from btc_ai.tracking.tracker import Tracker
from btc_ai.training import train_model
from btc_ai.training.checkpoint import TrainingState

__all__ = ["ProgressReporter", "SessionResult", "TrainingFunc", "TrainingRecoverySystem", "registered_model_name"]


@dataclass
class SessionResult:
    """How a training command ended: ``completed`` (a model), ``failed`` (``error`` says why) or
    ``already_completed`` (a resume with nothing left to do; ``message`` says so)."""

    outcome: str
    model: Any
    metrics: dict[str, Any]
    best_reward: float
    elapsed: float
    session_run_id: str | None = None
    error: str | None = None
    message: str | None = None
    repairs: list[str] = field(default_factory=list)

    def as_tuple(self) -> tuple[Any, dict[str, Any], float, float]:
        return self.model, self.metrics, self.best_reward, self.elapsed


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
        date_format: str | None = None,
    ) -> None:
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.checkpoint_dir = Path(checkpoint_dir)
        self.budget = Budget(max_retries, max_nan_repairs)  # the one budget of a command's retries
        # the specification's argument is MIN_CHECKPOINT_INTERVAL's default for a config that does not name the
        # key: folded into the config where it is validated (start_training_with_recovery), never applied later
        self.min_checkpoint_interval = min_checkpoint_interval
        self.enable_emergency_checkpoints = enable_emergency_checkpoints
        self._tracker = tracker
        self._runs: RunModel | None = None
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
        self.allow_data_change = allow_data_change
        self.date_format = date_format  # how a data file's text dates read (load_candles' date_format)

    @property
    def max_retries(self) -> int:
        return self.budget.max_retries

    @property
    def tracker(self) -> Tracker:
        if self._tracker is None:
            self._tracker = Tracker(self._tracking_uri, self._experiment)
        return self._tracker

    @property
    def runs(self) -> RunModel:
        """The run model on this system's store (the store is opened on first use)."""
        if self._runs is None:
            self._runs = RunModel(self.tracker)
        return self._runs

    @property
    def opened_tracker(self) -> Tracker | None:
        """The tracker if this system opened (or was given) one, without opening it."""
        return self._tracker

    def validated(self, config: TrainingConfig | Mapping[str, Any] | str | Path | None) -> ValidatedConfig:
        """``config`` validated (and repaired) with this system's presets: the one validation of a command."""
        return validated_config(config, self.preset_source, {"MIN_CHECKPOINT_INTERVAL": self.min_checkpoint_interval})

    def train(
        self,
        training_func: TrainingFunc = train_model,
        config: ValidatedConfig | None = None,
        df: pd.DataFrame | str | Path | None = None,
        save_path: str | Path | None = None,
        recovery_state: RecoveryState | TrainingState | str | Path | None = None,
        *,
        overrides: Mapping[str, Any] | None = None,
        parent: ParentLink | None = None,
        data_origin: DataInputs | None = None,
    ) -> SessionResult:
        """Train a new session on ``config`` (validated once, by the caller: `validated`), from the start or from
        ``recovery_state`` (a TrainingState or checkpoint file); or resume the session ``recovery_state`` names
        (a run ID, model URI or RecoveryState: ``config`` None, ``overrides`` such as more EPISODES). A mistake
        in the inputs raises `UserInputError` before anything is created on the store; a training that fails is
        a result with ``outcome="failed"``. With ``parent`` a new session run is nested under that run (a
        walk-forward's fold), with the link's name and tags. ``data_origin`` names where a DataFrame ``df`` was
        cut from (a fold's files): the session's dataset inputs carry that name, source and files instead of
        "dataframe"."""
        resume = resume_reference(recovery_state)
        if not isinstance(config, (ValidatedConfig, type(None))) or (config is not None and resume is not None) or \
                (config is None and recovery_state is None):
            raise TypeError("train takes a ValidatedConfig for a new session (validate a dict once, at the edge: "
                            "system.validated(...)), or a resume reference with overrides; got "
                            f"{type(config).__name__} and {type(recovery_state).__name__}")
        try:
            if resume is not None:
                rs = resume if isinstance(resume, RecoveryState) else RecoveryState.from_run(resume, self.tracker)
                cfg = resumed_config(rs, overrides)
                stopped = rs.stopped_early and cfg.EPISODES == rs.config.EPISODES  # not extended since
                if rs.completed and (rs.generation >= cfg.EPISODES or stopped):
                    return self._already_completed(rs)
                inputs = resumed_inputs(rs, cfg, df, date_format=self.date_format,
                                        allow_data_change=self.allow_data_change)
            else:
                start = load_state(recovery_state)
                if config is None:  # a local checkpoint holds the config it trained with, never a preset
                    config = self.validated(dict(start.config) if start is not None else {})
                inputs = new_session_inputs(config, df, start, self.date_format)
        except FileNotFoundError as exc:  # a data or checkpoint file named by the caller
            raise UserInputError(f"{exc.filename or exc}: no such file; check the path") from exc
        session = Session(self.runs, self._settings(), self.reporter, training_func, save_path, parent)
        session.data_origin = data_origin
        try:
            session.open(inputs)
        finally:
            self.session_run_id = session.run_id or self.session_run_id
        try:
            model, metrics, best_reward = session.train()
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            error = f"{type(exc).__name__}: {exc}"
            repairs = [r.summary() for r in session.repairs]
            metrics = {"error": error, "attempts": session.total_attempts, "session_run_id": session.run_id,
                       "repairs": repairs}
            if session.registration is not None or session.unregistered:
                metrics["model_registration"] = after_failure(session.registration, session.unregistered)
            return SessionResult("failed", None, metrics, float("-inf"), session.elapsed(), session.run_id, error,
                                 repairs=repairs)
        repairs = [r.summary() for r in session.repairs]
        metrics = {**metrics, "attempts": session.total_attempts, "session_run_id": session.run_id, "repairs": repairs}
        return SessionResult("completed", model, metrics, best_reward, session.elapsed(), session.run_id,
                             repairs=repairs)

    def start_training_with_recovery(
        self,
        training_func: TrainingFunc = train_model,
        config: TrainingConfig | Mapping[str, Any] | str | Path | None = None,
        df: pd.DataFrame | str | Path | None = None,
        save_path: str | Path | None = None,
        recovery_state: TrainingState | str | Path | None = None,
    ) -> tuple[Any, dict[str, Any], float, float]:
        """Train and return ``(model, metrics, best_reward, elapsed_time)``.

        On failure ``model`` is None and ``metrics["error"]`` says why (a mistake in the inputs too:
        then nothing was trained and nothing created). ``config`` may be a dict of config keys, a
        TrainingConfig or the path of a JSON file (on a resume: the keys to change, e.g. more EPISODES);
        ``df`` candles, a data file, or None for the built-in default data.
        """
        started = time.perf_counter()
        try:  # the Python edge: the config is validated here, once
            if resume_reference(recovery_state) is not None:
                overrides = config.overrides() if isinstance(config, TrainingConfig) else dict(config or {})
                result = self.train(training_func, None, df, save_path, recovery_state, overrides=overrides)
            else:
                try:
                    checked = None if config is None and recovery_state is not None else self.validated(config)
                except FileNotFoundError as exc:  # a config file named by the caller
                    raise UserInputError(f"{exc.filename or exc}: no such file; check the path") from exc
                result = self.train(training_func, checked, df, save_path, recovery_state)
            return result.as_tuple()
        except UserInputError as exc:
            # the caller's mistake, found before any attempt: nothing was trained, nothing half-written
            return None, {"error": f"{type(exc).__name__}: {exc}", "message": str(exc), "attempts": 0}, \
                float("-inf"), time.perf_counter() - started

    def _settings(self) -> SessionSettings:
        return SessionSettings(self.budget, self.preset_source, self.extra_recoverable, self.wait, self.sleep,
                               self.stop_event, self.checkpoint_dir, self.keep_checkpoints,
                               self.enable_emergency_checkpoints, self.error_handler)

    def _already_completed(self, rs: RecoveryState) -> SessionResult:
        self.session_run_id = rs.session_run_id
        best = rs.training_state.es.best_reward if rs.training_state is not None else float("-inf")
        message = (f"session {rs.session_run_id} already completed {rs.generation} generations "
                   f"(final params sha256 {rs.final_params_sha256}); nothing to do (pass --generations N, more "
                   "than it trained, to extend it)")
        metrics = {"already_completed": True, "message": message, "session_run_id": rs.session_run_id,
                   "final_params_sha256": rs.final_params_sha256, "attempts": 0}
        return SessionResult("already_completed", None, metrics, best, 0.0, rs.session_run_id, message=message)
