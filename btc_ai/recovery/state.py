"""Rebuild a training's recovery state from the tracking server alone, given any run or model reference.

Also the session lease that stops two processes from training the same session at once, and the
marking of attempts left RUNNING by a process that died.
"""

from __future__ import annotations

import os
import re
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException

from btc_ai.domain.config import TrainingConfig
from btc_ai.domain.errors import CheckpointError, ResumeError
from btc_ai.tracking.store import TAG_KIND, TAG_OUTCOME, TAG_PARENT, Tracker
from btc_ai.training.checkpoint import TrainingState, load_checkpoint

LEASE_OWNER = "btc_ai.lease.owner"
LEASE_HEARTBEAT = "btc_ai.lease.heartbeat"
LEASE_TTL_S = 120.0  # a remote owner silent this long is presumed dead
TAG_DATA_SOURCE = "btc_ai.data_source"
_CHECKPOINT = re.compile(r"^checkpoints/(?P<emergency>emergency-)?gen-(?P<generation>\d{6})\.pt$")
_MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w-]+))$")


@dataclass(frozen=True)
class CheckpointRef:
    """One checkpoint artifact of an attempt run, with the sha256 recorded when it was committed."""

    run_id: str
    artifact_path: str
    generation: int
    emergency: bool
    sha256: str | None


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
    checkpoint: CheckpointRef | None = None
    skipped: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)

    @property
    def generation(self) -> int:
        return self.training_state.generation if self.training_state is not None else 0

    @classmethod
    def from_run(cls, ref: str, tracker: Tracker | None = None, *, tracking_uri: str | None = None,
                 mark_stale: bool = True) -> RecoveryState:
        """The state of the session that ``ref`` (session/attempt run ID or ``models:/`` URI) belongs to.

        Checkpoints are tried newest first; one that is missing, truncated or fails its sha256 is
        skipped for the previous one (listed in ``skipped``). Attempts left RUNNING by a dead
        process are marked FAILED/interrupted when ``mark_stale``.
        """
        tracker = tracker or Tracker(tracking_uri)
        session = resolve_session(tracker, ref)
        tags = session.data.tags
        attempts = attempt_runs(tracker, session.info.run_id)
        stale = mark_stale_attempts(tracker, session, attempts) if mark_stale else []
        state, ref_used, skipped = _newest_good_checkpoint(tracker, attempts)
        if state is not None:
            config = TrainingConfig.from_dict(state.config)
        elif attempts:
            config = TrainingConfig.from_dict(attempts[-1].data.params)
        else:
            config = TrainingConfig.from_dict({k: v for k, v in session.data.params.items()})
        return cls(
            session_run_id=session.info.run_id,
            config=config,
            training_state=state,
            attempts=len(attempts),
            completed=tags.get("btc_ai.status") == "completed",
            data_source=tags.get(TAG_DATA_SOURCE),
            data_fingerprint=state.data_fingerprint if state else tags.get("btc_ai.data_fingerprint"),
            final_params_sha256=tags.get("btc_ai.final_params_sha256"),
            checkpoint=ref_used,
            skipped=skipped,
            stale=stale,
        )


def resolve_session(tracker: Tracker, ref: str) -> Any:
    """The session run behind a session run ID, an attempt or repair run ID, or a registered model URI."""
    client = tracker.client
    ref = ref.strip()
    match = _MODEL_URI.match(ref)
    if match:
        try:
            version = (client.get_model_version(match["name"], match["version"]) if match["version"]
                       else client.get_model_version_by_alias(match["name"], match["alias"]))
        except MlflowException:
            raise ResumeError(f"{ref}: no such registered model version; list them with "
                              f"`mlflow models` or the UI's Models page") from None
        ref = version.run_id
    elif ref.startswith("models:/"):
        raise ResumeError(f"{ref} is not models:/<name>/<version> or models:/<name>@<alias>")
    try:
        run = client.get_run(ref)
    except MlflowException:
        raise ResumeError(f"run {ref} does not exist on {tracker.tracking_uri}; check the ID "
                          "(btc-ai prints it at the start) and --tracking-uri") from None
    kind = run.data.tags.get(TAG_KIND)
    if kind == "session":
        return run
    parent = run.data.tags.get("btc_ai.session") or run.data.tags.get(TAG_PARENT)
    if kind in {"attempt", "repair"} and parent:
        return resolve_session(tracker, parent)
    raise ResumeError(f"run {ref} is not a btc_ai session, attempt or repair run")


