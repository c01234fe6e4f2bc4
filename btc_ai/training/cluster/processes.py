"""The processes a Ray cluster of ours runs, found and ended by PID (never by name: `ray stop` would end
every Ray process on the machine, other users' too). A process is recorded as its PID and its start time:
a PID is reused once its process ends, so a tear-down hours later signals only the processes it started."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

Recorded = Mapping[int, int]  # PID -> start time (clock ticks after boot, /proc/<pid>/stat field 22)


def _stats() -> dict[int, tuple[int, int]]:
    """PID -> (parent PID, start time) of every live process (zombies run nothing and are left out)."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if fields[0] != "Z":
                stats[int(entry.name)] = (int(fields[1]), int(fields[19]))
    return stats


def descendants(pid: int | None = None) -> set[int]:
    """Every live process below ``pid`` (default: this process), children of children included."""
    root = os.getpid() if pid is None else pid
    parents = {child: parent for child, (parent, _) in _stats().items()}
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier and child not in found}
        found |= frontier
    return found


def record(pids: Iterable[int]) -> dict[int, int]:
    """The running processes among ``pids`` as PID -> start time: what identifies them later."""
    stats = _stats()
    return {pid: stats[pid][1] for pid in pids if pid in stats}


def running(recorded: Recorded) -> dict[int, int]:
    """The recorded processes still running: same PID and same start time (a reused PID is another process)."""
    stats = _stats()
    return {pid: start for pid, start in recorded.items() if pid in stats and stats[pid][1] == start}


def alive(pids: set[int]) -> set[int]:
    """The PIDs of ``pids`` that still run (zombies do not)."""
    return set(record(pids))


def end_processes(recorded: Recorded, grace_s: float = 5.0) -> set[int]:
    """SIGTERM each recorded process still running, SIGKILL what is left after ``grace_s``; returns the PIDs
    that had to be killed. A PID now held by another process is never signalled."""
    left = running(recorded)
    for pid, start in left.items():
        _signal(pid, start, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = running(left)
    for pid, start in left.items():
        _signal(pid, start, signal.SIGKILL)
    return set(left)


def wait_gone(recorded: Recorded, timeout_s: float) -> dict[int, int]:
    """Wait up to ``timeout_s`` for the recorded processes to end by themselves; returns those still running."""
    deadline = time.monotonic() + timeout_s
    left = running(recorded)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = running(left)
    return left


def _signal(pid: int, start: int, sig: int) -> None:
    """Signal through a pidfd checked against the start time: the PID cannot be reused between the check and
    the signal (a pidfd keeps naming the process it was opened on)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        if running({pid: start}):
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(fd, sig)
    finally:
        os.close(fd)
