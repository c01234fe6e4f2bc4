"""A session: one logical training job as an MLflow session run — opened (or reopened on resume), its
attempts run under the retry policy, its model registered, its plots drawn, and closed with its status."""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tenacity import RetryCallState

from btc_ai.domain.config import TrainingConfig
from btc_ai.domain.metric_names import METRIC_BASELINE_PREFIX, METRIC_TEST_PREFIX
from btc_ai.domain.policy_files import PolicyCard
from btc_ai.domain.promotion import promotion_verdict
from btc_ai.recovery.attempts import Attempt, RecoveryLogger, close_failed_attempt
from btc_ai.recovery.classify import classify
from btc_ai.recovery.descriptions import after_failure, session_description, version_description, version_tags
from btc_ai.recovery.inputs import SessionInputs
from btc_ai.recovery.lease import claim_lease, lease_token
from btc_ai.recovery.repairs import PresetSource, Repair
from btc_ai.recovery.reporter import ProgressReporter
from btc_ai.recovery.retry import Budget, Failure, Plan, Retry, Stop, next_step, retry_policy
from btc_ai.recovery.session_plots import plots_off, write_session_plots
from btc_ai.recovery.signals import interrupts_held
from btc_ai.recovery.state import RecoveryState, logged_through
from btc_ai.tracking.registry import Registration
from btc_ai.tracking.run_model import (
    METRIC_BEST_GENERATION,
    METRIC_BEST_VALIDATION,
    SESSION_FIGURE_PREFIXES,
    TAG_MODEL_PARAMS,
    TAG_MODEL_VERSION,
    DataInputs,
    ParentLink,
    RunModel,
    SessionSummary,
    registered_model_name,
)
from btc_ai.tracking.system_metrics import system_metrics
from btc_ai.training import span_equities

_log = logging.getLogger(__name__)

TrainingFunc = Callable[..., tuple[Any, dict[str, Any], float, float]]


@dataclass(frozen=True)
class SessionSettings:
    """How a session goes about its attempts: the retry budget and waits, the repairs' presets, the error types
    configured as recoverable, where checkpoints go, and who hears of an error report."""

    budget: Budget
    preset_source: PresetSource
    extra_recoverable: tuple[type[BaseException], ...]
    wait: Any  # a tenacity wait
    sleep: Callable[[float], None]
    stop_event: threading.Event
    checkpoint_dir: Path
    keep_checkpoints: int | None
    emergency_checkpoints: bool
    error_handler: Callable[[dict[str, Any]], None] | None = None


