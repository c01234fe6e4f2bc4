"""Every metric name a training, a backtest, a walk-forward and a search record, and the helpers that compose
them: the one place they are spelled out (`btc_ai.tracking.run_model.names` re-exports them beside the tag,
param and artifact names). At the domain floor because the training produces these names and cannot import
the tracking floor. Nothing but the standard library: the backup, which must not load torch or mlflow, reads
them through names.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# the spans a policy is scored on: <span>/<figure> (a figure: a field of `market.EpisodeStats`, of
# `trade_stats.STATISTICS`, or one of the span's own below)
SPAN_VALIDATION, SPAN_TEST = "validation", "test"
METRIC_VALIDATION_PREFIX, METRIC_TEST_PREFIX = SPAN_VALIDATION + "/", SPAN_TEST + "/"
METRIC_BEST_PREFIX = "best/"  # the selected policy: best/generation, best/validation_<figure>
METRIC_BEST_VALIDATION_PREFIX = f"{METRIC_BEST_PREFIX}{SPAN_VALIDATION}_"
METRIC_BASELINE_PREFIX = "baseline/"  # baseline/<rule>/<figure>: `baseline_metric`

# a generation's metrics (an attempt's run, step = generation)
METRIC_FITNESS_MEAN, METRIC_FITNESS_MAX, METRIC_FITNESS_STD = "fitness/mean", "fitness/max", "fitness/std"
METRIC_FITNESS_NOISE_STD, METRIC_FITNESS_SIGNAL_TO_NOISE = "fitness/noise_std", "fitness/signal_to_noise"
METRIC_ES_GRAD_NORM, METRIC_ES_PARAM_NORM = "es/grad_norm", "es/param_norm"
METRIC_ES_SIGMA, METRIC_ES_LEARNING_RATE = "es/sigma", "es/learning_rate"  # at an attempt's first generation
METRIC_CENTRE_FITNESS, METRIC_CENTRE_EXPOSURE, METRIC_CENTRE_TURNOVER = (
    "centre/fitness", "centre/exposure", "centre/turnover")
METRIC_POPULATION_NEVER_TRADE_SHARE, METRIC_POPULATION_EXPOSURE = (
    "population/never_trade_share", "population/exposure")
METRIC_SECONDS_PER_GENERATION, METRIC_ENV_STEPS_PER_SECOND = (
    "perf/seconds_per_generation", "perf/env_steps_per_second")
METRIC_LIVE_WORKERS, METRIC_REEVALUATED = "cluster/live_workers", "cluster/reevaluated_members"
METRIC_VALIDATION_SCORE = METRIC_VALIDATION_PREFIX + "score"  # one validation's score: what selection compares
METRIC_BEST_VALIDATION = METRIC_VALIDATION_PREFIX + "best_reward"  # the best score so far (it carries across attempts)

# the session's summary, with the best policy's figures (the training's metrics of these prefixes) at its generation
METRIC_BEST_REWARD = "best_reward"
METRIC_ATTEMPTS, METRIC_FAILED_ATTEMPTS, METRIC_REPAIRS = "attempts", "failed_attempts", "repairs"
METRIC_ELAPSED_TIME = "elapsed_time"
METRIC_BEST_GENERATION = METRIC_BEST_PREFIX + "generation"
SESSION_FIGURE_PREFIXES = (METRIC_VALIDATION_PREFIX, METRIC_BEST_PREFIX, METRIC_TEST_PREFIX, METRIC_BASELINE_PREFIX)

# the figures read by name (reports, the promotion gate, the walk-forward table)
FIGURE_POSITION_CHANGES = "position_changes"  # bars where the position changed; runs before the rename: "trades"
LEGACY_FIGURE_POSITION_CHANGES = "trades"
FIGURE_NULL_PERCENTILE, FIGURE_BARS, FIGURE_SCORE = "null_percentile", "bars", "score"
METRIC_TEST_TOTAL_RETURN = METRIC_TEST_PREFIX + "total_return"
METRIC_TEST_GROSS_RETURN = METRIC_TEST_PREFIX + "gross_return"
METRIC_TEST_SHARPE = METRIC_TEST_PREFIX + "sharpe"
METRIC_TEST_BUY_AND_HOLD_RETURN = METRIC_TEST_PREFIX + "buy_and_hold_return"
METRIC_TEST_BUY_AND_HOLD_SHARPE = METRIC_TEST_PREFIX + "buy_and_hold_sharpe"
METRIC_TEST_POSITION_CHANGES = METRIC_TEST_PREFIX + FIGURE_POSITION_CHANGES
METRIC_TEST_NULL_PERCENTILE = METRIC_TEST_PREFIX + FIGURE_NULL_PERCENTILE
METRIC_TEST_BARS = METRIC_TEST_PREFIX + FIGURE_BARS
METRIC_VALIDATION_TOTAL_RETURN = METRIC_VALIDATION_PREFIX + "total_return"
METRIC_BEST_VALIDATION_TOTAL_RETURN = METRIC_BEST_VALIDATION_PREFIX + "total_return"
METRIC_BEST_VALIDATION_BUY_AND_HOLD_RETURN = METRIC_BEST_VALIDATION_PREFIX + "buy_and_hold_return"
METRIC_BEST_VALIDATION_POSITION_CHANGES = METRIC_BEST_VALIDATION_PREFIX + FIGURE_POSITION_CHANGES

# a backtest run: policy/<figure>, buy_and_hold/<figure>, baseline/<rule>/<figure>, and three of its own
METRIC_POLICY_PREFIX, METRIC_BUY_AND_HOLD_PREFIX = "policy/", "buy_and_hold/"
METRIC_NULL_PERCENTILE, METRIC_BARS, METRIC_COST_BPS = FIGURE_NULL_PERCENTILE, FIGURE_BARS, "cost_bps"

# a walk-forward run: the aggregate over folds, and per fold (step = fold number) fold/test_return (the mean over
# seeds), fold/test_return/seed_<seed>, fold/buy_and_hold_return, fold/<rule>_return
METRIC_WALK_FORWARD_PREFIX = "walk_forward/"
METRIC_FOLD_PREFIX = "fold/"
METRIC_FOLD_TEST_RETURN = METRIC_FOLD_PREFIX + "test_return"
METRIC_FOLD_BUY_AND_HOLD = METRIC_FOLD_PREFIX + "buy_and_hold_return"

# a search run: search/<field> of each field of `run_model.search.SearchVerdict`; the chosen trial's walk-forward
# figures as search/best/walk_forward/<figure>; each trial's value at step = its number (the study's history)
METRIC_SEARCH_PREFIX = "search/"
METRIC_SEARCH_BEST_PREFIX = METRIC_SEARCH_PREFIX + METRIC_BEST_PREFIX
METRIC_SEARCH_TRIAL_VALUE = METRIC_SEARCH_PREFIX + "trial_value"

# every prefix above: a string literal starting with one of these is a metric name spelled out (tests/test_metric_names.py)
METRIC_PREFIXES = (*SESSION_FIGURE_PREFIXES, "fitness/", "es/", "centre/", "population/", "perf/", "cluster/",
                   METRIC_POLICY_PREFIX, METRIC_BUY_AND_HOLD_PREFIX, METRIC_WALK_FORWARD_PREFIX, METRIC_FOLD_PREFIX,
                   METRIC_SEARCH_PREFIX)


def span_metric(span: str, figure: str) -> str:
    """``<span>/<figure>``: validation/total_return, test/sharpe, ..."""
    return f"{span}/{figure}"


def best_validation_metric(figure: str) -> str:
    """The selected policy's figure on the validation span, as the session records it."""
    return METRIC_BEST_VALIDATION_PREFIX + figure


