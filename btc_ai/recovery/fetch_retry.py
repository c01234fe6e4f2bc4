"""The retry policy of `btc-ai data fetch`: which download failures are transient, how often each file is
tried again, and how long to wait in between. The fetcher (`btc_ai.desk.data_fetch`) raises; this decides.

A policy reads as a sentence: retry if ``is_transient_download_failure``, stop after ``attempts`` tries or
after the second damaged copy (a wrong checksum or a corrupt zip is re-downloaded once, not ``attempts``
times: a mirror that keeps serving a bad file will not heal in seconds).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import requests
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential
from tenacity.stop import stop_base

ATTEMPTS = 5  # per file: the first try and four retries
DAMAGED_ATTEMPTS = 2  # per file: a damaged copy is downloaded again once
BACKOFF_VARIABLE = "BTC_AI_FETCH_BACKOFF_S"  # the first wait (then doubled, at most 30 s); 0: none (tests)
DEFAULT_BACKOFF_S = 1.0


class ServerBusy(Exception):
    """The server answered 5xx or 429: it may answer the same request properly in a moment."""

    def __init__(self, url: str, status: int) -> None:
        super().__init__(f"{url} answered HTTP {status}")
        self.status = status


class DownloadCutShort(Exception):
    """The connection ended before the announced length arrived (the bytes so far stay in the ``.part``)."""


class DamagedDownload(Exception):
    """A complete download whose sha256 is not its ``.CHECKSUM``'s, or whose zip does not open."""


def is_transient_download_failure(error: BaseException) -> bool:
    """A dropped or refused connection, a timeout, a busy server or a damaged copy: worth another try."""
    return isinstance(error, (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                              ServerBusy, DownloadCutShort, DamagedDownload))


class stop_after_damaged(stop_base):  # lower case, like tenacity's own stop strategies
    """Stop once ``limit`` copies of the file have arrived damaged."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.seen = 0

    def __call__(self, retry_state: RetryCallState) -> bool:
        outcome = retry_state.outcome
        if outcome is not None and outcome.failed and isinstance(outcome.exception(), DamagedDownload):
            self.seen += 1
        return self.seen >= self.limit


def backoff_seconds() -> float:
    """The first wait between tries: ``BTC_AI_FETCH_BACKOFF_S`` (0 or more), else 1 s."""
    raw = os.environ.get(BACKOFF_VARIABLE, "").strip()
    try:
        value = float(raw) if raw else DEFAULT_BACKOFF_S
    except ValueError:
        value = DEFAULT_BACKOFF_S
    return max(0.0, value)


def download_retrying(before_retry: Callable[[RetryCallState], None] | None = None, *,
                      attempts: int = ATTEMPTS) -> Retrying:
    """A fresh policy for one file (its damaged-copy count starts at zero); ``before_retry`` hears of each
    failure that will be tried again. The last failure is re-raised as itself."""
    first = backoff_seconds()
    return Retrying(
        retry=retry_if_exception(is_transient_download_failure),
        # the damaged-copy count first: `|` stops asking at the first strategy that says stop
        stop=stop_after_damaged(DAMAGED_ATTEMPTS) | stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=first, min=first, max=30 if first else 0),
        before_sleep=before_retry,
        reraise=True,
    )
