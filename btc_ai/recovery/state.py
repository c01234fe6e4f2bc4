"""Rebuild a training's recovery state from the tracking server alone, given any run or model reference."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from btc_ai.domain.config import TrainingConfig
from btc_ai.domain.errors import CheckpointError, ResumeError
from btc_ai.recovery.lease import mark_stale_attempts
from btc_ai.tracking.run_model import AttemptRecord, CheckpointRecord, RunModel
from btc_ai.tracking.run_model.names import ARTIFACT_DATA_REPORT
from btc_ai.tracking.tracker import Tracker
from btc_ai.training.checkpoint import TrainingState, load_checkpoint


@dataclass
class RecoveryState:
    """Everything needed to continue a session, read from the tracking server."""

    session_run_id: str
    config: TrainingConfig
    training_state: TrainingState | None  # None: no usable checkpoint; the training restarts at generation 0
    attempts: int
    completed: bool
    data_source: str | None
    data_fingerprint: str | None
    final_params_sha256: str | None = None
    checkpoint: CheckpointRecord | None = None
    skipped: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    model_version: str | None = None  # the session's newest registered version, and the parameters it holds
    model_params_sha256: str | None = None
    nested: bool = False  # a fold: a session under another run that is no candidate for @champion
    data_files: list[dict[str, Any]] = field(default_factory=list)  # the files it read (path, sha256), if any

    @property
    def generation(self) -> int:
        return self.training_state.generation if self.training_state is not None else 0

    @property
    def stopped_early(self) -> bool:
        """The newest state ended the training before EPISODES (early stopping)."""
        return self.training_state is not None and bool(self.training_state.extra.get("stop_reason"))

    @classmethod
    def from_run(cls, ref: str, tracker: Tracker | None = None, *, tracking_uri: str | None = None,
                 mark_stale: bool = True) -> RecoveryState:
        """The state of the session that ``ref`` (session/attempt run ID or ``models:/`` URI) belongs to.

        Checkpoints are tried newest first; one that is missing, truncated or fails its sha256 is
        skipped for the previous one (listed in ``skipped``). Attempts left RUNNING by a dead
        process are marked FAILED/interrupted when ``mark_stale``.
        """
        runs = RunModel(tracker or Tracker(tracking_uri))
        session = runs.resolve_session(ref)
        attempts = runs.attempts(session)
        stale = mark_stale_attempts(runs, session, attempts) if mark_stale else []
        state, ref_used, skipped = newest_good_checkpoint(runs, attempts)
        recorded = next((a.params for a in reversed(attempts) if a.params), None) or session.params
        if state is not None:  # validated when the training started; the checkpoint's sha256 was checked
            config = TrainingConfig.restored(state.config)
        elif recorded:  # run params are text: validated (and typed) again
            config = TrainingConfig.from_dict(dict(recorded))
        else:  # never a preset in its place: that would train something nobody asked for
            raise ResumeError(f"session {session.run_id} has no recorded config (it was stopped while it was being "
                              "created) and nothing was trained: start a new training with btc-ai train")
        return cls(
            session_run_id=session.run_id,
            config=config,
            training_state=state,
            attempts=len(attempts),
            completed=session.completed,
            data_source=session.data_source,
            data_fingerprint=state.data_fingerprint if state else session.data_fingerprint,
            final_params_sha256=session.final_params_sha256,
            checkpoint=ref_used,
            skipped=skipped,
            stale=stale,
            model_version=session.model_version,
            model_params_sha256=session.model_params_sha256,
            nested=session.parent_id is not None and not session.candidate,
            data_files=recorded_files(runs, session.run_id),
        )


def recorded_files(runs: RunModel, session_id: str) -> list[dict[str, Any]]:
    """The data files a session's data report names (none for a DataFrame, the built-in data, or a session
    recorded before files were named)."""
    try:
        files = runs.read_json(session_id, ARTIFACT_DATA_REPORT).get("report", {}).get("files", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [f for f in files if isinstance(f, dict) and "sha256" in f and "path" in f]


def newest_good_checkpoint(runs: RunModel, attempts: list[AttemptRecord]) -> tuple[
        TrainingState | None, CheckpointRecord | None, list[str]]:
    """The newest committed checkpoint that loads and matches its sha256, and why newer ones were skipped."""
    skipped: list[str] = []
    with tempfile.TemporaryDirectory(prefix="btc-ai-resume-") as tmp:
        for ref in runs.checkpoints(attempts):
            if not ref.committed:
                # uploaded but never committed (the process died in between): its metrics are not on the store
                skipped.append(f"{ref.artifact_path} of run {ref.run_id}: never committed (no recorded sha256)")
                continue
            try:
                local = runs.download(ref.run_id, ref.artifact_path, tmp)
                return load_checkpoint(local, expected_sha256=ref.sha256), ref, skipped
            except (CheckpointError, OSError) as exc:
                skipped.append(f"{ref.artifact_path} of run {ref.run_id}: {exc}")
    return None, None, skipped


def logged_through(start: int, attempts: list[AttemptRecord], rows: list[dict[str, Any]],
                   config: TrainingConfig) -> int:
    """The newest generation N >= ``start`` such that generations start+1..N all have their metrics on the
    store already, from earlier attempts that trained them as ``config`` does (the same params, EPISODES
    aside): a process killed inside a checkpoint commit, after some of its metric chunks (whole
    generations each) and before the marker, leaves such generations beyond the checkpoint a resume
    starts from. The resumed attempt logs from N+1, so each generation appears once across attempts
    (with the same values: the training is deterministic). ``rows`` are the earlier attempts' metric rows
    (``attempt``, ``generation``, metrics...)."""
    wanted = _comparable(config.to_dict())
    same = {a.number for a in attempts if _comparable(a.params) == wanted}
    logged = {int(row["generation"]) for row in rows if row.get("attempt") in same}
    through = start
    while through + 1 in logged:
        through += 1
    return through


def _comparable(params: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in params.items() if k != "EPISODES"}
