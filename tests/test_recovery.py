"""The recovery system against a real MLflow store: every row of the classification table raised
inside a real training, with the record it leaves (attempts, outcomes, repairs, reports, checkpoints)."""

from __future__ import annotations

import json

import pytest
from conftest import TINY

from btc_ai.domain.presets import preset_config
from btc_ai.recovery import TrainingRecoverySystem
from btc_ai.tracking.tracker import Tracker
from btc_ai.training.faults import inject_fault
from btc_ai.training.loop import train_model

# Overrides that the repairs act on (each differs from the Scalping preset).
CONFIG = {**TINY, "LEARNING_RATE": 0.05, "SIGMA": 0.1, "BUCKET": "Scalping", "STALL_MIN_SECONDS": 1.0}
LR, SIGMA = preset_config("Scalping")["LEARNING_RATE"], preset_config("Scalping")["SIGMA"]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"


class Record:
    """What one session left in MLflow."""

    def __init__(self, tracker: Tracker, session_id: str) -> None:
        client = tracker.client
        self.client = client
        self.session = client.get_run(session_id)
        children = client.search_runs([tracker.experiment_id], f"tags.`mlflow.parentRunId` = '{session_id}'")
        self.attempts = sorted((r for r in children if r.data.tags["btc_ai.kind"] == "attempt"),
                               key=lambda r: int(r.data.tags["btc_ai.attempt"]))
        everything = client.search_runs([tracker.experiment_id], f"tags.`btc_ai.session` = '{session_id}'")
        self.repairs = [r for r in everything if r.data.tags["btc_ai.kind"] == "repair"]

    def artifacts(self, run, path: str | None = None) -> set[str]:
        return {a.path for a in self.client.list_artifacts(run.info.run_id, path)}

    def report(self, run) -> dict:
        local = self.client.download_artifacts(run.info.run_id, "error_report.json")
        with open(local) as fh:
            return json.load(fh)

    def steps(self, run, key: str = "fitness/mean") -> list[int]:
        return sorted(m.step for m in self.client.get_metric_history(run.info.run_id, key))


def _train(store, request, fault, config=None, candles=None, **kwargs):
    tracker = Tracker(store, experiment=request.node.name)
    kwargs.setdefault("sleep", lambda seconds: None)
    system = TrainingRecoverySystem(checkpoint_dir=request.getfixturevalue("tmp_path") / "ck", max_retries=2,
                                    tracker=tracker, **kwargs)
    func = inject_fault(train_model, fault) if fault else train_model
    result = system.start_training_with_recovery(training_func=func, config=dict(config or CONFIG), df=candles)
    return result, Record(tracker, system.session_run_id) if system.session_run_id else None


RECOVERABLE_ROWS = [
    # fault, repair rule, changed key -> (before, after)
    ("ValueError@3:LEARNING_RATE", "clamp_offending_value", {"LEARNING_RATE": (0.05, LR)}),
    ("ValueError@3", "revert_override_to_preset", {"LEARNING_RATE": (0.05, LR)}),
    ("KeyError@3:SIGMA", "fill_key_from_preset", {"SIGMA": (0.1, SIGMA)}),
    ("IndexError@3:MAX_STEPS_PER_EPISODE", "clamp_offending_value", {"MAX_STEPS_PER_EPISODE": (64, 32)}),
    ("AttributeError@3", "revert_override_to_preset", {"LEARNING_RATE": (0.05, LR)}),
    ("RuntimeError@3", "revert_override_to_preset", {"LEARNING_RATE": (0.05, LR)}),
    ("DataValidationError@3", "clean_data", {}),
    ("JSONDecodeError@3", "fall_back_to_backup_config", {"LEARNING_RATE": (0.05, LR), "SIGMA": (0.1, SIGMA)}),
    ("ZeroDivisionError@3", "revert_override_to_preset", {"LEARNING_RATE": (0.05, LR)}),
    ("NaN@3", "halve_learning_rate_and_sigma_on_nan", {"LEARNING_RATE": (0.05, 0.025), "SIGMA": (0.1, 0.05)}),
    ("TradingEnvironmentError@3", "rebuild_environment", {}),
    ("TrainingStalledError@3", "retry_from_last_good_state", {}),
    ("Stall@3", "retry_from_last_good_state", {}),  # a real hang, ended by the stall watchdog
    ("OutOfMemoryError@3", "halve_population_on_oom", {"ES_POPULATION": (8, 4)}),
]


