"""Copies of a `btc-ai` command as Ray tasks on a cluster: the workers of `btc-ai search --parallel P
--ray-address ADDRESS` (`desk.search`).

Each task runs ``btc-ai ARGUMENTS`` with the Python of the node it lands on, in the caller's working folder. A
task that ends badly (its process killed, its Ray worker or node lost) is started again while the caller says
work remains, up to ``restarts`` times per slot; what a lost worker left half-done is the command's to pick up
(a search's next worker continues the trial a dead one left running, `desk.search_trial.orphans`).

What the copies share (a search's tracking store and study storage) must be reachable from every node: a team
server and its PostgreSQL, or a SQLite store on a folder every node mounts. Nothing secret travels through Ray:
a node's command logs in with that node's own environment, as the evaluator's workers hold no login
(`connection.without_secrets`).
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable, Sequence

import ray
from ray.exceptions import RayError

from btc_ai.training.cluster.connection import RayConnection

_log = logging.getLogger(__name__)
WAIT_S = 1.0  # how long one look at the tasks waits before it looks at them all again
GET_S = 60.0  # a finished task's result is local: a minute is a fault, not a wait


def _work(arguments: Sequence[str], cwd: str) -> int:
    """The command, on whatever node runs the task: its exit code."""
    return subprocess.run([sys.executable, "-m", "btc_ai", *arguments], cwd=cwd, check=False).returncode


def run_commands_on_ray(address: str, arguments: Sequence[str], cwd: str, parallel: int,
                        work_left: Callable[[], bool], restarts: int) -> None:
    """``parallel`` copies of `btc-ai ARGUMENTS` in ``cwd`` as Ray tasks on the cluster at ``address``, each
    started again after a bad end while ``work_left()``, at most ``restarts`` times per slot."""
    with RayConnection(address):
        task = ray.remote(num_cpus=1, max_retries=0)(_work)  # a lost task is started again below, counted
        pending = {task.remote(list(arguments), cwd): slot for slot in range(parallel)}
        started = [0] * parallel
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=WAIT_S)
            for ref in done:
                slot = pending.pop(ref)
                try:
                    code: int | str = ray.get(ref, timeout=GET_S)
                except RayError as exc:  # its Ray worker or node lost (RayActorError, WorkerCrashedError, ...)
                    code = f"{type(exc).__name__}: {exc}".splitlines()[0]
                if code != 0 and work_left() and started[slot] < restarts:
                    started[slot] += 1
                    _log.warning("worker %d (btc-ai %s) ended (%s): starting it again (%d/%d)", slot, arguments[0],
                                 code, started[slot], restarts)
                    pending[task.remote(list(arguments), cwd)] = slot
