"""The attempt's writer: metrics batched in memory and committed with each checkpoint from one background
thread (upload, metric chunks, marker, retention: in that order), and the retention of the store's periodic
checkpoints."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import groupby
from pathlib import Path
from typing import Any

from mlflow.entities import Metric

from btc_ai.tracking.operations import MAX_METRICS_PER_CALL
from btc_ai.tracking.run_model import ARTIFACT_CHECKPOINTS, TAG_LAST_CHECKPOINT, checkpoint_tag
from btc_ai.tracking.tracker import Tracker
from btc_ai.training.faults import commit_began, commit_fault, commit_step

_log = logging.getLogger(__name__)


class Retention:
    """The newest ``keep`` periodic checkpoints of an attempt stay; emergency ones always stay."""

    def __init__(self, keep: int | None) -> None:
        self.keep = keep
        self._periodic: list[Path] = []  # committed periodic checkpoints, oldest first

    def admit(self, path: Path, *, emergency: bool) -> list[Path]:
        """Record a committed checkpoint; returns the older ones to retire now."""
        if emergency or self.keep is None:
            return []
        self._periodic.append(path)
        cut = max(len(self._periodic) - self.keep, 0)
        retired, self._periodic = self._periodic[:cut], self._periodic[cut:]
        return retired


def step_chunks(metrics: list[Metric], limit: int = MAX_METRICS_PER_CALL) -> Iterator[list[Metric]]:
    """``metrics`` (in step order) in chunks of at most ``limit``, each holding whole steps: a chunk is one
    store transaction, so a process killed between two chunks leaves whole generations on the store."""
    chunk: list[Metric] = []
    for _, group in groupby(metrics, key=lambda m: m.step):
        rows = list(group)
        if chunk and len(chunk) + len(rows) > limit:
            yield chunk
            chunk = []
        while len(rows) > limit:  # a step with more metrics than one call takes (never at ~25 per generation)
            yield rows[:limit]
            rows = rows[limit:]
        chunk.extend(rows)
    if chunk:
        yield chunk


class RunWriter:
    """Writes one run's metrics and checkpoints from a background thread; a generation never waits.

    Metrics are committed with checkpoints, in this order: the checkpoint file is uploaded; the metrics of
    every generation since the previous checkpoint go to the store in chunks of whole generations (one
    store call, one transaction each, within MLflow's limit of 1000 metrics a call); then the checkpoint's
    marker (its sha256 tag and the last-checkpoint tag) alone, last; only then are older checkpoints
    retired (store and local file). A checkpoint with a marker so has every metric up to it on the store,
    and the checkpoint before it is never deleted before the marker of the one that replaces it is stored.
    A process killed inside a commit leaves at most whole generations beyond its newest marked
    checkpoint; a resume starts from that checkpoint and does not log those generations again (see
    ``logged_through`` of `AttemptLogger`). :meth:`flush` sends everything (the end of an attempt).
    """

    def __init__(self, tracker: Tracker, run_id: str, *, keep_periodic: int | None = None) -> None:
        self.tracker = tracker
        self.run_id = run_id
        self.retention = Retention(keep_periodic)
        self._pending: list[Metric] = []
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="btc-ai-writer")
        self._futures: list[Future[Any]] = []
        self._commit: Future[Any] | None = None  # the checkpoint commit in flight
        self._closed = False

    def add(self, step: int, metrics: Mapping[str, float]) -> None:
        stamp = int(time.time() * 1000)
        with self._lock:
            self._pending.extend(Metric(k, float(v), stamp, step) for k, v in metrics.items())

    def submit(self, fn: Any, *args: Any, **kwargs: Any) -> Future[Any]:
        """Run another store call on the writer thread, in order with the rest."""
        future = self._pool.submit(fn, *args, **kwargs)
        self._futures.append(future)
        return future

    def checkpoint(self, generation: int, path: Path, sha256: str, *, emergency: bool) -> None:
        """Commit the checkpoint at ``path`` on the writer thread: upload, the metrics of every generation up to
        it, its marker, then retention (older checkpoints retired from the store and the local folder).

        The training goes on while a periodic commit is sent, but a commit never starts before the previous
        one is stored (this call waits for it, and re-raises its error): at most one is in flight, so a
        SIGKILL loses at most the generations since the checkpoint before the newest, and a store as fast
        as the checkpoints come costs the training nothing. (Waiting for every commit instead cost a training
        on a team server a share of its time: docs/benchmarks.md, Team server.) An emergency checkpoint
        (an error or an interrupt is ending the attempt) returns only once committed, and is sent even when
        the commit before it failed: that error is logged (the attempt is ending anyway) and the metrics the
        failed commit did not send go with the emergency one.
        """
        try:
            self.wait_for_commit()
        except Exception as failed:
            if not emergency:
                raise
            _log.warning("checkpoint commit before the emergency checkpoint of generation %d failed (%s: %s); "
                         "sending the emergency checkpoint", generation, type(failed).__name__, failed)
        with self._lock:
            batch, self._pending = self._pending, []
        self._commit = self.submit(self._commit_checkpoint, generation, path, sha256, batch, emergency)
        if emergency:
            self.wait_for_commit()

    def wait_for_commit(self) -> None:
        """Block until the checkpoint commit in flight (if any) is stored; re-raise its error."""
        commit, self._commit = self._commit, None
        if commit is not None:
            commit.result()

    def _commit_checkpoint(self, generation: int, path: Path, sha256: str, batch: list[Metric],
                           emergency: bool) -> None:
        commit = commit_began()
        sent = 0
        try:
            commit_fault("upload", commit)
            self.tracker.log_artifact(self.run_id, path, ARTIFACT_CHECKPOINTS)
            commit_step("upload", commit)
            for number, chunk in enumerate(step_chunks(batch), 1):
                commit_fault(f"metrics:{number}", commit)
                self.tracker.log_metrics(self.run_id, chunk)
                sent += len(chunk)
                commit_step(f"metrics:{number}", commit)
        except BaseException:
            with self._lock:  # not on the store: they go with the next commit (an emergency one) or the flush
                self._pending[:0] = batch[sent:]
            raise
        commit_fault("marker", commit)
        self.tracker.set_tags(self.run_id, {checkpoint_tag(path.stem): sha256, TAG_LAST_CHECKPOINT: str(generation)})
        self.tracker.make_durable()  # older checkpoints go next: their successor's marker must outlive a power cut
        commit_step("marker", commit)
        commit_fault("retention", commit)
        retired = self.retention.admit(path, emergency=emergency)
        for old in retired:  # the newer checkpoint's marker is stored: the older ones may go
            self.tracker.delete_artifact(self.run_id, f"{ARTIFACT_CHECKPOINTS}/{old.name}")
            self.tracker.delete_tags(self.run_id, [checkpoint_tag(old.stem)])  # no marker of a file that is gone
            old.unlink(missing_ok=True)
        commit_step("retention", commit)

    def flush(self) -> None:
        """Send every pending metric and wait until all queued work is stored; re-raise the first error."""
        with self._lock:
            batch, self._pending = self._pending, []
        for chunk in step_chunks(batch):
            self.submit(self.tracker.log_metrics, self.run_id, chunk)
        futures, self._futures, self._commit = self._futures, [], None
        errors = [f.exception() for f in futures]
        first = next((e for e in errors if e is not None), None)
        if first is not None:
            raise first

    def close(self) -> None:
        """Flush (re-raising the first error of the attempt's writes), then end the writer thread; a second
        call does nothing."""
        if self._closed:
            return
        self._closed = True
        try:
            self.flush()
        finally:
            self._pool.shutdown(wait=True)
