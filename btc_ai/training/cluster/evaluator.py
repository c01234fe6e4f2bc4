"""`RayEvaluator`: the population scored by Ray actors behind the `PopulationEvaluator` interface.

Each actor holds the training span (put once in the object store) and the policy shape; per generation the
driver puts the parameters once and sends only (generation, member indices) of fixed-size chunks. An actor
rebuilds its members' perturbations from (SEED, generation, member) exactly as the local evaluator does, so
a chunk lost with a worker is re-evaluated on another one with the same floats. Every wait has a timeout.
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import time
import warnings
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray
import torch
from ray.exceptions import ActorUnavailableError, ObjectLostError, RayActorError, RayError, WorkerCrashedError

from btc_ai.domain.config import TrainingConfig
from btc_ai.domain.errors import ClusterLostError
from btc_ai.domain.es import OpenAIES
from btc_ai.domain.evaluation import BatchedEvaluator, activity_metrics, evaluation_chunks
from btc_ai.domain.market import MarketData
from btc_ai.domain.metric_names import METRIC_LIVE_WORKERS, METRIC_REEVALUATED
from btc_ai.domain.policy import PolicySpec

IN_FLIGHT_PER_WORKER = 2  # a second chunk queued on each actor hides the round trip
POLL_S = 0.2  # the longest single wait: the stall watchdog's signal is taken between two
GET_TIMEOUT_S = 30.0
START_TIMEOUT_S = 120.0  # no worker ready by then: the cluster has no CPU for us
START_GRACE_S = 10.0  # after the first worker, how long the start waits for the others (late ones join later)
CHUNK_DEADLINE_FACTOR = 20.0  # a chunk unanswered this many median chunk times: its worker counts as lost
CHUNK_DEADLINE_MIN_S = 5.0
SPECULATE_FACTOR = 3.0  # an idle worker also runs a chunk this many median chunk times late (the same floats)
LOST_AFTER_MAX_S = 30.0
# A call on an actor Ray is restarting fails at once (ActorUnavailableError): the readiness probe is sent again
# this much later. (Taking that failure for "dead for good" and starting a fresh actor dropped the last handle of
# the restarting one, so Ray destroyed it half-started: a killed worker came back later than Ray had it.)
PROBE_RETRY_S = 0.1
SLOW_FAULT_S = 1.5  # the "slow" fault: a chunk that still runs when a test removes its node
LOST_ERRORS = (RayActorError, WorkerCrashedError, ObjectLostError)


@ray.remote(num_cpus=1)
class EvaluationWorker:
    """One evaluation actor: the local evaluator on one CPU thread, fed chunks of members."""

    def __init__(self, es: OpenAIES, spec: PolicySpec, market: MarketData, config: TrainingConfig) -> None:
        torch.set_num_threads(1)  # one CPU per actor, and the same thread count on every worker
        with warnings.catch_warnings():  # the object store's arrays are read-only; nothing writes to them
            warnings.filterwarnings("ignore", message=".*not writable.*")
            self.evaluator = BatchedEvaluator(es, spec, market, config)

    def evaluate(self, params: np.ndarray, generation: int, members: np.ndarray, fault: str | None = None) -> np.ndarray:
        if fault == "kill":  # tests and benchmarks: this worker process dies mid-generation
            os.kill(os.getpid(), signal.SIGKILL)
        if fault == "slow":
            time.sleep(SLOW_FAULT_S)
        return self.evaluator.score_chunk(params, generation, members)

    def pid(self) -> int:
        return os.getpid()


@dataclass
class _Worker:
    index: int
    handle: Any
    live: bool = False
    probe: Any = None  # a pending pid() call: the worker is (re)starting until it answers
    probe_at: float = 0.0  # no probe pending: when to ask again (Ray is restarting the actor)
    pid: int | None = None
    inflight: int = 0


class RayEvaluator:
    """Scores members on ``workers`` Ray actors (default: RAY_WORKERS, or one per cluster CPU).

    ``faults`` maps a generation (0-based, as :meth:`evaluate` gets it) to a fault for one of its chunks
    (``kill``: the worker process SIGKILLs itself; ``slow``: every chunk of it takes SLOW_FAULT_S), and
    ``on_dispatch`` is called once per generation after its first chunks are sent: tests and benchmarks.
    """

    def __init__(self, es: OpenAIES, spec: PolicySpec, market: MarketData, config: TrainingConfig, *,
                 workers: int | None = None, lost_after_s: float | None = None) -> None:
        count = workers or config.RAY_WORKERS or max(1, int(ray.cluster_resources().get("CPU", 1)))
        self.chunk_members = config.RAY_CHUNK_MEMBERS
        self.lost_after_s = lost_after_s or min(LOST_AFTER_MAX_S, max(1.0, config.STALL_MIN_SECONDS / 2))
        self.faults: dict[int, str] = {}
        self.on_dispatch: Callable[[int], None] | None = None
        self._args = (es, spec, ray.put(market), config)
        self.workers = [self._start(_Worker(i, None)) for i in range(count)]
        self._events: list[str] = []
        self._reevaluated = 0
        self._activity: np.ndarray | None = None
        self._chunk_seconds: deque[float] = deque(maxlen=256)
        self._orphans: dict[Any, tuple[_Worker, int]] = {}  # calls a finished generation no longer waited for
        self._await_first_worker()

    # -- workers -----------------------------------------------------------------------------------

    def _start(self, worker: _Worker) -> _Worker:
        options = {"max_restarts": -1, "max_task_retries": 0, "scheduling_strategy": "SPREAD"}
        worker.handle = EvaluationWorker.options(**options).remote(*self._args)
        worker.probe, worker.live = worker.handle.pid.remote(), False
        return worker

    def _await_first_worker(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.live_workers:
            if time.monotonic() > deadline:
                self.close()
                raise ClusterLostError(f"no Ray worker started within {START_TIMEOUT_S:g} s: the cluster has no free "
                                       "CPU for an evaluation actor")
            self._check_probes(POLL_S)
        grace = time.monotonic() + START_GRACE_S
        while self.live_workers < len(self.workers) and time.monotonic() < grace:
            self._check_probes(POLL_S)
        self._events.clear()

    @property
    def live_workers(self) -> int:
        return sum(w.live for w in self.workers)

    def worker_pids(self) -> list[int | None]:
        """The process of each worker as last seen (None while it starts)."""
        return [w.pid if w.live else None for w in self.workers]

    def _check_orphans(self) -> None:
        """A call answered by another worker first may still fail later: its worker was lost all the same
        (a chunk sent twice, the first copy's worker killed), and the record says so."""
        if not self._orphans:
            return
        ready, _ = ray.wait(list(self._orphans), num_returns=len(self._orphans), timeout=0)
        for ref in ready:
            if ref not in self._orphans:  # dropped meanwhile: its worker was recorded lost with another of them
                continue
            worker, generation = self._orphans.pop(ref)
            try:
                ray.get(ref, timeout=GET_TIMEOUT_S)
            except LOST_ERRORS as exc:
                self._lose(worker, generation, type(exc).__name__)
            except RayError:
                pass

    def _check_probes(self, timeout: float = 0.0) -> None:
        self._check_orphans()
        now = time.monotonic()
        for worker in self.workers:
            if not worker.live and worker.probe is None and now >= worker.probe_at:
                worker.probe = worker.handle.pid.remote()
        probes = {w.probe: w for w in self.workers if w.probe is not None}
        if not probes:
            return
        ready, _ = ray.wait(list(probes), num_returns=len(probes), timeout=timeout)
        for ref in ready:
            worker = probes[ref]
            worker.probe = None
            try:
                pid = ray.get(ref, timeout=GET_TIMEOUT_S)
            except ActorUnavailableError:  # Ray is restarting it (max_restarts): ask again shortly, keep the handle
                worker.probe_at = time.monotonic() + PROBE_RETRY_S
                continue
            except LOST_ERRORS:  # gone for good (no restart left): a fresh actor takes its place
                self._start(worker)
                continue
            if worker.pid is not None and pid != worker.pid:
                self._events.append(f"worker {worker.index} rejoined (pid {pid})")
            worker.pid, worker.live = pid, True

    def _lose(self, worker: _Worker, generation: int, why: str) -> None:
        if not worker.live:
            return
        # a call of an earlier generation still unanswered on this worker (its chunk was answered by another one
        # first): the worker died then, not now, and that call can only fail too
        for ref, (owner, earlier) in list(self._orphans.items()):
            if owner is worker:
                del self._orphans[ref]
                generation = min(generation, earlier)
        worker.live = False
        worker.probe = worker.handle.pid.remote()  # answered once Ray has restarted it (max_restarts)
        self._events.append(f"generation {generation + 1}: worker {worker.index} (pid {worker.pid}) lost ({why}); its "
                            f"members are re-evaluated on {self.live_workers} live worker(s)")

    # -- evaluation --------------------------------------------------------------------------------

    def evaluate(self, params: np.ndarray, generation: int, members: Sequence[int]) -> np.ndarray:
        chunks = evaluation_chunks(members, self.chunk_members)
        try:
            params_ref = ray.put(np.ascontiguousarray(params, dtype=np.float32))
            scores = np.concatenate(self._gather(params_ref, generation, chunks))
            self._activity = scores[:, 1:]  # what the members did, as BatchedEvaluator keeps it
            return np.ascontiguousarray(scores[:, 0])
        except ClusterLostError:
            raise
        except SystemError as exc:  # a signal handler's error (the stall watchdog, Ctrl-C) raised inside Ray's wait
            inner = exc.__cause__ or exc.__context__
            if inner is None:
                raise
            raise inner from None
        except (RayError, ConnectionError) as exc:  # the head or the object store is gone
            raise ClusterLostError(f"the Ray cluster failed in generation {generation + 1}: "
                                   f"{type(exc).__name__}: {exc}") from exc

    def _gather(self, params_ref: Any, generation: int, chunks: list[np.ndarray]) -> list[np.ndarray]:
        results: list[np.ndarray | None] = [None] * len(chunks)
        pending = deque(range(len(chunks)))
        inflight: dict[Any, tuple[int, _Worker, float]] = {}
        fault = self.faults.pop(generation, None)
        hooked = False
        progress = time.monotonic()
        done = 0

        def requeue(worker: _Worker) -> None:
            for ref, (index, owner, _) in list(inflight.items()):
                if owner is worker:
                    del inflight[ref]
                    owner.inflight -= 1
                    if results[index] is None:
                        pending.appendleft(index)
                        self._reevaluated += len(chunks[index])

        while done < len(chunks):
            self._check_probes()
            for worker in self.workers:
                while worker.live and worker.inflight < IN_FLIGHT_PER_WORKER and pending:
                    index = pending.popleft()
                    if results[index] is not None:
                        continue
                    this_fault = fault if fault == "slow" else None
                    if fault == "kill":
                        this_fault, fault = "kill", None
                    ref = worker.handle.evaluate.remote(params_ref, generation, chunks[index], this_fault)
                    inflight[ref] = (index, worker, time.monotonic())
                    worker.inflight += 1
            if self.on_dispatch is not None and not hooked:
                hooked = True
                self.on_dispatch(generation)
            now = time.monotonic()
            if not inflight:
                if now - progress > self.lost_after_s:
                    raise ClusterLostError(f"all {len(self.workers)} Ray workers lost in generation {generation + 1} "
                                           f"and none rejoined within {self.lost_after_s:g} s")
                self._check_probes(POLL_S)
                continue
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=POLL_S)
            for ref in ready:
                if ref not in inflight:  # its worker was given up on meanwhile
                    continue
                index, worker, sent = inflight.pop(ref)
                worker.inflight -= 1
                try:
                    value = ray.get(ref, timeout=GET_TIMEOUT_S)
                except LOST_ERRORS as exc:
                    if results[index] is None and all(i != index for i, _, _ in inflight.values()):
                        pending.appendleft(index)
                        self._reevaluated += len(chunks[index])
                    self._lose(worker, generation, type(exc).__name__)
                    requeue(worker)
                    continue
                if results[index] is None:
                    results[index], done = value, done + 1
                self._chunk_seconds.append(time.monotonic() - sent)
                progress = time.monotonic()
            self._speculate(inflight, results, chunks, params_ref, generation)
            deadline = self._chunk_deadline()
            for _ref, (_, worker, sent) in list(inflight.items()):
                # a node gone without Ray noticing yet, a hung actor: its chunks go to another live worker. The
                # last live worker is never given up on by the clock alone (a chunk's age counts its wait behind
                # the chunks queued before it, long on a loaded machine; nobody else could take it anyway): Ray's
                # own failure detection, or the stall watchdog, says when it is really gone
                others = any(w.live and w is not worker for w in self.workers)
                if worker.live and others and time.monotonic() - sent > deadline:
                    self._lose(worker, generation, f"no answer in {deadline:.1f} s")
                    requeue(worker)
        for ref, (_, worker, _) in inflight.items():
            worker.inflight -= 1
            self._orphans[ref] = (worker, generation)
        return results  # type: ignore[return-value]

    def _speculate(self, inflight: dict[Any, tuple[int, _Worker, float]], results: list[np.ndarray | None],
                   chunks: list[np.ndarray], params_ref: Any, generation: int) -> None:
        """Nothing left to send and a worker idle: it runs the oldest late chunk too (a worker killed without
        Ray having said so yet, or a slow one); whichever answer comes first is used, both are the same."""
        idle = [w for w in self.workers if w.live and w.inflight == 0]
        if not idle or not self._chunk_seconds:
            return
        late = SPECULATE_FACTOR * statistics.median(self._chunk_seconds)
        sent: dict[int, int] = {}
        for index, _, _ in inflight.values():
            sent[index] = sent.get(index, 0) + 1
        now = time.monotonic()
        for _, (index, owner, started) in sorted(inflight.items(), key=lambda item: item[1][2]):
            if not idle:
                return
            if results[index] is None and sent[index] == 1 and owner not in idle and now - started > late:
                worker = idle.pop()
                ref = worker.handle.evaluate.remote(params_ref, generation, chunks[index], None)
                inflight[ref] = (index, worker, now)
                worker.inflight += 1
                sent[index] = 2
                self._reevaluated += len(chunks[index])

    def _chunk_deadline(self) -> float:
        median = statistics.median(self._chunk_seconds) if self._chunk_seconds else 0.0
        return max(CHUNK_DEADLINE_MIN_S, CHUNK_DEADLINE_FACTOR * median)

    def generation_metrics(self) -> dict[str, float]:
        """The cluster's share of a generation's metrics: live workers now, and the members evaluated again in it
        (their worker was lost, or late: a chunk is sent again, never counted twice)."""
        metrics = {METRIC_LIVE_WORKERS: float(self.live_workers), METRIC_REEVALUATED: float(self._reevaluated)}
        if self._activity is not None:
            metrics.update(activity_metrics(self._activity))
        self._reevaluated, self._activity = 0, None
        return metrics

    def take_events(self) -> list[str]:
        """What happened to the workers since the last call (losses, rejoins), in words."""
        events, self._events = self._events, []
        return events

    def close(self) -> None:
        for worker in self.workers:
            if worker.handle is not None:
                with contextlib.suppress(Exception):
                    ray.kill(worker.handle, no_restart=True)
        self.workers = []


def open_ray_evaluator(es: OpenAIES, spec: PolicySpec, market: MarketData,
                       config: TrainingConfig) -> tuple[RayEvaluator, Callable[[], None]]:
    """A Ray evaluator on the cluster this process is connected to (else on a local cluster of RAY_WORKERS,
    or one worker per CPU, started here), and the function that closes both."""
    from btc_ai.training.cluster.connection import RayConnection

    connection = None
    if not ray.is_initialized():
        connection = RayConnection(f"local:{config.RAY_WORKERS or os.cpu_count() or 1}").__enter__()
    try:
        evaluator = RayEvaluator(es, spec, market, config)
    except BaseException:
        if connection is not None:
            connection.close()
        raise

    def close() -> None:
        evaluator.close()
        if connection is not None:
            connection.close()

    return evaluator, close
