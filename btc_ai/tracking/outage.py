"""What an outage of the tracking store looks like: which errors mean "unreachable now" (journal and
retry later) rather than "the request is wrong", and a short reason for the console."""

from __future__ import annotations

import re
import sqlite3

from mlflow.exceptions import MlflowException, RestException

HTTP_TIMEOUT_S = "5"  # one call to an unresponsive server (MLflow's default: 120 s, then 7 retries)


def outage_reason(exc: BaseException) -> str:
    """A short reason for an outage error: "[Errno 111] Connection refused", "timed out", ..."""
    chain, current = [], exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    text = " ".join(str(e) for e in chain)
    errno_text = re.search(r"\[Errno -?\d+\] [^'\")\]]+", text)
    if errno_text:
        return errno_text.group(0).strip()
    answered = re.search(r"too many (5\d\d) error responses|failed with error code (5\d\d)", text)
    if answered:  # the server is up but cannot serve (its database down, a proxy without a backend)
        retried = answered.group(1)
        return f"it answered HTTP {retried}, retried" if retried else f"it answered HTTP {answered.group(2)}"
    for pattern, reason in (("timed out", "timed out"), ("RemoteDisconnected", "connection closed by the server"),
                            ("Connection aborted", "connection aborted"), ("Connection reset", "connection reset")):
        if pattern.lower() in text.lower():
            return reason
    return type(chain[-1]).__name__


def is_outage(exc: BaseException) -> bool:
    """True for errors that mean "the tracking store cannot be reached now", not "the request is wrong":
    connection refused or reset, timeouts, 502/503/504 answers, a 5xx answer that is not MLflow's own error
    (the server crashed on the request: MLflow 3.18 answers a bare Flask 500 page when its database drops a
    connection mid-transaction, because the rollback raises too), a locked or unopenable SQLite file."""
    import requests

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                                ConnectionError, TimeoutError)):
            return True
        if isinstance(current, sqlite3.OperationalError) and any(
                text in str(current) for text in ("locked", "unable to open", "disk I/O")):
            return True
        if isinstance(current, MlflowException):
            text = str(current)
            if "failed with exception" in text or "Max retries exceeded" in text:
                return True
            status = getattr(current, "get_http_status_code", lambda: None)()
            if status in (502, 503, 504) or "TEMPORARILY_UNAVAILABLE" in text:
                return True
            if not isinstance(current, RestException) and re.search(r"failed with error code 5\d\d != 200", text):
                return True
        current = current.__cause__ or current.__context__
    return False


_REFUSALS = {"UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403}


def login_refused(exc: BaseException) -> int | None:
    """401 when the server refused who we are (no login, a wrong one), 403 when it refused what we asked
    (no permission on the experiment or run); None for anything else. Neither is an outage: nothing is
    journaled, the user is told what to set."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, MlflowException):
            code = _REFUSALS.get(str(getattr(current, "error_code", "")))
            status = getattr(current, "get_http_status_code", lambda: None)()
            if code or status in (401, 403):
                return code or status
        current = current.__cause__ or current.__context__
    return None