@pytest.mark.slow
@pytest.mark.parametrize(("fault", "rule", "changes"), RECOVERABLE_ROWS, ids=[r[0] for r in RECOVERABLE_ROWS])
def test_recoverable_error_is_repaired_and_retried_from_the_last_good_state(store, request, candles, fault, rule,
                                                                           changes) -> None:
    (model, metrics, best_reward, elapsed), record = _train(store, request, fault, candles=candles)
    error_type = {"NaN": "NaNError", "Stall": "TrainingStalledError"}.get(fault.split("@")[0], fault.split("@")[0])
    assert model is not None, metrics.get("error")
    assert metrics["attempts"] == 2 and elapsed > 0 and best_reward == metrics["best_reward"] > float("-inf")

    first, second = record.attempts
    assert first.info.status == "FAILED"
    assert first.data.tags["btc_ai.outcome"] == "recoverable_error"
    assert first.data.tags["btc_ai.error_type"] == error_type
    assert {"error_report.json", "error_report.md", "checkpoints"} <= record.artifacts(first)
    # generation 3 failed: the emergency checkpoint holds generation 2, the last good one
    assert "checkpoints/emergency-gen-000002.pt" in record.artifacts(first, "checkpoints")
    report = record.report(first)
    assert report["error"]["type"] == error_type and report["classification"]["recoverable"] is True
    assert report["repair"].startswith(rule) and "retry from generation 2" in report["decision"]
    assert report["generation_reached"] == 2 and "Traceback" in report["error"]["traceback"]
    assert {"python", "torch", "mlflow", "btc_ai"} <= set(report["versions"])
    if fault.startswith("Stall"):  # every thread's stack, the hung one included
        assert "btc-ai-watchdog" in report["error"]["thread_stacks"] and "sleep" in report["error"]["thread_stacks"]
    assert report["config"]["LEARNING_RATE"] == 0.05 and report["data"]["rows"] == len(candles)

    (repair,) = record.repairs
    assert repair.data.tags["mlflow.parentRunId"] == first.info.run_id
    assert repair.data.tags["btc_ai.repair_rule"] == rule
    assert repair.data.tags["btc_ai.triggered_by"] == error_type
    for key, (before, after) in changes.items():
        assert float(repair.data.params[f"{key}.before"]) == before
        assert float(repair.data.params[f"{key}.after"]) == after
        assert float(second.data.params[key]) == after  # the next attempt runs the repaired config
    assert "reason" in repair.data.params

    assert second.data.tags["btc_ai.repaired_by"] == repair.info.run_id
    assert second.info.status == "FINISHED" and second.data.tags["btc_ai.outcome"] == "success"
    assert record.steps(first) == [1, 2] and record.steps(second) == [3, 4, 5, 6]  # continuous generations
    assert record.session.info.status == "FINISHED"
    assert record.session.data.tags["btc_ai.status"] == "completed"
    assert "performance_history.csv" in record.artifacts(record.session)


UNRECOVERABLE = ["ImportError", "ModuleNotFoundError", "FileNotFoundError", "PermissionError", "MemoryError",
                 "OSError", "GPUError"]


@pytest.mark.slow
@pytest.mark.parametrize("error", UNRECOVERABLE)
def test_unrecoverable_error_fails_at_once_with_a_report(store, request, candles, error) -> None:
    (model, metrics, _best_reward, _), record = _train(store, request, f"{error}@3", candles=candles)
    assert model is None
    assert error in metrics["error"] and metrics["attempts"] == 1
    (attempt,) = record.attempts
    assert attempt.info.status == "FAILED"
    assert attempt.data.tags["btc_ai.outcome"] == "unrecoverable_error"
    assert attempt.data.tags["btc_ai.error_type"] == error
    assert record.repairs == []
    report = record.report(attempt)
    assert report["classification"]["recoverable"] is False and report["repair"] is None
    assert "no retry" in report["decision"]
    assert "checkpoints/emergency-gen-000002.pt" in record.artifacts(attempt, "checkpoints")
    assert record.session.info.status == "FAILED" and record.session.data.tags["btc_ai.status"] == "failed"


@pytest.mark.slow
def test_the_same_failure_after_its_repair_stops_the_retries(store, request, candles) -> None:
    (model, metrics, _, _), record = _train(store, request, "ValueError@3:LEARNING_RATE x3".replace(" ", ""),
                                            candles=candles)
    assert model is None and metrics["attempts"] == 2
    report = record.report(record.attempts[1])
    assert "repeated after the repair 'clamp_offending_value'" in report["decision"]
    assert len(record.repairs) == 1


@pytest.mark.slow
def test_retry_budget_and_backoff_come_from_the_policy_not_tenacity_defaults(store, request, candles, tmp_path) -> None:
    calls = []

    def fails_a_bit_later_each_time(config, df, save_path, recovery_state=None, **kwargs):
        calls.append(1)  # a new generation each time, so it is never "the same failure"
        return inject_fault(train_model, f"RuntimeError@{len(calls) + 1}")(config, df, save_path, recovery_state,
                                                                           **kwargs)

    waits: list[float] = []
    tracker = Tracker(store, experiment=request.node.name)
    system = TrainingRecoverySystem(checkpoint_dir=tmp_path, max_retries=2, tracker=tracker, sleep=waits.append)
    model, _metrics, _, _ = system.start_training_with_recovery(fails_a_bit_later_each_time, dict(CONFIG), candles)
    record = Record(tracker, system.session_run_id)
    assert model is None and len(calls) == 3 and len(record.attempts) == 3  # max_retries + 1, then stop
    assert "no retries left (max_retries=2)" in record.report(record.attempts[-1])["decision"]
    assert len(record.repairs) == 2  # a repair run only where another attempt followed
    # exponential backoff with jitter: about 1 s, then about 2 s (each plus up to 1 s of jitter)
    assert len(waits) == 2 and 1 <= waits[0] <= 2 and 2 <= waits[1] <= 3


