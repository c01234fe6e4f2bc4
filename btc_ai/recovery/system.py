"""`TrainingRecoverySystem`: runs a training as an MLflow session of attempts and finishes it cleanly."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..config import TrainingConfig
from ..tracking import (
    TAG_ATTEMPT,
    TAG_ERROR_TYPE,
    TAG_FINAL_SHA,
    TAG_OUTCOME,
    TAG_STATUS,
    AttemptLogger,
    Tracker,
)
from ..training import train_model

TrainingFunc = Callable[..., tuple[Any, dict[str, Any], float, float]]


def registered_model_name(bucket: str) -> str:
    """``btc-ai-<bucket>`` in lower case: one registry entry per trading style."""
    return f"btc-ai-{bucket.lower()}"


class TrainingRecoverySystem:
    """Trains with a record in MLflow: one session run, one attempt run per try, the model registered."""

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
    ) -> None:
        self.checkpoint_dir = Path(checkpoint_dir)
        self.max_retries = max_retries
        self.min_checkpoint_interval = min_checkpoint_interval
        self.enable_emergency_checkpoints = enable_emergency_checkpoints
        self._tracker = tracker
        self._tracking_uri = tracking_uri
        self._experiment = experiment
        self.reporter = reporter or ProgressReporter()
        self.session_run_id: str | None = None

    @property
    def tracker(self) -> Tracker:
        if self._tracker is None:
            self._tracker = Tracker(self._tracking_uri, self._experiment)
        return self._tracker

    def start_training_with_recovery(
        self,
        training_func: TrainingFunc = train_model,
        config: TrainingConfig | Mapping[str, Any] | None = None,
        df: pd.DataFrame | str | Path | None = None,
        save_path: str | Path | None = None,
        recovery_state: Any = None,
    ) -> tuple[Any, dict[str, Any], float, float]:
        """Train and return ``(model, metrics, best_reward, elapsed_time)``; ``model`` None on failure."""
        started = time.perf_counter()
        cfg = (
            config
            if isinstance(config, TrainingConfig)
            else TrainingConfig.from_dict({"MIN_CHECKPOINT_INTERVAL": self.min_checkpoint_interval, **(config or {})})
        )
        tracker = self.tracker
        session = tracker.create_run("session", name=f"{cfg.BUCKET.lower()}-session",
                                     tags={TAG_STATUS: "running", "btc_ai.bucket": cfg.BUCKET})
        self.session_run_id = session
        self.reporter.session_started(session, cfg)
        tracker.log_params(session, cfg.to_dict())
        attempt_no = 1
        attempt = tracker.create_run("attempt", parent=session, name=f"attempt-{attempt_no}",
                                     tags={TAG_ATTEMPT: attempt_no})
        tracker.log_params(attempt, cfg.to_dict())
        logger = _ReportingLogger(tracker, attempt, self.reporter)
        save_dir = Path(save_path) if save_path is not None else self.checkpoint_dir / session
        try:
            model, metrics, best_reward, _ = training_func(
                cfg, df, save_dir, recovery_state, callbacks=logger,
                emergency_checkpoints=self.enable_emergency_checkpoints,
            )
        except BaseException as exc:
            logger.close()
            interrupted = isinstance(exc, KeyboardInterrupt)
            tracker.set_tags(attempt, {TAG_OUTCOME: "interrupted" if interrupted else "unrecoverable_error",
                                       TAG_ERROR_TYPE: type(exc).__name__})
            tracker.end_run(attempt, "KILLED" if interrupted else "FAILED")
            tracker.set_tags(session, {TAG_STATUS: "interrupted" if interrupted else "failed"})
            tracker.end_run(session, "KILLED" if interrupted else "FAILED")
            if interrupted:
                raise
            elapsed = time.perf_counter() - started
            return None, {"error": f"{type(exc).__name__}: {exc}", "attempts": attempt_no}, float("-inf"), elapsed
        logger.close()
        tracker.set_tags(attempt, {TAG_OUTCOME: "success", TAG_ERROR_TYPE: ""})
        tracker.end_run(attempt, "FINISHED")
        elapsed = time.perf_counter() - started
        history = [{"attempt": attempt_no, **row} for row in metrics.get("history", [])]
        tracker.log_table_csv(session, history, "performance_history.csv")
        summary = {"best_reward": best_reward, "attempts": attempt_no, "elapsed_time": elapsed}
        summary.update({k: v for k, v in metrics.items() if k.startswith("validation/")})
        tracker.log_values(session, summary, step=int(metrics["generations"]))
        example = np.zeros((2, model.spec.n_inputs), dtype=np.float32)  # 2 rows: batch size stays dynamic
        version = tracker.log_and_register_model(session, model, registered_model_name(cfg.BUCKET), example,
                                                 tags={"session_run_id": session})
        tracker.set_tags(session, {TAG_STATUS: "completed", TAG_FINAL_SHA: metrics["final_params_sha256"],
                                   "btc_ai.model_version": version})
        tracker.end_run(session, "FINISHED")
        metrics = {**metrics, "attempts": attempt_no, "session_run_id": session, "model_version": version}
        return model, metrics, best_reward, elapsed


class ProgressReporter:
    """What a person watching the training is told; silent here, the CLI prints."""

    def session_started(self, run_id: str, config: TrainingConfig) -> None:
        """A session run was created."""

    def generation_done(self, generation: int, metrics: Mapping[str, float]) -> None:
        """A generation finished (global generation number)."""


class _ReportingLogger(AttemptLogger):
    def __init__(self, tracker: Tracker, run_id: str, reporter: ProgressReporter) -> None:
        super().__init__(tracker, run_id)
        self.reporter = reporter

    def on_generation(self, generation: int, metrics: Mapping[str, float]) -> None:
        super().on_generation(generation, metrics)
        self.reporter.generation_done(generation, metrics)
