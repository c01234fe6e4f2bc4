"""The retry decision (`next_step`): every way it stops and the retry it plans; and its budget across
processes, as docs/recovery.md states it: `max_retries` retries per command, attempt numbers continuing."""

from __future__ import annotations

import pytest
from conftest import TINY

from btc_ai.domain.config import TrainingConfig
from btc_ai.domain.errors import NaNError
from btc_ai.domain.presets import preset_config
from btc_ai.recovery.classify import classify
from btc_ai.recovery.retry import Budget, Failure, Plan, Retry, Stop, next_step

CONFIG = TrainingConfig.from_dict({**TINY, "LEARNING_RATE": 0.05, "BUCKET": "Scalping"})


@pytest.fixture(scope="module")
def plan(candles) -> Plan:
    return Plan(CONFIG, candles, None)


def _failure(plan: Plan, exc: BaseException, generation: int = 3) -> Failure:
    return Failure(exc, classify(exc), generation, None, plan)


def _next(failure: Failure, earlier=(), *, retries_used=0, max_retries=2, max_nan_repairs=3) -> Retry | Stop:
    return next_step(failure, list(earlier), retries_used=retries_used, budget=Budget(max_retries, max_nan_repairs),
                     preset_source=preset_config, backup_config=None)


def test_a_recoverable_error_with_retries_left_is_retried_with_its_repair(plan) -> None:
    decision = _next(_failure(plan, ValueError("bad")))
    assert isinstance(decision, Retry)
    assert decision.repair.rule == "revert_override_to_preset"
    assert preset_config("Scalping")["LEARNING_RATE"] == decision.plan.config.LEARNING_RATE
    assert decision.reason == "retry from the start after repair 'revert_override_to_preset'"


def test_every_stop_says_why(plan) -> None:
    assert _next(_failure(plan, KeyboardInterrupt())) == Stop("interrupted: never retried")
    stop = _next(_failure(plan, PermissionError("no")))
    assert isinstance(stop, Stop) and stop.reason.startswith("unrecoverable") and stop.repair is None
    out_of_budget = _next(_failure(plan, ValueError("bad")), retries_used=2)
    assert isinstance(out_of_budget, Stop) and out_of_budget.reason == "no retries left (max_retries=2)"
    assert out_of_budget.repair is not None  # the report still says which repair it would have been
    nan = _failure(plan, NaNError("nan"))
    assert isinstance(_next(nan, [nan, nan], max_nan_repairs=2), Stop)
    repaired = Plan(CONFIG, plan.data, None, repair=_next(_failure(plan, ValueError("x"))).repair)
    again = _failure(repaired, ValueError("bad"))
    stop = _next(again, [_failure(plan, ValueError("bad"))])
    assert isinstance(stop, Stop) and "repeated after the repair" in stop.reason


def test_a_repair_that_changes_nothing_stops(plan) -> None:
    preset = TrainingConfig.from_dict(preset_config("Scalping"))
    # a RuntimeError names no key and nothing is left to revert: the retry would run the same thing again
    decision = _next(_failure(Plan(preset, plan.data, None), RuntimeError("boom")))
    assert isinstance(decision, Stop) and decision.reason.startswith("retrying would change nothing")


@pytest.mark.slow
def test_a_resumed_session_gets_max_retries_retries_of_its_own(tmp_path, candles) -> None:
    """Attempt numbers go on across processes, but each command has its full retry budget (before, a
    resumed session had max_retries minus its earlier attempts)."""
    from btc_ai.recovery import TrainingRecoverySystem
    from btc_ai.tracking.run_model import RunModel
    from btc_ai.tracking.tracker import Tracker
    from btc_ai.training import train_model
    from btc_ai.training.faults import inject_fault

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = {**TINY, "EPISODES": 8, "LEARNING_RATE": 0.05}

    def system(max_retries: int) -> TrainingRecoverySystem:
        return TrainingRecoverySystem(checkpoint_dir=tmp_path / "ck", max_retries=max_retries, tracking_uri=uri,
                                      sleep=lambda s: None)

    first = system(0)  # a recoverable error, but no retries: the session fails after one attempt
    model, metrics, _, _ = first.start_training_with_recovery(inject_fault(train_model, "ValueError@3"), config, candles)
    assert model is None and metrics["attempts"] == 1
    session = first.session_run_id

    again = system(1)  # one retry of its own: the error of attempt 2 is repaired, attempt 3 completes
    model, metrics, _, _ = again.start_training_with_recovery(inject_fault(train_model, "RuntimeError@5"), None, candles,
                                                              recovery_state=session)
    assert model is not None, metrics.get("error")
    attempts = RunModel(Tracker(uri)).attempts(session)
    assert [(a.number, a.outcome) for a in attempts] == [(1, "recoverable_error"), (2, "recoverable_error"),
                                                         (3, "success")]
    assert metrics["attempts"] == 3