def attempt_runs(tracker: Tracker, session_id: str) -> list[Any]:
    runs = tracker.client.search_runs([tracker.experiment_of(session_id)], f"tags.`{TAG_PARENT}` = '{session_id}'")
    return sorted((r for r in runs if r.data.tags.get(TAG_KIND) == "attempt"),
                  key=lambda r: int(r.data.tags.get("btc_ai.attempt", 0)))


def checkpoint_refs(tracker: Tracker, attempts: list[Any]) -> list[CheckpointRef]:
    refs = []
    for run in attempts:
        for artifact in tracker.client.list_artifacts(run.info.run_id, "checkpoints"):
            match = _CHECKPOINT.match(artifact.path)
            if match:
                stem = Path(artifact.path).stem
                refs.append(CheckpointRef(run.info.run_id, artifact.path, int(match["generation"]),
                                          bool(match["emergency"]), run.data.tags.get(f"btc_ai.checkpoint.{stem}")))
    # newest generation first; a later attempt's checkpoint of the same generation first
    order = {run.info.run_id: k for k, run in enumerate(attempts)}
    return sorted(refs, key=lambda r: (r.generation, order[r.run_id], r.emergency), reverse=True)


def _newest_good_checkpoint(tracker: Tracker, attempts: list[Any]) -> tuple[TrainingState | None, CheckpointRef | None,
                                                                           list[str]]:
    skipped: list[str] = []
    with tempfile.TemporaryDirectory(prefix="btc-ai-resume-") as tmp:
        for ref in checkpoint_refs(tracker, attempts):
            if ref.sha256 is None:
                # uploaded but never committed (the process died in between): its metrics are not on the store
                skipped.append(f"{ref.artifact_path} of run {ref.run_id}: never committed (no recorded sha256)")
                continue
            try:
                local = tracker.client.download_artifacts(ref.run_id, ref.artifact_path, tmp)
                return load_checkpoint(local, expected_sha256=ref.sha256), ref, skipped
            except (CheckpointError, OSError, MlflowException) as exc:
                skipped.append(f"{ref.artifact_path} of run {ref.run_id}: {exc}")
    return None, None, skipped


# -- liveness ----------------------------------------------------------------------------------------


def lease_token() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _owner_alive(owner: str, heartbeat: float) -> bool:
    host, _, pid = owner.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return time.time() - heartbeat < LEASE_TTL_S


def session_busy(session: Any) -> str | None:
    """Who holds the session's lease, if a live process does."""
    tags = session.data.tags
    owner = tags.get(LEASE_OWNER, "")
    if owner and owner != lease_token() and _owner_alive(owner, float(tags.get(LEASE_HEARTBEAT, 0) or 0)):
        return owner
    return None


def claim_lease(tracker: Tracker, session_id: str, settle_s: float = 0.3) -> None:
    """Take the session's lease, or raise ResumeError naming the live holder.

    Write, wait, read back: of two processes claiming at once, only the last writer sees its token.
    """
    busy = session_busy(tracker.client.get_run(session_id))
    if busy:
        raise ResumeError(f"session {session_id} is being trained right now by {busy}; wait for it to end or stop it")
    token = lease_token()
    tracker.set_tags(session_id, {LEASE_OWNER: token, LEASE_HEARTBEAT: f"{time.time():.0f}"})
    time.sleep(settle_s)
    holder = tracker.client.get_run(session_id).data.tags.get(LEASE_OWNER)
    if holder != token:
        raise ResumeError(f"session {session_id} was claimed at the same moment by {holder}; only one resume may run")


def heartbeat(tracker: Tracker, session_id: str) -> None:
    tracker.set_tags(session_id, {LEASE_HEARTBEAT: f"{time.time():.0f}"})


def mark_stale_attempts(tracker: Tracker, session: Any, attempts: list[Any]) -> list[str]:
    """Attempts left RUNNING by a process that is gone: FAILED, outcome ``interrupted``, with a note."""
    busy = session_busy(session)
    if busy:
        raise ResumeError(f"session {session.info.run_id} is being trained right now by {busy}; "
                          "wait for it to end or stop it")
    notes = []
    for run in attempts:
        if run.info.status != "RUNNING":
            continue
        history = tracker.client.get_metric_history(run.info.run_id, "fitness/mean")
        last = max((m.step for m in history), default=int(run.data.tags.get("btc_ai.start_generation", 0)))
        note = f"the process training attempt {run.data.tags.get('btc_ai.attempt')} died; last generation seen {last}"
        tracker.set_tags(run.info.run_id, {TAG_OUTCOME: "interrupted", "btc_ai.error_type": "ProcessDied",
                                           "btc_ai.note": note, "btc_ai.generation_reached": last})
        tracker.end_run(run.info.run_id, "FAILED")
        notes.append(note)
    return notes
