"""Every tag, metric and artifact name of the run model (`docs/design.md`), and the names derived from them.

No imports: the backup (which must not load mlflow) and the store below the records use these too.
"""

from __future__ import annotations

import re

TAG_KIND = "btc_ai.kind"  # session | attempt | repair
TAG_PARENT = "mlflow.parentRunId"
TAG_CLIENT_KEY = "btc_ai.client_key"  # set at creation: a replayed creation finds the run instead of doubling it
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

METRIC_FITNESS_MEAN, METRIC_FITNESS_MAX = "fitness/mean", "fitness/max"
METRIC_BEST_VALIDATION = "validation/best_reward"
METRIC_BEST_REWARD = "best_reward"  # session summary

ARTIFACT_MODEL = "model"
ARTIFACT_CHECKPOINTS = "checkpoints"
ARTIFACT_ERROR_JSON, ARTIFACT_ERROR_MD = "error_report.json", "error_report.md"
ARTIFACT_HISTORY = "performance_history.csv"
ARTIFACT_DATA_REPORT = "data_report.json"
ARTIFACT_PLOTS = "plots"
BUILTIN_DATA = "builtin:default"  # the data source of a session trained on the built-in data
DATAFRAME_DATA = "dataframe"  # ... and of one trained on a DataFrame passed in Python

CHECKPOINT_PATH = re.compile(r"^checkpoints/(?P<emergency>emergency-)?gen-(?P<generation>\d{6})\.pt$")
MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w-]+))$")


def registered_model_name(bucket: str) -> str:
    """``btc-ai-<bucket>`` in lower case: one registry entry per trading style."""
    return f"btc-ai-{bucket.lower()}"


def checkpoint_tag(stem: str) -> str:
    return TAG_CHECKPOINT_PREFIX + stem
