"""`RayConnection`: join the cluster a training evaluates on, or start a local one (``local:N``) and stop
it again, ending its processes by PID."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
from collections.abc import Iterator
from types import TracebackType

import ray

from btc_ai.domain.errors import UserInputError
from btc_ai.training.cluster.address import RayAddress, parse_ray_address
from btc_ai.training.cluster.processes import descendants, end_processes, record, running, wait_gone

_log = logging.getLogger(__name__)
LOOPBACK = "127.0.0.1"  # a local cluster listens on loopback only
LOCAL_OBJECT_STORE_BYTES = 256 << 20  # parameters and market data only: a small store starts faster
# a task on a killed worker fails after 0.1 s instead of Ray's 1 s wait for the actor's death details: its chunk is
# sent to another worker that much sooner
LOCAL_SYSTEM_CONFIG = {"timeout_ms_task_wait_for_death_info": 100}
STOP_GRACE_S = 10.0


def quiet_ray_environment() -> None:
    """No usage statistics sent anywhere (set before Ray starts anything)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


# what a worker never needs and must not hold: it evaluates parameters and never talks to a tracking server
# or a database (logins, tokens, keys; every MLFLOW_TRACKING_* variable, whose URI may carry a login)
_SECRET_VARIABLE = re.compile(r"PASSWORD|PASSWD|TOKEN|SECRET|ACCESS_KEY|CREDENTIAL|^MLFLOW_TRACKING_", re.IGNORECASE)


@contextlib.contextmanager
def without_secrets() -> Iterator[None]:
    """The process environment without secret variables while Ray starts its processes (they copy it, and
    its workers copy theirs), restored afterwards. Only around the start of a local cluster: no other thread
    of ours talks to the store then (the training and its writer start inside the cluster's context)."""
    saved = {k: v for k, v in os.environ.items() if _SECRET_VARIABLE.search(k)}
    for key in saved:
        del os.environ[key]
    try:
        yield
    finally:
        os.environ.update(saved)


def loopback_only() -> None:
    """A cluster on this machine alone: Ray resolves 127.0.0.1 to the machine's network address unless told
    that this host runs no multi-machine cluster, and its servers would then be looked for (and reachable)
    there. Only for ``local:N`` and tests; ``auto``/``ray://`` clusters span machines."""
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False


CONNECT_TIMEOUT_S = 3.0


def _check_reachable(address: RayAddress) -> None:
    """ConnectionError unless the cluster's head answers on its port: Ray itself retries a dead address for
    minutes (a stale ``auto`` address left by a cluster that is gone)."""
    from ray._private import services

    if address.kind == "auto":
        target = services.canonicalize_bootstrap_address_or_die("auto")
    else:
        target = address.text.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise ConnectionError(f"nothing answers at {target}: {exc}") from None


class RayConnection:
    """A context manager: inside, this process is a Ray driver. ``local:N`` starts a cluster of N one-CPU
    workers here and stops it on exit (every process it started ended by PID); ``auto`` and ``ray://``
    join a running cluster and only disconnect. A process already connected (a test's cluster) is left as
    it is."""

    def __init__(self, address: RayAddress | str) -> None:
        self.address = parse_ray_address(address) if isinstance(address, str) else address
        self.processes: dict[int, int] = {}  # what a local cluster started: PID -> start time (processes.record)
        self._connected_here = False

    def __enter__(self) -> RayConnection:
        if ray.is_initialized():
            return self
        quiet_ray_environment()
        before = descendants()
        if self.address.owned:
            loopback_only()
        try:
            if self.address.owned:
                with without_secrets():
                    ray.init(address="local", num_cpus=self.address.workers, include_dashboard=False,
                             _node_ip_address=LOOPBACK, object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                             log_to_driver=False, _system_config=LOCAL_SYSTEM_CONFIG)
            else:
                _check_reachable(self.address)
                ray.init(address=self.address.text, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            self._stop(before)
            raise UserInputError(f"--ray-address {self.address.text}: no Ray cluster could be joined ({exc}); start "
                                 "one with `ray start --head` (see docs/cluster.md) or use --ray-address local:2"
                                 ) from None
        self._connected_here = True
        if self.address.owned:
            self.processes = record(descendants() - before)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if not self._connected_here:
            return
        self._connected_here = False
        self._stop(None)

    def _stop(self, before: set[int] | None) -> None:
        if self.address.owned:  # what the cluster runs now: its workers too, started after __enter__
            if before is not None:  # a start that failed half-way: whatever it left
                self.processes.update(record(descendants() - before))
            # only below processes that are still ours: a reused PID's children are someone else's
            self.processes = running(self.processes)
            for pid in list(self.processes):
                self.processes.update(record(descendants(pid)))
        with contextlib.suppress(Exception):
            ray.shutdown()
        if self.processes:
            left = wait_gone(self.processes, STOP_GRACE_S)
            killed = end_processes(left)
            if killed:
                _log.warning("ended %d Ray processes of the local cluster by PID: %s", len(killed), sorted(killed))
