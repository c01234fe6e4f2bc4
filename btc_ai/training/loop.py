"""`train_model`: the ES generation loop, reporting through callbacks and never through a tracker."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from btc_ai.domain import evaluation
from btc_ai.domain.baselines import rule_windows
from btc_ai.domain.config import STRUCTURAL_KEYS, TrainingConfig
from btc_ai.domain.data import DataReport, data_fingerprint, load_candles, resample_candles
from btc_ai.domain.errors import CheckpointError, DataValidationError
from btc_ai.domain.es import OpenAIES
from btc_ai.domain.evaluation import (
    BatchedEvaluator,
    EquityCurve,
    PopulationEvaluator,
    baseline_metrics,
    equity_curve,
    evaluate_span,
    score_test_span,
)
from btc_ai.domain.market import MarketData, MarketSplit, check_split, split_market
from btc_ai.domain.metric_names import (
    METRIC_BEST_VALIDATION,
    METRIC_ENV_STEPS_PER_SECOND,
    METRIC_ES_LEARNING_RATE,
    METRIC_ES_SIGMA,
    METRIC_FITNESS_NOISE_STD,
    METRIC_FITNESS_SIGNAL_TO_NOISE,
    METRIC_FITNESS_STD,
    METRIC_SECONDS_PER_GENERATION,
    METRIC_VALIDATION_PREFIX,
    METRIC_VALIDATION_SCORE,
    SPAN_VALIDATION,
    best_validation_metric,
)
from btc_ai.domain.policy import PolicyNet, PolicySpec
from btc_ai.training.checkpoint import TrainingState, checkpoint_name, load_checkpoint, save_checkpoint
from btc_ai.training.watchdog import StallWatchdog

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingSetup:
    """What the loop is about to run, handed to :meth:`TrainingCallbacks.on_start`."""

    config: TrainingConfig
    data_report: DataReport
    data_fingerprint: str
    n_params: int
    feature_names: tuple[str, ...]
    train_bars: int
    validation_bars: int
    start_generation: int
    test_bars: int = 0
    gap_rows: int = 0  # decision rows held flat across gaps in the data
    # (role, first bar, last bar, bars) of the train, validation and test spans: the session's dataset inputs
    spans: tuple[tuple[str, pd.Timestamp, pd.Timestamp, int], ...] = ()


class TrainingCallbacks:
    """The loop's only window to the outside; every hook does nothing here (the null tracker)."""

    def on_start(self, setup: TrainingSetup) -> None:
        """Called once before the first generation of this call."""

    def on_generation(self, generation: int, metrics: Mapping[str, float]) -> None:
        """Called after every generation; ``generation`` is global (1-based, continuous across resumes)."""

    def on_checkpoint(self, state: TrainingState, path: Path | None, sha256: str | None, *, emergency: bool) -> None:
        """Called with every resumable state the loop hands out (written to ``path`` when saved locally)."""

    def on_event(self, generation: int, event: str) -> None:
        """Something of note happened to the evaluation in ``generation`` (a cluster worker lost or back)."""


def params_sha256(params: np.ndarray) -> str:
    """sha256 of float32 parameter bytes: equal hashes mean bit-identical policies."""
    return hashlib.sha256(np.ascontiguousarray(params, dtype=np.float32).tobytes()).hexdigest()


def prepare_data(df: pd.DataFrame | str | Path | None, config: TrainingConfig) -> tuple[pd.DataFrame, DataReport, str]:
    """Validated candles resampled to the config's timeframe, the data report, and the data fingerprint.

    ``df`` None means the built-in synthetic default data.
    """
    if df is None:
        from btc_ai.domain.synthetic import default_candles

        df = default_candles()
    candles, report = load_candles(df)
    fingerprint = data_fingerprint(candles)
    return resample_candles(candles, config.TIMEFRAME), report, fingerprint