def baseline_metric(rule: str, figure: str, span: str = SPAN_TEST) -> str:
    """A rule baseline's figure: baseline/<rule>/<figure> on the test span (and in a backtest, a walk-forward's
    aggregate), baseline/<rule>/<span>_<figure> on another (as best/validation_<figure> names the policy's)."""
    infix = "" if span == SPAN_TEST else f"{span}_"
    return f"{METRIC_BASELINE_PREFIX}{rule}/{infix}{figure}"


def fold_seed_metric(seed: int) -> str:
    """A walk-forward fold's test return for one seed."""
    return f"{METRIC_FOLD_TEST_RETURN}/seed_{seed}"


def fold_rule_metric(rule: str) -> str:
    """A walk-forward fold's return of one rule baseline (same spans, same costs)."""
    return f"{METRIC_FOLD_PREFIX}{rule}_return"


def legacy_metric(name: str) -> str:
    """The name a run recorded before the rename of ``.../trades`` (which counted bars where the position
    changed) to ``.../position_changes``: what a reader of old runs falls back to."""
    return name.replace(FIGURE_POSITION_CHANGES, LEGACY_FIGURE_POSITION_CHANGES)


def figures_under(metrics: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The metrics named ``<prefix><figure>``, keyed by figure."""
    return {k[len(prefix):]: v for k, v in metrics.items() if k.startswith(prefix)}
