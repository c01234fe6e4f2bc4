"""The outage journal as it grows: append latency and replay time at 10^3, 10^4 and 10^5 entries.

An entry is what the writer journals in an outage: a checkpoint's metrics, 5 generations of 25 metrics
(~6 KB; an hour's outage is ~10^4 of them). The journal is filled to n entries (records written straight to
the file, not one fsync each), then appends are timed at that length as a training makes them (the line is
written; a background thread fsyncs it, one fsync for all the appends made meanwhile), and so is an append
followed by `Journal.flush` (what a caller that needs the entry on disk at once pays: the disk's fsync). Replay
is timed for the journal alone (an apply that does nothing: reading, parsing, the progress mark) at every
size, and into real stores — a local SQLite store and a local `mlflow server` on 127.0.0.1 — at 10^3
entries of 25 metrics, with consecutive batches of a run merged into one store call (as `Tracker.replay`
does) and, for comparison, without. MLflow's own cost per metric row bounds the replay into a store: the 10^5
figure for a server is projected from the 10^3 one (replay is linear), not measured.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import Record, guarded
from btc_ai.tracking import journal_records as records
from btc_ai.tracking.journal import Entry, Journal

SIZES = (1_000, 10_000, 100_000)
APPENDS = 300  # timed at each size
STORE_ENTRIES = 1_000
STAMP = 1_700_000_000_000


def run() -> list[Record]:
    return guarded(measure)


def _batch(generation: int, run_id: str = "bench", generations: int = 5) -> dict:
    return {"run_id": run_id, "metrics": [[f"bench/m{i:02d}", 0.001 * i + generation, STAMP + g, generation + g]
                                          for g in range(generations) for i in range(25)]}


def _fill(folder: Path, count: int, run_id: str = "bench", generations: int = 5) -> None:
    """A journal of ``count`` entries, written as appends would write them, without an fsync each."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "ops.jsonl", "ab") as fh:
        for seq in range(1, count + 1):
            fh.write(records.encode(seq, "log_batch", _batch(seq * generations, run_id, generations)))
        os.fsync(fh.fileno())


