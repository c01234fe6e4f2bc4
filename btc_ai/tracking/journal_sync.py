"""Group commit for the outage journal: its appends return once written (a killed process loses none of them),
and one background thread makes them durable, one fsync for every append made while the previous one ran."""

from __future__ import annotations

import atexit
import logging
import os
import threading
from pathlib import Path

_log = logging.getLogger("btc_ai.tracking.journal")


class Syncer:
    """fsyncs ``ops.jsonl`` off the appender's thread, as soon as the previous fsync ends: every append made
    meanwhile shares the next one."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._changed = threading.Condition()
        self._written = 0  # appends made
        self._synced = 0  # appends known durable
        self._thread: threading.Thread | None = None

    def written(self) -> None:
        with self._changed:
            self._written += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="btc-ai-journal-sync", daemon=True)
                self._thread.start()
                atexit.register(self.flush)
            self._changed.notify_all()

    def flush(self, timeout: float | None = 60.0) -> bool:
        """Wait until every append made so far is on disk; False when ``timeout`` ran out first."""
        with self._changed:
            target = self._written
            return self._changed.wait_for(lambda: self._synced >= target, timeout)

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._synced < self._written)
                target = self._written
            try:
                fd = os.open(self._path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except FileNotFoundError:  # replayed and compacted meanwhile: nothing left to keep
                pass
            except OSError as exc:  # the line is in the page cache: only a power cut could still lose it
                _log.warning("journal %s: fsync failed (%s); entries survive a crash of this process, not a power "
                             "cut", self._path.parent, exc)
            with self._changed:
                self._synced = target
                self._changed.notify_all()
