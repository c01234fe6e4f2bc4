"""The retry decision: after a failed attempt, one function says what comes next — a retry with this repair
from this state, or a stop and why — and tenacity drives the attempts by that decision.

The budget: ``max_retries`` retries per command (`btc-ai train`, each `btc-ai resume`, each call of
``start_training_with_recovery``); attempt numbers continue across the whole session.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
from tenacity import Retrying, retry_if_exception, stop_after_attempt, stop_when_event_set

from btc_ai.domain.config import TrainingConfig
from btc_ai.domain.data import data_fingerprint
from btc_ai.domain.errors import NaNError
from btc_ai.recovery.classify import Classification, choose_repair
from btc_ai.recovery.repairs import PresetSource, Repair, RepairContext
from btc_ai.training import training_bars
from btc_ai.training.checkpoint import TrainingState


@dataclass
class Plan:
    """What an attempt runs, and the repair (and its run) that led to it."""

    config: TrainingConfig
    data: pd.DataFrame
    start: TrainingState | None
    repair: Repair | None = None
    repair_run_id: str | None = None
    data_changed: bool = False

    def signature(self) -> tuple[Any, ...]:
        start = self.start.generation if self.start is not None else 0
        return json.dumps(self.config.to_dict(), sort_keys=True), data_fingerprint(self.data), start


@dataclass(frozen=True)
class Failure:
    """How an attempt failed: the error, its classification, the generation reached and the last good state."""

    error: BaseException
    classification: Classification
    generation: int
    last_good: TrainingState | None
    plan: Plan

    @property
    def interrupted(self) -> bool:
        return isinstance(self.error, KeyboardInterrupt)

    @property
    def key(self) -> tuple[str, int]:
        """What makes two failures "the same": the error type and the generation it struck in."""
        return type(self.error).__name__, self.generation


@dataclass(frozen=True)
class Retry:
    """Try again: ``plan`` (with its repair) is the next attempt."""

    plan: Plan
    reason: str

    @property
    def repair(self) -> Repair | None:
        return self.plan.repair


@dataclass(frozen=True)
class Stop:
    """No further attempt, and why; ``repair`` is the one that would have been applied, if any."""

    reason: str
    repair: Repair | None = None


@dataclass(frozen=True)
class Budget:
    """The limits of one command's retries."""

    max_retries: int
    max_nan_repairs: int


def next_step(failure: Failure, earlier: list[Failure], *, retries_used: int, budget: Budget,
              preset_source: PresetSource, backup_config: TrainingConfig | None) -> Retry | Stop:
    """After ``failure`` (and the ``earlier`` failures of this command), retry with a repair or stop.

    Stops: an interrupt; an unrecoverable error; NaN more often than ``max_nan_repairs``; the same failure
    again after a repair; a repair that would change nothing; no retries left.
    """
    if failure.interrupted:
        return Stop("interrupted: never retried")
    if not failure.classification.recoverable:
        return Stop(f"unrecoverable ({failure.classification.reason}): no retry")
    if isinstance(failure.error, NaNError):
        nans = 1 + sum(isinstance(f.error, NaNError) for f in earlier)
        if nans > budget.max_nan_repairs:
            return Stop(f"non-finite numbers {nans} times in this session, more than max_nan_repairs="
                        f"{budget.max_nan_repairs}: the training diverges, stopping")
    plan = failure.plan
    if earlier and earlier[-1].key == failure.key and plan.repair is not None:
        return Stop(f"the same failure ({failure.key[0]} at generation {failure.key[1]}) repeated after the repair "
                    f"'{plan.repair.rule}': stopping the retries")
    start = failure.last_good if failure.last_good is not None else plan.start
    ctx = RepairContext(error=failure.error, config=plan.config, preset=preset_source(plan.config.BUCKET),
                        data=plan.data, has_checkpoints=start is not None, backup_config=backup_config,
                        train_bars=training_bars(plan.data, plan.config))
    repair = choose_repair(ctx)
    data = repair.data if repair.data is not None else plan.data
    following = Plan(repair.apply(plan.config), data, start, repair,
                     data_changed=plan.data_changed or repair.data is not None)
    if following.signature() == plan.signature():
        return Stop("retrying would change nothing (same config, data and starting state) and the failure is "
                    "deterministic: stopping the retries", repair)
    if retries_used >= budget.max_retries:
        return Stop(f"no retries left (max_retries={budget.max_retries})", repair)
    where = f"generation {start.generation}" if start is not None else "the start"
    return Retry(following, f"retry from {where} after repair '{repair.rule}'")


def retry_policy(*, decided_retry: Callable[[BaseException], bool], budget: Budget, stop_event: threading.Event,
                 wait: Any, sleep: Callable[[float], None], before: Callable[..., None],
                 before_sleep: Callable[..., None]) -> Retrying:
    """The tenacity policy: retry an error the decision (`next_step`, which weighs the classification and the
    ``budget``) answered with `Retry`, never once ``stop_event`` is set; the budget's attempt limit is tenacity's
    too, a guard should a decision ever count otherwise."""
    return Retrying(
        retry=retry_if_exception(decided_retry),
        stop=stop_after_attempt(budget.max_retries + 1) | stop_when_event_set(stop_event),
        wait=wait,
        sleep=sleep,
        before=before,
        before_sleep=before_sleep,
        reraise=True,
    )