def market_split(candles: pd.DataFrame, config: TrainingConfig) -> MarketSplit:
    """The train | validation | test split of resampled ``candles`` as the trainer makes it."""
    return split_market(candles, config.LOOKBACK, config.VALIDATION_FRACTION, config.TEST_FRACTION,
                        config.MAX_GAP_BARS, config.FEATURES)


def training_bars(candles: pd.DataFrame, config: TrainingConfig) -> int:
    """Decision rows in the training span of ``candles`` under ``config`` (episodes must fit in it);
    DataValidationError when the data is too short for a training, validation or test span."""
    bars = resample_candles(candles, config.TIMEFRAME)
    split = market_split(bars, config)
    check_split(split, len(bars), config.LOOKBACK)
    return len(split.train)


def validation_equity(policy: np.ndarray | torch.nn.Module, config: TrainingConfig | Mapping[str, Any],
                      df: pd.DataFrame | str | Path | None = None, span: str = "validation") -> EquityCurve:
    """Per-bar equity of ``policy`` on the validation (or ``span="test"``) span of ``df``, as the trainer
    splits and scores it.

    ``policy`` is a flat parameter vector (the ES layout) or a module with the policy's state dict (a
    :class:`PolicyNet`, or the model loaded back from MLflow); ``df`` as for :func:`train_model`. The
    last point matches the ``best/validation_total_return`` (``test/total_return``) the training
    reported for that policy.
    """
    curve = span_equities(policy, config, df)[1 if span == "test" else 0]
    if curve is None:
        raise ValueError("the training holds out no test span (TEST_FRACTION=0)")
    return curve


def span_equities(policy: np.ndarray | torch.nn.Module, config: TrainingConfig | Mapping[str, Any],
                  df: pd.DataFrame | str | Path | None = None) -> tuple[EquityCurve, EquityCurve | None]:
    """The validation and test spans' curves of :func:`validation_equity` from one read and split of the
    data (the test curve None when the training held out no test span)."""
    config = config if isinstance(config, TrainingConfig) else TrainingConfig.from_dict(config)
    candles, _, _ = prepare_data(df, config)
    split = market_split(candles, config)
    spec = PolicySpec(len(split.feature_names), config.HIDDEN_SIZE, config.HIDDEN_LAYERS)
    if isinstance(policy, torch.nn.Module):
        net = PolicyNet(spec, split.feature_names)
        net.load_state_dict(policy.state_dict())
        policy = net.flat_params()
    params = np.asarray(policy, dtype=np.float32)
    test = equity_curve(spec, params, split.test, config) if split.test is not None else None
    return equity_curve(spec, params, split.validation, config), test


def _resume_state(recovery_state: Any, config: TrainingConfig, fingerprint: str, allow_data_change: bool) -> TrainingState:
    state = recovery_state if isinstance(recovery_state, TrainingState) else load_checkpoint(recovery_state)
    changed = sorted(k for k in STRUCTURAL_KEYS if state.config.get(k) != getattr(config, k))
    if changed:
        detail = ", ".join(f"{k}: {state.config.get(k)!r} -> {getattr(config, k)!r}" for k in changed)
        raise CheckpointError(f"cannot resume with a different network shape ({detail})", key=changed[0])
    if state.data_fingerprint != fingerprint and not allow_data_change:
        raise DataValidationError(
            "the data differs from the data this training started on (fingerprint mismatch); "
            "resume with the original data or allow the change explicitly"
        )
    return state


