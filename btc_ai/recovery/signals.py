"""SIGINT and SIGTERM: the one mechanism that turns them into an exception (a training, a backup, a
restore). The first signal raises `Interrupted` in the main thread; a second one exits at once. Writes that
belong together (a new session run and its config) hold them until they are done (`interrupts_held`)."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread by the first SIGINT or SIGTERM; never retried."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """The shell convention: 128 + signal number (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + self.signum


def exit_code(exc: KeyboardInterrupt) -> int:
    """130 for a plain Ctrl-C, 128 + the signal number for an `Interrupted`."""
    return exc.exit_code if isinstance(exc, Interrupted) else 128 + signal.SIGINT


@contextmanager
def graceful_interrupts(stop_event: threading.Event | None = None) -> Iterator[None]:
    """While inside: the first SIGINT/SIGTERM sets ``stop_event`` and raises `Interrupted` (a training then
    writes its emergency checkpoint and ends the attempt as interrupted; a backup removes its temporary
    files); a second one exits the process at once. Files are written atomically, so exiting mid-write
    leaves the previous one intact."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be installed from the main thread
        return
    received: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        if stop_event is not None:
            stop_event.set()
        if len(received) > 1:
            os._exit(128 + signum)
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def interrupts_held() -> Iterator[None]:
    """While inside: a SIGINT or SIGTERM waits, and takes its usual course (the handler outside, e.g.
    :func:`graceful_interrupts`) as the block ends; a second one exits the process at once, as ever. For
    writes that must not be cut apart, such as a new session run and its config (milliseconds)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        if len(received) > 1:
            os._exit(128 + signum)

    previous = {sig: signal.signal(sig, hold) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        if received:
            signal.raise_signal(received[0])  # delivered to the handler now in place