@pytest.mark.slow
def test_validation_repairs_are_recorded_as_repair_runs_of_the_session(store, request, candles) -> None:
    config = {**CONFIG, "EVAL_INTERVAL": 0, "ES_POPULATION": 7, "MAX_STEPS_PER_EPISODE": 50_000}
    del config["BUCKET"]
    (model, metrics, _, _), record = _train(store, request, None, config=config, candles=candles)
    assert model is not None, metrics.get("error")
    rules = {r.data.tags["btc_ai.repair_rule"]: r for r in record.repairs}
    assert set(rules) == {"clamp_out_of_range_values", "make_population_even", "fill_missing_from_preset",
                          "shorten_episode_to_data"}
    for run in rules.values():
        assert run.data.tags["mlflow.parentRunId"] == record.session.info.run_id
        assert run.data.tags["btc_ai.triggered_by"] == "validation"
    assert rules["clamp_out_of_range_values"].data.params["EVAL_INTERVAL.after"] == "1"
    assert rules["make_population_even"].data.params["ES_POPULATION.after"] == "8"
    assert rules["fill_missing_from_preset"].data.params["BUCKET.after"] == "Scalping"
    (attempt,) = record.attempts
    assert attempt.data.params["ES_POPULATION"] == "8"
    assert int(attempt.data.params["MAX_STEPS_PER_EPISODE"]) < 50_000
    # the session's params are the config that trained; what was requested stays beside it, as an artifact
    assert record.session.data.params["EVAL_INTERVAL"] == "1"
    local = record.client.download_artifacts(record.session.info.run_id, "config/requested.json")
    with open(local) as fh:
        assert json.load(fh)["EVAL_INTERVAL"] == 0


def test_unrepairable_config_fails_before_any_run(store, request, candles) -> None:
    (model, metrics, _, _), record = _train(store, request, None, config={"LEARNIN_RATE": 0.1}, candles=candles)
    assert model is None and "did you mean LEARNING_RATE" in metrics["error"]
    assert record is None


@pytest.mark.slow
def test_error_handler_sees_every_report_and_max_retries_zero_means_one_attempt(store, request, candles) -> None:
    reports: list[dict] = []
    (model, metrics, _, _), _record = _train(store, request, "RuntimeError@2", candles=candles,
                                            error_handler=reports.append)
    assert model is not None and len(reports) == 1 and reports[0]["error"]["type"] == "RuntimeError"
    tracker = Tracker(store, experiment=request.node.name + "-zero")
    system = TrainingRecoverySystem(checkpoint_dir=request.getfixturevalue("tmp_path") / "z", max_retries=0,
                                    tracker=tracker, sleep=lambda s: None)
    model, metrics, _, _ = system.start_training_with_recovery(inject_fault(train_model, "RuntimeError@2"),
                                                              dict(CONFIG), candles)
    assert model is None and metrics["attempts"] == 1
    report = Record(tracker, system.session_run_id).report(Record(tracker, system.session_run_id).attempts[0])
    assert "no retries left" in report["decision"]


@pytest.mark.slow
def test_performance_history_spans_attempts(store, request, candles, tmp_path) -> None:
    (_model, _metrics, _, _), record = _train(store, request, "RuntimeError@4", candles=candles)
    local = record.client.download_artifacts(record.session.info.run_id, "performance_history.csv", str(tmp_path))
    import pandas as pd

    history = pd.read_csv(local)
    assert history["generation"].tolist() == [1, 2, 3, 4, 5, 6]
    assert history["attempt"].tolist() == [1, 1, 1, 2, 2, 2]
    assert {"fitness/mean", "fitness/max", "perf/seconds_per_generation"} <= set(history.columns)


@pytest.mark.slow
def test_divergence_stops_after_max_nan_repairs(store, request, candles, tmp_path) -> None:
    calls = []

    def nan_a_bit_later_each_time(config, df, save_path, recovery_state=None, **kwargs):
        calls.append(1)
        return inject_fault(train_model, f"NaN@{len(calls) + 1}")(config, df, save_path, recovery_state, **kwargs)

    tracker = Tracker(store, experiment=request.node.name)
    system = TrainingRecoverySystem(checkpoint_dir=tmp_path, max_retries=5, max_nan_repairs=2, tracker=tracker,
                                    sleep=lambda s: None)
    model, metrics, _, _ = system.start_training_with_recovery(nan_a_bit_later_each_time, dict(CONFIG), candles)
    assert "NaNError" in metrics["error"]
    record = Record(tracker, system.session_run_id)
    assert model is None and len(record.attempts) == 3
    assert [r.data.tags["btc_ai.error_type"] for r in record.attempts] == ["NaNError"] * 3
    assert "more than max_nan_repairs=2" in record.report(record.attempts[-1])["decision"]
    # each repair halved the step again, and no checkpoint holds non-finite parameters
    lrs = [float(r.data.params["LEARNING_RATE"]) for r in record.attempts]
    assert lrs == [0.05, 0.025, 0.0125]