def train_model(
    config: TrainingConfig | Mapping[str, Any],
    df: pd.DataFrame | str | Path | None = None,
    save_path: str | Path | None = None,
    recovery_state: TrainingState | str | Path | None = None,
    *,
    callbacks: TrainingCallbacks | None = None,
    evaluator: PopulationEvaluator | None = None,
    emergency_checkpoints: bool = False,
    allow_data_change: bool = False,
    wrap_evaluator: Callable[[PopulationEvaluator], PopulationEvaluator] | None = None,
) -> tuple[PolicyNet, dict[str, Any], float, float]:
    """Train a policy with OpenAI-ES; returns ``(model, metrics, best_reward, elapsed_time)``.

    ``model`` is the best policy by validation reward (a ``torch.nn.Module``); ``metrics`` holds the
    per-generation history, the last validation report and ``final_params_sha256``. Periodic
    checkpoints go to ``save_path`` (when given) and to ``callbacks.on_checkpoint`` every
    ``MIN_CHECKPOINT_INTERVAL`` generations, but no sooner than ``CHECKPOINT_MIN_SECONDS`` after the
    previous one (fast generations would otherwise spend their time writing checkpoints), and after
    the last generation. With ``recovery_state`` (a state or a checkpoint path) the training
    continues from it and ends bit-identical to an uninterrupted one. With ``emergency_checkpoints``
    an error or interrupt writes the last completed generation's state before propagating.
    ``wrap_evaluator`` wraps the population evaluator (instrumentation, fault injection in tests).
    """
    started = time.perf_counter()
    config = config if isinstance(config, TrainingConfig) else TrainingConfig.from_dict(config)
    callbacks = callbacks or TrainingCallbacks()
    save_dir = Path(save_path) if save_path is not None else None

    candles, report, fingerprint = prepare_data(df, config)
    split = market_split(candles, config)
    check_split(split, len(candles), config.LOOKBACK)
    if split.test is None:
        _log.warning("TEST_FRACTION=0: no held-out test span, so every figure of this training is in sample "
                     "(the validation span is used for selection)")
    spec = PolicySpec(len(split.feature_names), config.HIDDEN_SIZE, config.HIDDEN_LAYERS)
    es = OpenAIES(
        dim=spec.n_params,
        population=config.ES_POPULATION,
        sigma=config.SIGMA,
        learning_rate=config.LEARNING_RATE,
        weight_decay=config.WEIGHT_DECAY,
        seed=config.SEED,
        table_size=config.NOISE_TABLE_SIZE,
    )
    stop_reason: str | None = None
    if recovery_state is not None:
        state = _resume_state(recovery_state, config, fingerprint, allow_data_change)
        if state.config.get("EPISODES") == config.EPISODES:  # stopped early, and not extended since: done
            stop_reason = state.extra.get("stop_reason")
        state = TrainingState(config.to_dict(), state.es, fingerprint, state.elapsed_time, state.extra)
    else:
        state = TrainingState(config.to_dict(), es.init(spec.init_params(config.SEED)), fingerprint)

    callbacks.on_start(
        TrainingSetup(config, report, fingerprint, spec.n_params, split.feature_names, len(split.train),
                      len(split.validation), state.generation, len(split.test) if split.test is not None else 0,
                      split.gap_rows, split.spans())
    )
    prior_elapsed = state.elapsed_time
    history: list[dict[str, float]] = []
    validation: dict[str, float] = {}
    watchdog = StallWatchdog(config.STALL_FACTOR, config.STALL_MIN_SECONDS)
    close_evaluator: Callable[[], None] = _nothing
    if evaluator is None:
        evaluator, close_evaluator = build_evaluator(es, spec, split.train, config)
    base_evaluator = evaluator
    if wrap_evaluator is not None:
        evaluator = wrap_evaluator(evaluator)
    last_checkpoint = time.perf_counter()
    try:
        with watchdog.running():
            run = _generations(config, es, spec, split, evaluator, state, started, base_evaluator)
            while state.generation < config.EPISODES and stop_reason is None:
                with watchdog.generation(state.generation + 1):
                    state, metrics = next(run)
                    generation = state.generation
                    validation = {k: v for k, v in metrics.items() if k.startswith(METRIC_VALIDATION_PREFIX)} or validation
                    history.append({"generation": generation, **metrics})
                    for event in getattr(base_evaluator, "take_events", list)():
                        callbacks.on_event(generation, event)
                    callbacks.on_generation(generation, metrics)
                    stop_reason = early_stop_reason(state, config) if METRIC_VALIDATION_SCORE in metrics else None
                    if stop_reason is not None:  # the last state says so: a resume of it trains no further
                        state = TrainingState(state.config, state.es, state.data_fingerprint, state.elapsed_time,
                                              {**state.extra, "stop_reason": stop_reason})
                    due = generation % config.MIN_CHECKPOINT_INTERVAL == 0 and \
                        time.perf_counter() - last_checkpoint >= config.CHECKPOINT_MIN_SECONDS
                    if due or generation == config.EPISODES or stop_reason is not None:
                        _hand_out(state, callbacks, save_dir, emergency=False)
                        last_checkpoint = time.perf_counter()
    except BaseException as exc:
        # `state` is still the last completed generation: never the one that failed half-way.
        for event in getattr(base_evaluator, "take_events", list)():  # what the cluster did in the failed one
            callbacks.on_event(state.generation + 1, event)
        if emergency_checkpoints and state_is_resumable(state):
            try:
                _hand_out(state, callbacks, save_dir, emergency=True)
            except Exception as failed:  # the original error matters more; keep both
                exc.add_note(f"the emergency checkpoint could not be written: {type(failed).__name__}: {failed}")
        detailed = watchdog.take(exc)
        if detailed is not exc:
            raise detailed from None
        raise
    finally:
        close_evaluator()

    elapsed = prior_elapsed + time.perf_counter() - started
    es_state = state.es
    best = es_state.best_params if es_state.best_params is not None else es_state.params
    model = PolicyNet(spec, split.feature_names).load_flat(best)
    # the returned model's own validation record (the last validation above is of the final parameters)
    best_validation = {best_validation_metric(k[len(METRIC_VALIDATION_PREFIX):]): v
                       for k, v in evaluate_span(spec, best, split.validation, config).items()}
    # the held-out span, scored once, for the selected policy only: nothing above ever looked at it
    test = score_test_span(spec, best, split.test, config) if split.test is not None else {}
    metrics: dict[str, Any] = {
        **validation,
        **best_validation,
        **baseline_metrics(split.validation, config, SPAN_VALIDATION),
        **test,
        "baseline_windows": rule_windows(split.validation.bars_per_year).describe(),
        "stop_reason": stop_reason or f"completed {es_state.generation} generations",
        "data_fingerprint": fingerprint,
        "gap_rows": split.gap_rows,
        "generations": es_state.generation,
        "best_reward": es_state.best_reward,
        "best_generation": es_state.best_generation,
        "final_params_sha256": params_sha256(es_state.params),
        "best_params_sha256": params_sha256(best),
        "data": report.to_dict(),
        "history": history,
    }
    return model, metrics, float(es_state.best_reward), float(elapsed)