class Session:
    """One call of ``start_training_with_recovery``: the session run and this command's attempts."""

    def __init__(self, runs: RunModel, settings: SessionSettings, reporter: ProgressReporter,
                 training_func: TrainingFunc, save_path: str | Path | None, parent: ParentLink | None = None):
        self.runs = runs
        self.settings = settings
        self.reporter = reporter
        self.training_func = training_func
        self.save_path = save_path
        self.started = time.perf_counter()
        self.run_id = ""
        self.plan: Plan | None = None
        self.decision: Retry | Stop | None = None  # after the newest failure: what comes next
        self.attempts: list[Attempt] = []
        self.data_report: Any = None
        self.data_source = ""  # where the data came from, as recorded (sources.source_text), builtin or dataframe
        self.last_good_config: TrainingConfig | None = None
        self.repairs: list[Repair] = []
        self.attempt_offset = 0  # attempts of this session made by earlier processes
        self.resumed_from: RecoveryState | None = None
        self.previous_rows: list[dict[str, Any]] = []
        self.logged_through = 0  # a resume: generations beyond its state an earlier attempt logged (see AttemptLogger)
        self.registration: Registration | None = None
        self.final_metrics: Mapping[str, Any] = {}  # the training's metrics, once it succeeded
        self.failed_before = 0  # attempts of earlier processes that did not succeed
        self.parent = parent  # a new session nested under another run (a walk-forward)
        self.data_origin: DataInputs | None = None  # the files a DataFrame was cut from (a walk-forward's fold)
        self.trained: tuple[Any, Mapping[str, Any]] | None = None  # the newest training that ran to its end
        self.unregistered = ""  # why a trained policy of a failed session is not registered

    @property
    def total_attempts(self) -> int:
        """Attempts of the whole session, earlier processes' included."""
        return self.attempt_offset + len(self.attempts)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    # -- the whole session ----------------------------------------------------------------------

    def open(self, inputs: SessionInputs) -> None:
        """Create the session run (or reopen the resumed one; a session busy elsewhere is refused here)."""
        self.data_report, self.data_source = inputs.report, inputs.source
        if inputs.resume is not None:
            self._reopen(inputs.resume, inputs.config)
            if inputs.data_changed:  # other data trains those generations differently: logged again
                self.logged_through = 0
                # the files now trained on: the next resume's reference
                self.runs.record_data_report(self.run_id, inputs.source, inputs.report.to_dict())
        else:
            try:
                with interrupts_held():  # the session's config is on the store before an interrupt can end it
                    self._create(inputs)
            except KeyboardInterrupt:
                if self.run_id:  # closed as interrupted, with its config: a resume trains what was asked for
                    with contextlib.suppress(Exception):
                        self._close("interrupted", "KILLED")
                raise
        self.plan = Plan(inputs.config, inputs.data, inputs.start, data_changed=inputs.data_changed)

    def train(self) -> tuple[Any, dict[str, Any], float]:
        """Run the attempts, register the model, draw the plots; close the session with its status."""
        try:
            model, metrics, best_reward = self._retrying()
            self.final_metrics = metrics
            version = self._register(model, metrics)
            self._log_plots(model)
        except KeyboardInterrupt:
            self._close("interrupted", "KILLED")
            raise
        except BaseException:
            self._register_after_failure()
            self._close("failed", "FAILED")
            raise
        self._close("completed", "FINISHED", final_sha=metrics["final_params_sha256"])
        registration = self.registration
        return model, {**metrics, "model_version": version, "model_name": registered_model_name(
            self.attempts[-1].plan.config.BUCKET), "model_new": registration.new if registration else False,
            "model_promotion": registration.verdict if registration else ""}, best_reward

    def _reopen(self, rs: RecoveryState, cfg: TrainingConfig) -> None:
        """Continue an existing session: claim its lease, reopen its run, carry on its numbering."""
        self.run_id = rs.session_run_id
        tracker = self.runs.tracker
        tracker.experiment_id = tracker.experiment_of(self.run_id)  # attempts join the session's experiment
        claim_lease(self.runs, self.run_id)
        self.runs.reopen_session(self.run_id)
        self.attempt_offset = rs.attempts
        self.resumed_from = rs
        earlier = self.runs.attempts(self.run_id)
        self.failed_before = sum(a.outcome != "success" for a in earlier)
        self.previous_rows = [row for attempt in earlier for row in self.runs.metric_rows(attempt)]
        self.logged_through = logged_through(rs.generation, earlier, self.previous_rows, cfg)
        self.reporter.session_started(self.run_id, cfg)

    def _create(self, inputs: SessionInputs) -> None:
        cfg, link = inputs.config, self.parent
        name = f"{cfg.BUCKET.lower()}-seed{cfg.SEED}-{time.strftime('%Y%m%d-%H%M%S')}"  # runs a user can tell apart
        self.run_id = self.runs.open_session(name=link.name if link else name,
                                             bucket=cfg.BUCKET, data_source=inputs.source, lease_owner=lease_token(),
                                             heartbeat=time.time(), parent=link.run_id if link else None,
                                             tags=link.tags if link else None)
        self.runs.record_config(self.run_id, cfg.to_dict(), inputs.requested)
        if self.data_report is not None:
            self.runs.record_data_report(self.run_id, inputs.source, self.data_report.to_dict())
        for repair in inputs.repairs:
            self._log_repair(repair, parent=self.run_id)
        self.reporter.repairs_made(list(inputs.repairs))
        self.reporter.session_started(self.run_id, cfg)

    def _close(self, status: str, run_status: str, final_sha: str | None = None) -> None:
        rows = self.previous_rows + [row for attempt in self.attempts for row in attempt.history]
        if rows:
            self.runs.record_history(self.run_id, rows)
        best = max((row.get(METRIC_BEST_VALIDATION, float("-inf")) for row in rows), default=float("-inf"))
        failed = self.failed_before + sum(a.outcome != "success" for a in self.attempts)
        summary = SessionSummary(self.total_attempts, failed, self.elapsed(), len(self.repairs),
                                 best if np.isfinite(best) else None)
        self.runs.close_session(self.run_id, status=status, run_status=run_status, summary=summary,
                                step=max((row["generation"] for row in rows), default=0), final_params_sha256=final_sha,
                                description=session_description(
                                    self.run_id, self.attempts, self.total_attempts, self.repairs, status,
                                    self.final_metrics, after_failure(self.registration, self.unregistered)))

    def _register(self, model: Any, metrics: Mapping[str, Any]) -> str:
        """Log and register the best policy, unless it is the one the session registered already."""
        attempt = self.attempts[-1]
        cfg = attempt.plan.config
        figures = {k: v for k, v in metrics.items() if k.startswith(SESSION_FIGURE_PREFIXES)}
        figures[METRIC_BEST_GENERATION] = float(metrics["best_generation"])  # on the run, and with the model
        self.runs.record_outcome(self.run_id, stop_reason=metrics["stop_reason"], test_span=metrics.get("test_span"))
        card = PolicyCard.of(cfg, metrics["best_params_sha256"], session_run_id=self.run_id,
                             best_generation=metrics["best_generation"])
        out_of_sample = (METRIC_TEST_PREFIX, METRIC_BASELINE_PREFIX)
        champion, verdict = promotion_verdict({k: v for k, v in metrics.items() if k.startswith(out_of_sample)})
        # a walk-forward fold is an evaluation of the trainer, not a candidate: it moves no alias by itself
        # (a search's held-out session is nested too, but it is the candidate the gate judges)
        fold = (self.parent is not None and not self.parent.candidate) or \
            (self.resumed_from is not None and self.resumed_from.nested)
        if champion and fold:
            verdict += " (a walk-forward fold: @champion not moved; btc-ai promote moves it)"
        rs = self.resumed_from
        previous = {TAG_MODEL_PARAMS: rs.model_params_sha256, TAG_MODEL_VERSION: rs.model_version} if rs else {}
        registration = self.runs.register_policy(
            self.run_id, model, card, name=registered_model_name(cfg.BUCKET), champion=champion,
            move_champion=champion and not fold,
            verdict=verdict, previous={k: v for k, v in previous.items() if v},
            tags=version_tags(self.run_id, self.data_report, attempt.run_id, cfg, metrics),
            description=version_description(self.run_id, cfg, metrics),
            figures=figures, step=int(metrics["generations"]), params=cfg.to_dict())
        self.registration = registration
        if not registration.new:
            return registration.version or "pending"
        return "pending" if registration.version is None else registration.version

    def _register_after_failure(self) -> None:
        """A training that ran to its end before its attempt failed (its last checkpoint commit refused): its
        policy is registered all the same, or why it could not be is kept for the session's record."""
        if self.trained is None or self.registration is not None:
            return
        model, metrics = self.trained
        try:
            self._register(model, metrics)
        except Exception as exc:
            self.unregistered = f"the trained policy could not be registered: {type(exc).__name__}: {exc}"
            _log.warning("session %s: %s", self.run_id, self.unregistered)

    def _log_plots(self, model: Any) -> None:
        """Fitness history and equity curve PNGs under ``plots/`` of the session: a picture that cannot be
        drawn is a warning (tag TAG_PLOTS_WARNING), never a failed training."""
        plan = self.attempts[-1].plan
        asked = False  # BTC_AI_PLOTS=off: said in the record, not warned about
        try:
            if self.runs.tracker.offline:  # they are drawn from the store's records
                raise ConnectionError(f"the tracking store is unreachable; later: btc-ai report {self.run_id} --plots")
            curves = functools.cache(lambda: span_equities(model, plan.config, plan.data))  # one split for both
            off = plots_off()
            plots = write_session_plots(self.runs, self.run_id, equity=lambda: curves()[0],
                                        test_equity=lambda: curves()[1], draw=off is None)
            warning = plots.equity_skipped and f"equity curve skipped: {plots.equity_skipped}"
            if off and not warning:
                warning, asked = f"plots not drawn ({off}); draw them with: btc-ai report {self.run_id} --plots", True
        except Exception as exc:
            warning = f"plots skipped: {type(exc).__name__}: {exc}"
        if warning:
            (_log.info if asked else _log.warning)("session %s: %s", self.run_id, warning)
            with contextlib.suppress(Exception):
                self.runs.warn_plots(self.run_id, warning)

    def _log_repair(self, repair: Repair, parent: str) -> str:
        run = self.runs.log_repair(parent=parent, session_id=self.run_id, rule=repair.rule,
                                   triggered_by=repair.triggered_by, reason=repair.reason, changes=repair.changes,
                                   data_actions=repair.data_actions)
        self.repairs.append(repair)
        return run

    # -- attempts, driven by the retry policy ---------------------------------------------------

    def _retrying(self) -> tuple[Any, dict[str, Any], float]:
        s = self.settings
        policy = retry_policy(decided_retry=lambda exc: isinstance(self.decision, Retry), budget=s.budget,
                              stop_event=s.stop_event, wait=s.wait, sleep=s.sleep, before=self._open_attempt,
                              before_sleep=self._record_repair)
        return policy(self._attempt)

    def decide(self, failure: Failure) -> Retry | Stop:
        """What comes after ``failure`` (see `btc_ai.recovery.retry.next_step`); a retry becomes the plan."""
        earlier = [a.failure for a in self.attempts[:-1] if a.failure is not None]
        self.decision = next_step(failure, earlier, retries_used=len(self.attempts) - 1, budget=self.settings.budget,
                                  preset_source=self.settings.preset_source, backup_config=self.last_good_config)
        if isinstance(self.decision, Retry):
            self.plan = self.decision.plan
        return self.decision

    def _open_attempt(self, state: RetryCallState) -> None:
        plan = self.plan
        assert plan is not None
        number = self.attempt_offset + state.attempt_number
        resumed_from = skipped = stale = None
        if self.resumed_from is not None and state.attempt_number == 1:
            rs = self.resumed_from
            resumed_from = rs.checkpoint.artifact_path + "@" + rs.checkpoint.run_id if rs.checkpoint \
                else "generation 0 (no usable checkpoint)"
            skipped, stale = rs.skipped, rs.stale
        run = self.runs.open_attempt(self.run_id, number, start_generation=plan.start.generation if plan.start else 0,
                                     repaired_by=plan.repair_run_id, resumed_from=resumed_from, skipped=skipped,
                                     stale=stale)
        self.runs.record_attempt_config(run, plan.config.to_dict())
        self.attempts.append(Attempt(number, run, plan))
        self.reporter.attempt_started(number, run, plan.repair)

    def _record_repair(self, state: RetryCallState) -> None:
        """Another attempt follows: the planned repair becomes a child run of the failed attempt."""
        assert self.plan is not None and self.plan.repair is not None
        self.plan.repair_run_id = self._log_repair(self.plan.repair, parent=self.attempts[-1].run_id)

    def _attempt(self) -> tuple[Any, dict[str, Any], float]:
        attempt = self.attempts[-1]
        plan = attempt.plan
        logger = RecoveryLogger(self.runs, attempt.run_id, self.reporter, attempt.number, self.run_id,
                                self.settings.keep_checkpoints,
                                logged_through=self.logged_through if len(self.attempts) == 1 else 0,
                                data_source=self.data_source, data_report=self.data_report,
                                data_origin=self.data_origin)
        save_dir = Path(self.save_path) if self.save_path is not None else self.settings.checkpoint_dir / self.run_id
        try:
            with system_metrics(self.runs.tracker, attempt.run_id):  # stopped before the attempt's run is closed
                model, metrics, best_reward, _ = self.training_func(
                    plan.config, plan.data, save_dir, plan.start, callbacks=logger,
                    emergency_checkpoints=self.settings.emergency_checkpoints, allow_data_change=plan.data_changed,
                )
                self.trained = model, metrics
                # the last commit's error (a refused login, a full disk) is this attempt's, decided on like any other
                logger.close()
        except BaseException as exc:
            self._failed(attempt, logger, exc)
            raise
        attempt.history = logger.history
        attempt.outcome = "success"
        self.runs.attempt_succeeded(attempt.run_id, attempt.number)
        return model, metrics, best_reward

    def _failed(self, attempt: Attempt, logger: RecoveryLogger, exc: BaseException) -> None:
        """A failed attempt: its failure classified and decided on, its run closed with the error report."""
        with contextlib.suppress(Exception):  # the store failed too; the report still says what happened
            logger.close()
        classification = classify(exc, self.settings.extra_recoverable)
        if logger.last_good is not None and logger.generations_done:
            self.last_good_config = attempt.plan.config
        failure = Failure(exc, classification, logger.last_generation, logger.last_good, attempt.plan)
        decision = self.decide(failure)
        close_failed_attempt(self.runs, attempt, logger, failure, decision, session_run_id=self.run_id,
                             data_summary=self.data_report.to_dict() if self.data_report else {},
                             notify=self._report_failure)

    def _report_failure(self, attempt: Attempt, report: dict[str, Any]) -> None:
        self.reporter.attempt_failed(attempt.number, report)
        if self.settings.error_handler is not None:
            self.settings.error_handler(report)
