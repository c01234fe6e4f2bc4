"""Every tag, param, metric and artifact name of the run model (`docs/design.md`), and the names derived from them.

The metric names are defined in `btc_ai.domain.metric_names` (the training below this floor produces them) and
re-exported here. No other imports: the backup (which must not load mlflow) and the store below the records use
these too.
"""
# the metric names are imported to be re-exported
# ruff: noqa: F401

from __future__ import annotations

import re

from btc_ai.domain.metric_names import (  # every metric name: defined at the domain floor, which produces them
    FIGURE_BARS,
    FIGURE_NULL_PERCENTILE,
    FIGURE_POSITION_CHANGES,
    FIGURE_SCORE,
    LEGACY_FIGURE_POSITION_CHANGES,
    METRIC_ATTEMPTS,
    METRIC_BARS,
    METRIC_BASELINE_PREFIX,
    METRIC_BEST_GENERATION,
    METRIC_BEST_PREFIX,
    METRIC_BEST_REWARD,
    METRIC_BEST_VALIDATION,
    METRIC_BEST_VALIDATION_BUY_AND_HOLD_RETURN,
    METRIC_BEST_VALIDATION_POSITION_CHANGES,
    METRIC_BEST_VALIDATION_PREFIX,
    METRIC_BEST_VALIDATION_TOTAL_RETURN,
    METRIC_BUY_AND_HOLD_PREFIX,
    METRIC_CENTRE_EXPOSURE,
    METRIC_CENTRE_FITNESS,
    METRIC_CENTRE_TURNOVER,
    METRIC_COST_BPS,
    METRIC_ELAPSED_TIME,
    METRIC_ENV_STEPS_PER_SECOND,
    METRIC_ES_GRAD_NORM,
    METRIC_ES_LEARNING_RATE,
    METRIC_ES_PARAM_NORM,
    METRIC_ES_SIGMA,
    METRIC_FAILED_ATTEMPTS,
    METRIC_FITNESS_MAX,
    METRIC_FITNESS_MEAN,
    METRIC_FITNESS_NOISE_STD,
    METRIC_FITNESS_SIGNAL_TO_NOISE,
    METRIC_FITNESS_STD,
    METRIC_FOLD_BUY_AND_HOLD,
    METRIC_FOLD_PREFIX,
    METRIC_FOLD_TEST_RETURN,
    METRIC_LIVE_WORKERS,
    METRIC_NULL_PERCENTILE,
    METRIC_POLICY_PREFIX,
    METRIC_POPULATION_EXPOSURE,
    METRIC_POPULATION_NEVER_TRADE_SHARE,
    METRIC_PREFIXES,
    METRIC_REEVALUATED,
    METRIC_REPAIRS,
    METRIC_SEARCH_BEST_PREFIX,
    METRIC_SEARCH_PREFIX,
    METRIC_SEARCH_TRIAL_VALUE,
    METRIC_SECONDS_PER_GENERATION,
    METRIC_TEST_BARS,
    METRIC_TEST_BUY_AND_HOLD_RETURN,
    METRIC_TEST_BUY_AND_HOLD_SHARPE,
    METRIC_TEST_GROSS_RETURN,
    METRIC_TEST_NULL_PERCENTILE,
    METRIC_TEST_POSITION_CHANGES,
    METRIC_TEST_PREFIX,
    METRIC_TEST_SHARPE,
    METRIC_TEST_TOTAL_RETURN,
    METRIC_VALIDATION_PREFIX,
    METRIC_VALIDATION_SCORE,
    METRIC_VALIDATION_TOTAL_RETURN,
    METRIC_WALK_FORWARD_PREFIX,
    SESSION_FIGURE_PREFIXES,
    SPAN_TEST,
    SPAN_VALIDATION,
    baseline_metric,
    best_validation_metric,
    figures_under,
    fold_rule_metric,
    fold_seed_metric,
    legacy_metric,
    span_metric,
)

TAG_KIND = "btc_ai.kind"  # session | attempt | repair | walk_forward
TAG_PARENT = "mlflow.parentRunId"
# set at creation: a replayed creation finds the run instead of doubling it. Bookkeeping, so under MLflow's
# own prefix, which the UI keeps out of a run's tag list; journals written before the rename use the old name
TAG_CLIENT_KEY = "mlflow.btc_ai.client_key"
LEGACY_CLIENT_KEY = "btc_ai.client_key"


def client_key(tags: dict[str, str]) -> tuple[str, str]:
    """(tag name, value) of the client key in a journaled creation's tags, whichever name wrote it."""
    name = TAG_CLIENT_KEY if TAG_CLIENT_KEY in tags else LEGACY_CLIENT_KEY
    return name, tags[name]
