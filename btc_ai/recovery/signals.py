"""SIGINT and SIGTERM during training: the first ends the attempt cleanly, a second exits at once."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class TrainingInterrupted(KeyboardInterrupt):
    """Raised in the main thread by the first SIGINT or SIGTERM; never retried."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """The shell convention: 128 + signal number (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + self.signum


@contextmanager
def graceful_interrupts(stop_event: threading.Event | None = None) -> Iterator[None]:
    """While inside: the first SIGINT/SIGTERM sets ``stop_event`` and raises TrainingInterrupted (the loop then
    writes its emergency checkpoint and the attempt ends as interrupted); a second one exits the process at
    once. Checkpoints are written atomically, so exiting mid-write leaves the previous one intact."""
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
        raise TrainingInterrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
