"""`btc-ai search --parallel P --ray-address ADDRESS`: the study's P workers as Ray tasks on a cluster.

Each task runs the same worker command a local `--parallel` starts (`btc-ai search --worker RUN_ID ...`) with
the Python of the node it lands on, in the search's working folder: the worker opens the search run and the
study's storage, takes trials until the budget is spent, and exits. A worker whose task ends badly (its process
killed, its Ray worker or node lost) is started again while trials remain, up to ``restarts`` times per slot;
the trial it left running is continued by the next worker that looks (`desk.search_trial.orphans`), as on one
machine.

What the workers share is the tracking store and the study's storage, so both must be reachable from every
node: a team server and its PostgreSQL (``--study-storage``), or a SQLite store on a folder every node
mounts. Nothing secret travels through Ray: a node's worker logs in with that node's own environment (as a
training's evaluator, `training.cluster.connection.without_secrets`). Ray is imported here only.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable, Sequence

from btc_ai.training.cluster.connection import RayConnection

_log = logging.getLogger(__name__)
WAIT_S = 1.0  # how long one look at the tasks waits before it looks at them all again
GET_S = 60.0  # a finished task's result is local: a minute is a fault, not a wait


def _work(arguments: Sequence[str], cwd: str) -> int:
    """The worker, on whatever node runs the task: its exit code."""
    return subprocess.run([sys.executable, "-m", "btc_ai", *arguments], cwd=cwd, check=False).returncode


def run_workers_on_ray(address: str, arguments: Sequence[str], cwd: str, parallel: int,
                       trials_left: Callable[[], bool], restarts: int) -> None:
    """``parallel`` workers (`btc-ai ARGUMENTS` in ``cwd``) as Ray tasks on the cluster at ``address``, each
    started again after a bad end while ``trials_left()``, at most ``restarts`` times per slot."""
    import ray
    from ray.exceptions import RayError

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
                if code != 0 and trials_left() and started[slot] < restarts:
                    started[slot] += 1
                    _log.warning("search worker %d ended (%s): starting it again (%d/%d)", slot, code,
                                 started[slot], restarts)
                    pending[task.remote(list(arguments), cwd)] = slot