KIND_SESSION, KIND_ATTEMPT, KIND_REPAIR = "session", "attempt", "repair"
TAG_STATUS = "btc_ai.status"  # running | completed | failed | interrupted
TAG_BUCKET = "btc_ai.bucket"
TAG_DATA_SOURCE = "btc_ai.data_source"
TAG_DATA_FINGERPRINT = "btc_ai.data_fingerprint"
TAG_FINAL_SHA = "btc_ai.final_params_sha256"
TAG_MODEL_VERSION = "btc_ai.model_version"
TAG_PLOTS_WARNING = "btc_ai.plots_warning"
TAG_STOP_REASON = "btc_ai.stop_reason"  # why the training ended: all generations, or early stopping
TAG_TEST_SPAN = "btc_ai.test_span"  # the held-out span the test/... metrics were measured on
TAG_LEASE_OWNER = "btc_ai.lease.owner"
TAG_LEASE_HEARTBEAT = "btc_ai.lease.heartbeat"
TAG_ATTEMPT = "btc_ai.attempt"
TAG_OUTCOME = "btc_ai.outcome"  # success | recoverable_error | unrecoverable_error | interrupted
TAG_ERROR_TYPE = "btc_ai.error_type"
TAG_START_GENERATION = "btc_ai.start_generation"
TAG_GENERATION_REACHED = "btc_ai.generation_reached"
TAG_REPAIRED_BY = "btc_ai.repaired_by"
TAG_RESUMED_FROM = "btc_ai.resumed_from"
TAG_SKIPPED_CHECKPOINTS = "btc_ai.skipped_checkpoints"
TAG_STALE_ATTEMPTS = "btc_ai.stale_attempts"
TAG_NOTE = "btc_ai.note"
TAG_CHECKPOINT_PREFIX = "btc_ai.checkpoint."  # + file stem -> the sha256 committed with it
TAG_LAST_CHECKPOINT = "btc_ai.last_checkpoint"
TAG_REPAIR_RULE = "btc_ai.repair_rule"
TAG_TRIGGERED_BY = "btc_ai.triggered_by"
TAG_SESSION = "btc_ai.session"  # a repair run's session (its parent may be an attempt)
VERSION_TAG_SESSION = "session_run_id"  # on a registered model version
TAG_MODEL_PATH = "btc_ai.model_path"  # the session's newest logged model: models:/<model_id> (before: models/<sha>)
TAG_MODEL_PARAMS = "btc_ai.model_params_sha256"  # ... and the parameters it holds
TAG_MODEL_ID = "btc_ai.model_id"  # ... its MLflow 3 logged model (models:/<model_id>), on the run and the version
VERSION_TAG_PROMOTION = "btc_ai.promotion"  # passed: ... | rejected: ... | forced by <who>: <why>
VERSION_TAG_PARAMS = "btc_ai.params_sha256"
VERSION_TAG_ATTEMPT = "btc_ai.attempt_run_id"
VERSION_TAG_GENERATION = "btc_ai.best_generation"
VERSION_TAG_BUCKET = "btc_ai.bucket"
VERSION_TAG_TIMEFRAME = "btc_ai.timeframe"
VERSION_TAG_DATA = "btc_ai.data_fingerprint"
VERSION_TAG_DATA_SPAN = "btc_ai.data_span"
VERSION_TAG_TEST_SPAN = "btc_ai.test_span"
VERSION_TAG_CONFIG = "btc_ai.config_sha256"
VERSION_TAG_BASELINES = "btc_ai.baseline_windows"  # the rule baselines' windows: SMA 24/168 bars of 1h, ...
VERSION_TAG_METRIC_PREFIX = "metric."  # metric.test/total_return, metric.best/validation_sharpe, ...
VERSION_TAG_PROMOTED_BY = "btc_ai.promoted_by"  # who moved an alias by hand, when, and why
ALIAS_CHAMPION = "champion"  # (latest: see LATEST)
KIND_BACKTEST = "backtest"
TAG_MODEL_URI = "btc_ai.model_uri"  # a backtest run's model
TAG_BACKTEST_SPAN = "btc_ai.backtest_span"
KIND_WALK_FORWARD = "walk_forward"  # parent of one session per fold and seed
TAG_FOLD = "btc_ai.fold"  # a walk-forward session's fold (1 = oldest test block)
TAG_SEED = "btc_ai.seed"  # ... and its seed
TAG_FOLDS = "btc_ai.folds"  # a walk-forward run's number of folds
TAG_SEEDS = "btc_ai.seeds"  # ... and its seeds, space-separated
KIND_SEARCH = "search"  # a hyperparameter study: parent of one walk-forward per trial and the held-out session
TAG_TRIAL = "btc_ai.trial"  # a search's walk-forward: its trial number (0, 1, ...)
TAG_TRIAL_STATE = "btc_ai.trial_state"  # ... and how the trial ended: running, complete, pruned, failed
TAG_HELD_OUT = "btc_ai.held_out_trial"  # a search's held-out session: the trial whose config it trained
TAG_TRIALS = "btc_ai.trials"  # a search run's trial budget
ARTIFACT_SEARCH_SPEC = "search.json"  # what a search was asked to do: data, space, budget, seeds, held-out cut
ARTIFACT_SEARCH_SUMMARY = "search_summary.txt"  # the verdict as printed
ARTIFACT_SEARCH_TABLE = "search_trials.csv"  # one row per trial: state, params, walk-forward figures
# a search run's params besides its base config's (and PARAM_FOLDS, PARAM_SEEDS, PARAM_HELD_OUT_SHARE below)
PARAM_TRIALS, PARAM_SPACE, PARAM_HELD_OUT, PARAM_STUDY_STORAGE = "trials", "space", "held_out", "study_storage"
PARAM_SAMPLER, PARAM_SAMPLER_SEED, PARAM_PRUNER = "sampler", "sampler_seed", "pruner"
PARAM_BEST_PREFIX = "best/"  # + a searched key: the chosen trial's value of it
SEARCH_HISTORY_PLOT_FILE = "search_history.png"  # under plots/ of the search run
SEARCH_IMPORTANCES_PLOT_FILE = "search_param_importances.png"
TAG_RUN_NAME = "mlflow.runName"  # what the UI lists: <bucket>-seed<N>-<start>, attempt-<n> (<outcome>)
TAG_DESCRIPTION = "mlflow.note.content"  # the run's description in the MLflow UI (markdown)

