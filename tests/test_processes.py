"""Ending a Ray cluster's processes by PID: a recorded PID now held by another process (PID reuse, hours
after the cluster started) is never signalled, by the process helpers or by `RayConnection`'s tear-down."""

from __future__ import annotations

import subprocess

import pytest

from btc_ai.training.cluster.processes import descendants, end_processes, record, running

pytest.importorskip("ray")


@pytest.fixture
def bystander():
    """A process that is not ours to end (with a child of its own), standing in for whatever took a PID."""
    proc = subprocess.Popen(["sh", "-c", "sleep 600 & wait"])
    while not descendants(proc.pid):  # its child started: the tree a tear-down would walk
        pass
    yield proc
    for pid in descendants(proc.pid):
        subprocess.run(["kill", str(pid)], check=False)
    proc.kill()
    proc.wait()


def reused(proc: subprocess.Popen) -> dict[int, int]:
    """``proc``'s PID as recorded for an earlier process that held it: same PID, an earlier start time."""
    return {pid: start - 1 for pid, start in record([proc.pid]).items()}


def test_a_reused_pid_is_not_signalled(bystander) -> None:
    assert end_processes(reused(bystander), grace_s=0.2) == set()
    assert bystander.poll() is None, f"a process that only reused a recorded PID was signalled ({bystander.poll()})"
    assert running(record([bystander.pid])), "the bystander no longer runs"
    # the same call on the process really recorded ends it: the check above is not vacuous
    assert end_processes(record([bystander.pid]), grace_s=5.0) == set()
    assert bystander.wait(timeout=5) == -15


def test_tear_down_spares_reused_pids_and_their_children(bystander) -> None:
    from btc_ai.training.cluster.connection import RayConnection

    child = descendants(bystander.pid)
    connection = RayConnection("local:2")
    connection._connected_here = True  # as after a start whose processes have all ended since
    connection.processes = reused(bystander)
    connection.close()
    assert bystander.poll() is None, "the tear-down signalled a process that only reused a recorded PID"
    assert descendants(bystander.pid) == child, "the tear-down ended the children of a reused PID"

