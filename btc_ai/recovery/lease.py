"""The session lease: one live process trains a session at a time; the marking of attempts left
RUNNING by a process that died."""

from __future__ import annotations

import os
import socket
import time

from btc_ai.domain.errors import ResumeError
from btc_ai.tracking.run_model import METRIC_FITNESS_MEAN, AttemptRecord, RunModel, SessionRecord

LEASE_TTL_S = 120.0  # a remote owner silent this long is presumed dead


def lease_token() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def process_alive(owner: str) -> bool | None:
    """Whether the process a lease token (``host:pid``) names still runs; None for another host's."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process of that number: alive
        return True
    return True


def _owner_alive(owner: str, heartbeat: float) -> bool:
    alive = process_alive(owner)
    return time.time() - heartbeat < LEASE_TTL_S if alive is None else alive


def session_busy(session: SessionRecord) -> str | None:
    """Who holds the session's lease, if a live process does."""
    owner = session.lease_owner
    if owner and owner != lease_token() and _owner_alive(owner, session.lease_heartbeat):
        return owner
    return None


def claim_lease(runs: RunModel, session_id: str, settle_s: float = 0.3) -> None:
    """Take the session's lease, or raise ResumeError naming the live holder.

    Write, wait, read back: of two processes claiming at once, only the last writer sees its token.
    """
    busy = session_busy(runs.session(session_id))
    if busy:
        raise ResumeError(f"session {session_id} is being trained right now by {busy}; wait for it to end or stop it")
    token = lease_token()
    runs.set_lease(session_id, token, time.time())
    time.sleep(settle_s)
    holder = runs.session(session_id).lease_owner
    if holder != token:
        raise ResumeError(f"session {session_id} was claimed at the same moment by {holder}; only one resume may run")


def heartbeat(runs: RunModel, session_id: str) -> None:
    runs.heartbeat(session_id, time.time())


def mark_stale_attempts(runs: RunModel, session: SessionRecord, attempts: list[AttemptRecord]) -> list[str]:
    """Attempts left RUNNING by a process that is gone: FAILED, outcome ``interrupted``, with a note."""
    busy = session_busy(session)
    if busy:
        raise ResumeError(f"session {session.run_id} is being trained right now by {busy}; "
                          "wait for it to end or stop it")
    notes = []
    for attempt in attempts:
        if not attempt.running:
            continue
        steps = [step for step, _ in runs.metric_history(attempt.run_id, METRIC_FITNESS_MEAN)]
        last = max(steps, default=attempt.start_generation or 0)
        note = f"the process training attempt {attempt.number} died; last generation seen {last}"
        runs.attempt_failed(attempt.run_id, number=attempt.number, outcome="interrupted", error_type="ProcessDied", generation_reached=last,
                            interrupted=False, note=note)
        notes.append(note)
    return notes
