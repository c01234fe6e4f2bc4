"""train_model: determinism, exact continuation from a recovery state, checkpoints, learning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from btc_ai.domain.errors import CheckpointError, DataValidationError
from btc_ai.tracking.run_model import names
from btc_ai.training.checkpoint import TrainingState, load_checkpoint, save_checkpoint
from btc_ai.training.loop import TrainingCallbacks, params_sha256, train_model

pytestmark = pytest.mark.slow  # every test here starts a training


class Recorder(TrainingCallbacks):
    def __init__(self) -> None:
        self.generations: list[int] = []
        self.states: dict[int, TrainingState] = {}
        self.emergency: list[int] = []

    def on_generation(self, generation, metrics) -> None:
        self.generations.append(generation)

    def on_checkpoint(self, state, path, sha256, *, emergency) -> None:
        if emergency:
            self.emergency.append(state.generation)
        else:
            self.states[state.generation] = state


def test_returns_a_torch_policy_metrics_and_continuous_generations(candles, tiny) -> None:
    recorder = Recorder()
    model, metrics, best_reward, elapsed = train_model(tiny, candles, callbacks=recorder)
    assert isinstance(model, torch.nn.Module)
    assert recorder.generations == list(range(1, tiny["EPISODES"] + 1))
    assert sorted(recorder.states) == [2, 4, 6]  # every MIN_CHECKPOINT_INTERVAL and the last
    assert metrics["generations"] == tiny["EPISODES"]
    assert best_reward == metrics["best_reward"] and np.isfinite(best_reward)
    assert elapsed > 0
    assert {"fitness/mean", "fitness/max", "fitness/std", "perf/env_steps_per_second"} <= set(metrics["history"][0])
    assert "validation/sharpe" in metrics and "validation/buy_and_hold_return" in metrics
    # the training names its metrics (it sits below the run model); the names readers take from names.py are those
    assert {names.METRIC_FITNESS_MEAN, names.METRIC_FITNESS_MAX, names.METRIC_VALIDATION_SCORE,
            names.METRIC_BEST_VALIDATION} <= set(metrics["history"][-1])
    x = torch.zeros(3, model.spec.n_inputs)
    assert model(x).shape == (3, 3)


def test_periodic_checkpoints_respect_the_time_floor(candles, tiny) -> None:
    """Fast generations are not checkpointed more often than CHECKPOINT_MIN_SECONDS; the last one always is."""
    recorder = Recorder()
    train_model({**tiny, "EPISODES": 8, "MIN_CHECKPOINT_INTERVAL": 1, "CHECKPOINT_MIN_SECONDS": 3600.0}, candles,
                callbacks=recorder)
    assert sorted(recorder.states) == [8]
    recorder = Recorder()
    train_model({**tiny, "EPISODES": 8, "MIN_CHECKPOINT_INTERVAL": 1, "CHECKPOINT_MIN_SECONDS": 0.0}, candles,
                callbacks=recorder)
    assert sorted(recorder.states) == list(range(1, 9))


def test_same_seed_same_parameters_and_different_seed_differs(candles, tiny) -> None:
    a = train_model(tiny, candles)[1]["final_params_sha256"]
    b = train_model(tiny, candles)[1]["final_params_sha256"]
    c = train_model({**tiny, "SEED": 43}, candles)[1]["final_params_sha256"]
    assert a == b
    assert a != c


@pytest.mark.parametrize("resume_at", [2, 4])
def test_training_from_a_recovery_state_equals_uninterrupted_training(candles, tiny, tmp_path, resume_at) -> None:
    recorder = Recorder()
    _, full, _, _ = train_model(tiny, candles, tmp_path / "a", callbacks=recorder)
    # continue from the checkpoint file, as a new process would
    path = tmp_path / "a" / f"gen-{resume_at:06d}.pt"
    resumed_rec = Recorder()
    _, resumed, best, _ = train_model(tiny, candles, tmp_path / "b", recovery_state=path, callbacks=resumed_rec)
    assert resumed_rec.generations == list(range(resume_at + 1, tiny["EPISODES"] + 1))
    assert resumed["final_params_sha256"] == full["final_params_sha256"]
    assert resumed["best_params_sha256"] == full["best_params_sha256"]
    assert best == full["best_reward"]


def test_checkpoint_round_trip_and_tamper_detection(candles, tiny, tmp_path) -> None:
    recorder = Recorder()
    train_model(tiny, candles, callbacks=recorder)
    state = recorder.states[4]
    path = tmp_path / "c.pt"
    sha = save_checkpoint(state, path)
    loaded = load_checkpoint(path, expected_sha256=sha)
    assert loaded.generation == 4
    assert params_sha256(loaded.es.params) == params_sha256(state.es.params)
    assert loaded.es.m.tobytes() == state.es.m.tobytes() and loaded.es.v.tobytes() == state.es.v.tobytes()
    assert loaded.config == state.config and loaded.data_fingerprint == state.data_fingerprint
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(path, expected_sha256=sha)
    path.write_bytes(bytes(data[:100]))
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_checkpoint_write_is_atomic_and_leaves_no_temporary_files(candles, tiny, tmp_path) -> None:
    train_model(tiny, candles, tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["gen-000002.pt", "gen-000004.pt", "gen-000006.pt"]


class Boom(RuntimeError):
    pass


class FailingEvaluator:
    """Wraps the real evaluator and raises inside a chosen generation."""

    def __init__(self, fail_at: int) -> None:
        self.fail_at = fail_at
        self.inner = None

    def evaluate(self, params, generation, members):
        if generation + 1 == self.fail_at:
            raise Boom(f"injected in generation {generation + 1}")
        return self.inner.evaluate(params, generation, members)


def test_error_writes_an_emergency_checkpoint_of_the_last_good_generation(candles, tiny, tmp_path, monkeypatch) -> None:
    from btc_ai.training import loop as training

    recorder = Recorder()
    failing = FailingEvaluator(fail_at=4)
    real = training.BatchedEvaluator

    def build(*args, **kwargs):
        failing.inner = real(*args, **kwargs)
        return failing

    monkeypatch.setattr(training, "BatchedEvaluator", build)
    with pytest.raises(Boom):
        train_model(tiny, candles, tmp_path, callbacks=recorder, emergency_checkpoints=True)
    assert recorder.generations == [1, 2, 3]
    assert recorder.emergency == [3]
    state = load_checkpoint(tmp_path / "emergency-gen-000003.pt")
    assert state.generation == 3


def test_resume_refuses_a_different_network_shape_or_different_data(candles, tiny, tmp_path) -> None:
    train_model(tiny, candles, tmp_path)
    with pytest.raises(CheckpointError, match="HIDDEN_SIZE"):
        train_model({**tiny, "HIDDEN_SIZE": 16}, candles, recovery_state=tmp_path / "gen-000002.pt")
    other = candles.iloc[100:]
    with pytest.raises(DataValidationError, match="fingerprint"):
        train_model(tiny, other, recovery_state=tmp_path / "gen-000002.pt")


def _learning_run(df, **overrides):
    config = {"EPISODES": 40, "ES_POPULATION": 16, "HIDDEN_SIZE": 16, "EVAL_INTERVAL": 10,
              "NOISE_TABLE_SIZE": 1 << 18, **overrides}
    metrics = train_model(config, df)[1]
    # what a training reports out of sample is there, whatever it says (learning is judged in sample below)
    for key in ("test/total_return", "test/gross_return", "test/buy_and_hold_return", "test/sharpe",
                "test/null_percentile", "test/position_changes"):
        assert np.isfinite(metrics[key]), key
    assert metrics["test_span"] and metrics["test/bars"] > 0
    return [row["fitness/mean"] for row in metrics["history"]]


def test_training_learns_on_synthetic_data(candles) -> None:
    means = _learning_run(candles)
    assert np.mean(means[-10:]) > np.mean(means[:10])


@pytest.mark.realdata
def test_training_learns_on_the_real_month(real_candles) -> None:
    means = _learning_run(real_candles)
    assert np.mean(means[-10:]) > np.mean(means[:10])
