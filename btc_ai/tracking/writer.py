"""The attempt's writer: metrics batched in memory and committed with each checkpoint from one background
thread, and the retention of the store's periodic checkpoints."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mlflow.entities import Metric

from btc_ai.tracking.run_model import ARTIFACT_CHECKPOINTS, TAG_LAST_CHECKPOINT, checkpoint_tag
from btc_ai.tracking.store import Tracker


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


class RunWriter:
    """Writes one run's metrics and checkpoints from a background thread; a generation never waits.

    Metrics are committed with checkpoints: the metrics of every generation up to a checkpoint go to
    the store in one transaction with that checkpoint's sha256 tag, after its file is uploaded. A
    process killed at any moment so leaves the run consistent: metrics for every generation up to
    the newest recorded checkpoint and none beyond it; a resume continues right after it, so no
    generation is logged twice. :meth:`flush` sends everything (the end of an attempt).
    """

    def __init__(self, tracker: Tracker, run_id: str, *, keep_periodic: int | None = None) -> None:
        self.tracker = tracker
        self.run_id = run_id
        self.retention = Retention(keep_periodic)
        self._pending: list[Metric] = []
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="btc-ai-writer")
        self._futures: list[Future[Any]] = []

    def add(self, step: int, metrics: Mapping[str, float]) -> None:
        stamp = int(time.time() * 1000)
        with self._lock:
            self._pending.extend(Metric(k, float(v), stamp, step) for k, v in metrics.items())

    def submit(self, fn: Any, *args: Any, **kwargs: Any) -> Future[Any]:
        """Run another store call on the writer thread, in order with the rest."""
        future = self._pool.submit(fn, *args, **kwargs)
        self._futures.append(future)
        return future

    def checkpoint(self, generation: int, path: Path, sha256: str, *, emergency: bool) -> list[Path]:
        """Upload ``path``, then commit it (its sha256 tag) with the metrics of every generation up to it;
        returns the older checkpoints retired from the store (their local files are the caller's).

        Returns once committed, so a SIGKILL loses at most the generations since this checkpoint; a
        store error surfaces here. (Letting the commit run on while training goes on was tried: under
        full CPU load the commit then lagged a whole interval, doubling what a SIGKILL could lose.)
        """
        with self._lock:
            batch, self._pending = self._pending, []
        tags = {checkpoint_tag(path.stem): sha256, TAG_LAST_CHECKPOINT: str(generation)}
        return self.submit(self._commit_checkpoint, path, batch, tags, emergency).result()

    def _commit_checkpoint(self, path: Path, batch: list[Metric], tags: Mapping[str, str],
                           emergency: bool) -> list[Path]:
        self.tracker.log_artifact(self.run_id, path, ARTIFACT_CHECKPOINTS)
        self.tracker.log_metrics(self.run_id, batch, tags)
        retired = self.retention.admit(path, emergency=emergency)
        for old in retired:
            self.tracker.delete_artifact(self.run_id, f"{ARTIFACT_CHECKPOINTS}/{old.name}")
        return retired

    def flush(self) -> None:
        """Send every pending metric and wait until all queued work is stored; re-raise the first error."""
        with self._lock:
            batch, self._pending = self._pending, []
        if batch:
            self.submit(self.tracker.log_metrics, self.run_id, batch)
        futures, self._futures = self._futures, []
        errors = [f.exception() for f in futures]
        first = next((e for e in errors if e is not None), None)
        if first is not None:
            raise first

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._pool.shutdown(wait=True)