def early_stop_reason(state: TrainingState, config: TrainingConfig) -> str | None:
    """Why the training stops now, after a validation: EARLY_STOP_PATIENCE validations without a better
    score. Derived from the ES state alone (the best policy's generation), so a resumed training stops
    where an uninterrupted one does."""
    patience = config.EARLY_STOP_PATIENCE
    if not patience or state.generation >= config.EPISODES:
        return None
    since = state.generation // config.EVAL_INTERVAL - state.es.best_generation // config.EVAL_INTERVAL
    if since < patience:
        return None
    return (f"early stopping: no better validation score in {since} validations (EARLY_STOP_PATIENCE={patience}); "
            f"best at generation {state.es.best_generation}")


def state_is_resumable(state: TrainingState | None) -> bool:
    return state is not None and bool(np.all(np.isfinite(state.es.params)))


def build_evaluator(es: OpenAIES, spec: PolicySpec, market: MarketData,
                    config: TrainingConfig) -> tuple[PopulationEvaluator, Callable[[], None]]:
    """The evaluator ``config.EVALUATOR`` names, and the function that releases it: in this process, or on a
    Ray cluster (Ray is imported here only then)."""
    if config.EVALUATOR == "ray":
        from btc_ai.training.cluster.address import require_ray

        require_ray("EVALUATOR=ray")
        from btc_ai.training.cluster.evaluator import open_ray_evaluator

        return open_ray_evaluator(es, spec, market, config)
    return BatchedEvaluator(es, spec, market, config), _nothing