TAG_CLUSTER_EVENT = "btc_ai.cluster_event"  # an attempt's latest cluster event: a worker lost, or back
# tags whose values are prose for people (secrets masked in them, `btc_ai.tracking.credentials.redact`); every
# other tag is data and is written exactly as given
PROSE_TAGS = frozenset({TAG_DESCRIPTION, TAG_NOTE, TAG_STOP_REASON, TAG_PLOTS_WARNING, TAG_SKIPPED_CHECKPOINTS,
                        TAG_STALE_ATTEMPTS, TAG_CLUSTER_EVENT, VERSION_TAG_PROMOTION, VERSION_TAG_PROMOTED_BY})

ARTIFACT_MODELS = "models"  # models/<params sha256[:16]>/: one folder per logged model, never written again
MODEL_POLICY = "artifacts/policy"  # inside a logged model's folder: the policy files (`candle_model` puts them there)
ARTIFACT_CHECKPOINTS = "checkpoints"
ARTIFACT_ERROR_JSON, ARTIFACT_ERROR_MD = "error_report.json", "error_report.md"
ARTIFACT_HISTORY = "performance_history.csv"
ARTIFACT_DATA_REPORT = "data_report.json"
ARTIFACT_REQUESTED_CONFIG = "config/requested.json"  # the config as asked for (the params are what trained)
ARTIFACT_PLOTS = "plots"
ARTIFACT_BACKTEST = "backtest.json"  # a backtest's figures, as `BacktestResult.as_dict` states them
BACKTEST_PLOT_FILE = "equity_curve.png"  # its equity plot under plots/, unless the caller drew its own
ARTIFACT_TRADES_CSV = "trades.csv"  # beside the equity plot: one row per round trip (docs/trades.md)
ARTIFACT_EQUITY_CSV = "equity.csv"  # ... and the equity curve bar by bar
ARTIFACT_WALK_FORWARD_SPEC = "walk_forward.json"  # what a walk-forward was asked to do, and its folds
ARTIFACT_WALK_FORWARD_TABLE = "walk_forward_results.csv"  # one row per fold and seed: the test-span figures
ARTIFACT_WALK_FORWARD_PLOT = "plots/walk_forward.png"
ARTIFACT_WALK_FORWARD_DESCRIPTION = "walk_forward_description.md"  # the whole description, where the tag is cut
# a walk-forward run's params besides its config's (TEST_FRACTION says "per fold": each fold has its own test block)
PARAM_TEST_FRACTION, PARAM_FOLDS, PARAM_SEEDS = "TEST_FRACTION", "folds", "seeds"
PARAM_HELD_OUT_SHARE, PARAM_BLOCK_BARS = "held_out_share", "block_bars"
# a repair run's params: the rule, the reason, <key>.before and <key>.after of each changed key, data.action_<n>
PARAM_REASON, PARAM_RULE = "reason", "rule"
PARAM_BEFORE, PARAM_AFTER = ".before", ".after"
PARAM_DATA_ACTION = "data.action_"
BUILTIN_DATA = "builtin:default"  # the data source of a session trained on the built-in data
DATAFRAME_DATA = "dataframe"  # ... and of one trained on a DataFrame passed in Python

CHECKPOINT_PATH = re.compile(r"^checkpoints/(?P<emergency>emergency-)?gen-(?P<generation>\d{6})\.pt$")
MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+|latest)|@(?P<alias>[\w-]+))$")
LATEST = "latest"  # models:/<name>/latest (and @latest here): the newest version; MLflow reserves the alias
DELETED_VERSION = "Deleted_Internal"  # the stage MLflow gives the row it keeps of a deleted version


def registered_model_name(bucket: str) -> str:
    """``btc-ai-<bucket>`` in lower case: one registry entry per trading style."""
    return f"btc-ai-{bucket.lower()}"


def model_path(params_sha256: str) -> str:
    """The run folder that held these parameters before logged models (versions registered then point at it)."""
    return f"{ARTIFACT_MODELS}/{params_sha256[:16]}"


def checkpoint_tag(stem: str) -> str:
    return TAG_CHECKPOINT_PREFIX + stem
