"""Typed records of sessions, attempts, repairs and checkpoints, built from MLflow `Run` objects."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from btc_ai.tracking.run_model.names import (
    METRIC_BEST_REWARD,
    METRIC_BEST_VALIDATION,
    PARAM_AFTER,
    PARAM_BEFORE,
    PARAM_REASON,
    TAG_ATTEMPT,
    TAG_BUCKET,
    TAG_CHECKPOINT_PREFIX,
    TAG_DATA_FINGERPRINT,
    TAG_DATA_SOURCE,
    TAG_ERROR_TYPE,
    TAG_FINAL_SHA,
    TAG_HELD_OUT,
    TAG_LEASE_HEARTBEAT,
    TAG_LEASE_OWNER,
    TAG_MODEL_PARAMS,
    TAG_MODEL_PATH,
    TAG_MODEL_VERSION,
    TAG_NOTE,
    TAG_OUTCOME,
    TAG_PARENT,
    TAG_REPAIR_RULE,
    TAG_REPAIRED_BY,
    TAG_RESUMED_FROM,
    TAG_SKIPPED_CHECKPOINTS,
    TAG_START_GENERATION,
    TAG_STATUS,
    TAG_STOP_REASON,
    TAG_TEST_SPAN,
    TAG_TRIGGERED_BY,
)


@dataclass(frozen=True)
class SessionRecord:
    """A session run as the run model sees it."""

    run_id: str
    experiment_id: str
    run_status: str  # MLflow's RUNNING | FINISHED | FAILED | KILLED
    status: str | None  # btc_ai.status
    bucket: str | None
    data_source: str | None
    data_fingerprint: str | None
    final_params_sha256: str | None
    model_version: str | None
    lease_owner: str
    lease_heartbeat: float
    params: Mapping[str, str] = field(default_factory=dict)
    best_reward: float | None = None
    stop_reason: str | None = None
    test_span: str | None = None
    model_path: str | None = None  # the newest logged model's folder on the run
    model_params_sha256: str | None = None
    parent_id: str | None = None  # the run a nested session belongs to (a walk-forward)
    candidate: bool = False  # nested, yet a candidate for @champion (a search's held-out session), not a fold

    @property
    def completed(self) -> bool:
        return self.status == "completed"


@dataclass(frozen=True)
class AttemptRecord:
    """An attempt run: one try of a session."""

    run_id: str
    number: int
    run_status: str
    outcome: str | None
    error_type: str | None
    note: str | None
    start_generation: int | None
    repaired_by: str | None
    resumed_from: str | None
    data_fingerprint: str | None = None
    skipped_checkpoints: str | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    best_reward: float | None = None
    checkpoint_sha: Mapping[str, str] = field(default_factory=dict)  # file stem -> committed sha256

    @property
    def running(self) -> bool:
        return self.run_status == "RUNNING"


@dataclass(frozen=True)
class RepairRecord:
    """A repair run: the rule, what triggered it, and each changed key before and after."""

    run_id: str
    rule: str | None
    triggered_by: str | None
    parent_id: str | None
    changes: Mapping[str, tuple[str, str | None]]
    reason: str | None
    start_time: int


@dataclass(frozen=True)
class CheckpointRecord:
    """One checkpoint artifact of an attempt run, with the sha256 recorded when it was committed."""

    run_id: str
    artifact_path: str
    generation: int
    emergency: bool
    sha256: str | None

    @property
    def committed(self) -> bool:
        return self.sha256 is not None


def _int(value: str | None) -> int | None:
    return int(value) if value not in (None, "") else None


def _session(run: Any) -> SessionRecord:
    t = run.data.tags
    return SessionRecord(run.info.run_id, run.info.experiment_id, run.info.status, t.get(TAG_STATUS), t.get(TAG_BUCKET),
                         t.get(TAG_DATA_SOURCE), t.get(TAG_DATA_FINGERPRINT), t.get(TAG_FINAL_SHA),
                         t.get(TAG_MODEL_VERSION), t.get(TAG_LEASE_OWNER, ""),
                         float(t.get(TAG_LEASE_HEARTBEAT, 0) or 0), dict(run.data.params),
                         run.data.metrics.get(METRIC_BEST_REWARD), t.get(TAG_STOP_REASON), t.get(TAG_TEST_SPAN),
                         t.get(TAG_MODEL_PATH), t.get(TAG_MODEL_PARAMS), t.get(TAG_PARENT), TAG_HELD_OUT in t)


def _attempt(run: Any) -> AttemptRecord:
    t = run.data.tags
    shas = {k[len(TAG_CHECKPOINT_PREFIX):]: v for k, v in t.items() if k.startswith(TAG_CHECKPOINT_PREFIX)}
    return AttemptRecord(run.info.run_id, int(t.get(TAG_ATTEMPT, 0)), run.info.status, t.get(TAG_OUTCOME),
                         t.get(TAG_ERROR_TYPE) or None, t.get(TAG_NOTE), _int(t.get(TAG_START_GENERATION)),
                         t.get(TAG_REPAIRED_BY), t.get(TAG_RESUMED_FROM), t.get(TAG_DATA_FINGERPRINT),
                         t.get(TAG_SKIPPED_CHECKPOINTS), dict(run.data.params),
                         run.data.metrics.get(METRIC_BEST_VALIDATION), shas)


def _repair(run: Any) -> RepairRecord:
    p = run.data.params
    keys = [k.removesuffix(PARAM_BEFORE) for k in p if k.endswith(PARAM_BEFORE)]
    changes = {key: (p[key + PARAM_BEFORE], p.get(key + PARAM_AFTER)) for key in keys}
    return RepairRecord(run.info.run_id, run.data.tags.get(TAG_REPAIR_RULE), run.data.tags.get(TAG_TRIGGERED_BY),
                        run.data.tags.get(TAG_PARENT), changes, p.get(PARAM_REASON), run.info.start_time)


@dataclass(frozen=True)
class ModelVersionRecord:
    """A registered model version: where its files are, the run it came from, what it says about itself."""

    name: str
    version: str
    run_id: str | None
    source: str
    aliases: tuple[str, ...]
    tags: Mapping[str, str]
    description: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def _version(mv: Any) -> ModelVersionRecord:
    return ModelVersionRecord(mv.name, str(mv.version), mv.run_id, mv.source, tuple(mv.aliases or ()), dict(mv.tags or {}),
                              mv.description or "")