def _nothing() -> None:
    """Releasing an in-process evaluator: nothing to do."""


def _generations(
    config: TrainingConfig,
    es: OpenAIES,
    spec: PolicySpec,
    split: MarketSplit,
    evaluator: PopulationEvaluator,
    state: TrainingState,
    started: float,
    base_evaluator: PopulationEvaluator | None = None,
) -> Iterator[tuple[TrainingState, dict[str, float]]]:
    """Run generations up to ``config.EPISODES``, yielding each completed state and its metrics (with the
    evaluator's own, e.g. a cluster's live workers, when it reports any)."""
    evaluator_metrics = getattr(base_evaluator, "generation_metrics", None)
    # the centre policy on each generation's windows, in this process whatever scores the population
    centre_metrics = getattr(base_evaluator, "centre_metrics", None) or \
        evaluation.BatchedEvaluator(es, spec, split.train, config).centre_metrics
    members = np.arange(config.ES_POPULATION)
    steps = config.ES_POPULATION * config.EPISODES_PER_EVAL * config.MAX_STEPS_PER_EPISODE
    prior_elapsed = state.elapsed_time
    first = state.generation
    while state.generation < config.EPISODES:
        tick = time.perf_counter()
        perturbations = es.ask(state.generation)
        fitness = evaluator.evaluate(state.es.params, state.generation, members)
        evaluated = time.perf_counter()
        es_state, metrics = es.tell(state.es, perturbations, fitness)
        if evaluator_metrics is not None:
            metrics.update(evaluator_metrics())
        metrics.update(centre_metrics(state.es.params, state.generation))
        if metrics.get(METRIC_FITNESS_NOISE_STD):
            metrics[METRIC_FITNESS_SIGNAL_TO_NOISE] = metrics[METRIC_FITNESS_STD] / metrics[METRIC_FITNESS_NOISE_STD]
        generation = es_state.generation
        if generation % config.EVAL_INTERVAL == 0 or generation == config.EPISODES:
            validation = evaluate_span(spec, es_state.params, split.validation, config)
            if validation[METRIC_VALIDATION_SCORE] > es_state.best_reward:  # selection: the validation windows' mean
                es_state = es_state.with_best(es_state.params, validation[METRIC_VALIDATION_SCORE])
            metrics.update(validation)
            metrics[METRIC_BEST_VALIDATION] = es_state.best_reward
        if state.generation == first:  # hyperparameters change only between calls (a repair, a resume)
            metrics.update({METRIC_ES_SIGMA: es.sigma, METRIC_ES_LEARNING_RATE: es.learning_rate})
        metrics[METRIC_SECONDS_PER_GENERATION] = time.perf_counter() - tick
        metrics[METRIC_ENV_STEPS_PER_SECOND] = steps / max(evaluated - tick, 1e-9)
        state = TrainingState(state.config, es_state, state.data_fingerprint, prior_elapsed + time.perf_counter() - started)
        yield state, metrics


def _hand_out(state: TrainingState, callbacks: TrainingCallbacks, save_dir: Path | None, *, emergency: bool) -> None:
    path = sha = None
    if save_dir is not None:
        path = save_dir / checkpoint_name(state.generation, emergency=emergency)
        sha = save_checkpoint(state, path)
    callbacks.on_checkpoint(state, path, sha, emergency=emergency)