def _appends(folder: Path) -> tuple[float, ...]:
    """p50 and p99 (ms) of ``APPENDS`` appends to the journal in ``folder``, of as many appends each followed by
    a flush, then of as many bare writes of as many bytes with an fsync each, taken in turn with them: the
    disk's own floor at that moment."""
    journal = Journal(folder)
    times: list[float] = []
    durable: list[float] = []
    floor: list[float] = []
    fd = os.open(folder / "bare", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        for k in range(APPENDS):
            batch = _batch(10_000_000 + k)
            journal.flush()  # each append timed from a quiet journal, as a training's appends come seconds apart
            tick = time.perf_counter()
            journal.append("log_batch", batch)
            times.append(time.perf_counter() - tick)
            journal.flush()
            tick = time.perf_counter()
            journal.append("log_batch", batch)
            journal.flush()
            durable.append(time.perf_counter() - tick)
            data = records.encode(k, "log_batch", batch)
            tick = time.perf_counter()
            os.write(fd, data)
            os.fsync(fd)
            floor.append(time.perf_counter() - tick)
    finally:
        os.close(fd)
    cuts, synced = statistics.quantiles(times, n=100), statistics.quantiles(durable, n=100)
    bare = statistics.quantiles(floor, n=100)
    return (1000 * cuts[49], 1000 * cuts[98], 1000 * synced[49], 1000 * synced[98], 1000 * bare[49],
            1000 * bare[98])


def _replay_alone(folder: Path) -> tuple[float, int]:
    applied = []

    def apply(entry: Entry, ids: dict[str, str]) -> None:
        applied.append(entry.seq)

    tick = time.perf_counter()
    Journal(folder).replay(apply)
    return time.perf_counter() - tick, len(applied)


def _replay_into(uri: str, folder: Path, *, merged: bool = True) -> float:
    """Seconds to replay ``STORE_ENTRIES`` one-generation metric entries into the store at ``uri``."""
    from btc_ai.tracking.tracker import Tracker

    os.environ["BTC_AI_JOURNAL_DIR"] = str(folder)
    try:
        tracker = Tracker(uri, experiment="bench-journal")
        run_id = tracker.create_run("attempt", name="bench")
        _fill(tracker.journal.folder, STORE_ENTRIES, run_id, generations=1)
        tick = time.perf_counter()
        sent = tracker.replay() if merged else tracker.journal.replay(tracker._apply_entry)
        seconds = time.perf_counter() - tick
        tracker.close()
    finally:
        del os.environ["BTC_AI_JOURNAL_DIR"]
    if sent != STORE_ENTRIES:
        raise RuntimeError(f"replayed {sent} of {STORE_ENTRIES} entries")
    return seconds


def measure() -> list[Record]:
    from btc_ai.tracking.server import LocalMlflowServer

    out: list[Record] = []
    entry_bytes = len(records.encode(1, "log_batch", _batch(1)))
    with tempfile.TemporaryDirectory() as tmp:
        for size in SIZES:
            folder = Path(tmp) / f"j{size}"
            _fill(folder, size)
            p50, p99, durable50, durable99, bare50, bare99 = _appends(folder)
            mb = (folder / "ops.jsonl").stat().st_size / 1e6
            seconds, sent = _replay_alone(folder)
            if sent != size + 2 * APPENDS:
                raise RuntimeError(f"replayed {sent} of {size + 2 * APPENDS} entries")
            label = f"{size:.0e}".replace("e+0", "e")
            out += [
                Record(f"journal_append_p50_ms_{label}", p50, "ms",
                       f"one append (fsynced in the background) to a journal of {size:,} entries ({mb:.0f} MB; "
                       f"{entry_bytes} B each)"),
                Record(f"journal_append_p99_ms_{label}", p99, "ms", f"p99 of {APPENDS} appends at {size:,} entries"),
                Record(f"diag_journal_durable_append_p50_ms_{label}", durable50, "ms",
                       "an append followed by Journal.flush (on disk when it returns)"),
                Record(f"diag_journal_durable_append_p99_ms_{label}", durable99, "ms", "p99 of the same"),
                Record(f"diag_journal_fsync_p50_ms_{label}", bare50, "ms",
                       "the disk's floor: a bare write of one entry's bytes + fsync, in turn with the appends"),
                Record(f"diag_journal_fsync_p99_ms_{label}", bare99, "ms", "p99 of the same"),
                Record(f"journal_replay_seconds_{label}", seconds, "s",
                       f"replay of {sent:,} entries, the journal's own part (an apply that does nothing)"),
            ]
            shutil.rmtree(folder)  # replay compacted the journal; its blobs and mark go too
        sqlite = _replay_into(f"sqlite:///{Path(tmp) / 'store' / 'mlflow.db'}", Path(tmp) / "jsqlite")
        sqlite_one = _replay_into(f"sqlite:///{Path(tmp) / 'store1' / 'mlflow.db'}", Path(tmp) / "jsqlite1",
                                  merged=False)
        server = LocalMlflowServer(Path(tmp) / "server")
        server.start()
        try:
            served = _replay_into(server.url, Path(tmp) / "jserver")
            served_one = _replay_into(server.url, Path(tmp) / "jserver1", merged=False)
        finally:
            server.stop()
    for name, seconds, one, where in (("sqlite", sqlite, sqlite_one, "a local SQLite store"),
                                      ("server", served, served_one, "a local mlflow server (HTTP, 127.0.0.1)")):
        out += [Record(f"journal_replay_seconds_1e3_{name}", seconds, "s",
                       f"replay of {STORE_ENTRIES:,} one-generation metric entries (25 metrics) into {where}, "
                       "consecutive batches merged"),
                Record(f"diag_journal_replay_unmerged_seconds_1e3_{name}", one, "s", "the same, one call an entry"),
                Record(f"journal_replay_ms_per_entry_{name}", 1000 * seconds / STORE_ENTRIES, "ms",
                       "per entry, merged: the store's part dominates")]
    out.append(Record("journal_replay_seconds_1e5_server_projected", served * 100_000 / STORE_ENTRIES, "s",
                      "10^5 such entries (2.5 M metric rows) into the local server, projected from 10^3"))
    return out
