"""The processes a Ray cluster of ours runs, found and ended by PID (never by name: `ray stop` would end
every Ray process on the machine, other users' too)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def _parents() -> dict[int, int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z":  # an exited child not yet reaped runs nothing
            parents[int(entry.name)] = int(fields[1])
    return parents


def descendants(pid: int | None = None) -> set[int]:
    """Every live process below ``pid`` (default: this process), children of children included."""
    root = os.getpid() if pid is None else pid
    parents = _parents()
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier and child not in found}
        found |= frontier
    return found


def alive(pids: set[int]) -> set[int]:
    """The PIDs of ``pids`` that still run (zombies do not)."""
    running = set(_parents())
    return {pid for pid in pids if pid in running}


def end_processes(pids: set[int], grace_s: float = 5.0) -> set[int]:
    """SIGTERM each PID still running, SIGKILL what is left after ``grace_s``; returns the PIDs that had to
    be killed. Only PIDs we recorded ourselves are passed here."""
    left = alive(pids)
    for pid in left:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = alive(left)
    for pid in left:
        _signal(pid, signal.SIGKILL)
    return left


def wait_gone(pids: set[int], timeout_s: float) -> set[int]:
    """Wait up to ``timeout_s`` for ``pids`` to end by themselves; returns those still running."""
    deadline = time.monotonic() + timeout_s
    left = alive(pids)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = alive(left)
    return left


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
