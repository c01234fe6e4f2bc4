"""Stall detection: a generation that runs past its deadline raises TrainingStalledError in the training thread.

The deadline is ``max(min_seconds, factor x median generation time so far)``. When it passes, the
watchdog records every thread's stack (for the error report) and interrupts the training thread:
with a signal when that is the main thread (which also breaks a sleep or a blocking wait), else with
an asynchronous exception (taken at the next Python instruction).
"""

from __future__ import annotations

import ctypes
import signal
import statistics
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from btc_ai.domain.errors import TrainingStalledError

_SIGNAL = signal.SIGUSR1


def all_stacks() -> str:
    """Every live thread's stack, as text."""
    names = {t.ident: t.name for t in threading.enumerate()}
    parts = []
    for ident, frame in sys._current_frames().items():
        parts.append(f"--- thread {names.get(ident, '?')} ({ident}) ---\n" + "".join(traceback.format_stack(frame)))
    return "\n".join(parts)


class StallWatchdog:
    """Watches one training thread's generations (use :meth:`generation` around each)."""

    def __init__(self, factor: float = 20.0, min_seconds: float = 60.0, poll: float = 0.05) -> None:
        self.factor = factor
        self.min_seconds = min_seconds
        self.poll = poll
        self._durations: list[float] = []
        self._started: float | None = None
        self._number = 0
        self._fired: TrainingStalledError | None = None
        self._target = threading.current_thread()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def deadline(self) -> float:
        median = statistics.median(self._durations) if self._durations else 0.0
        return max(self.min_seconds, self.factor * median)

    @contextmanager
    def running(self) -> Iterator[StallWatchdog]:
        """Watch while inside; the stall signal handler is installed for the main thread only."""
        self._target = threading.current_thread()
        is_main = self._target is threading.main_thread()
        previous = signal.signal(_SIGNAL, self._on_signal) if is_main else None
        self._thread = threading.Thread(target=self._watch, name="btc-ai-watchdog", daemon=True)
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()
            if is_main:
                signal.signal(_SIGNAL, previous)

    @contextmanager
    def generation(self, number: int) -> Iterator[None]:
        self._number, self._started = number, time.monotonic()
        try:
            yield
        finally:
            if self._started is not None and self._fired is None:
                self._durations.append(time.monotonic() - self._started)
            self._started = None

    def _watch(self) -> None:
        while not self._stop.wait(self.poll):
            started = self._started
            if started is None or self._fired is not None:
                continue
            elapsed = time.monotonic() - started
            limit = self.deadline()
            if elapsed > limit:
                self._fired = TrainingStalledError(
                    f"generation {self._number} has run {elapsed:.1f} s, past its deadline of {limit:.1f} s "
                    f"(max({self.min_seconds:g} s, {self.factor:g} x the median generation time))",
                    key=None,
                )
                self._fired.stacks = all_stacks()  # type: ignore[attr-defined]
                self._interrupt()

    def _interrupt(self) -> None:
        ident = self._target.ident
        if ident is None:
            return
        if self._target is threading.main_thread():
            signal.pthread_kill(ident, _SIGNAL)
        else:
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(TrainingStalledError))

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._fired is not None and self._started is not None:
            raise self._fired

    def take(self, exc: BaseException) -> BaseException:
        """The detailed error for an asynchronously raised bare TrainingStalledError."""
        if isinstance(exc, TrainingStalledError) and self._fired is not None and exc is not self._fired:
            return self._fired
        return exc
