"""A long outage's replay: consecutive metric batches of one run are sent as one store call, and nothing about
what is stored changes; appends are written at once and made durable in the background (group commit)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from mlflow import MlflowClient

from btc_ai.tracking.journal import Entry, Journal
from btc_ai.tracking.operations import merge_batches
from btc_ai.tracking.tracker import Tracker


def _batch(run: str, step: int, count: int = 10, tags: list | None = None) -> dict:
    return {"run_id": run, "metrics": [[f"m{i}", float(step * 100 + i), 1_700_000_000_000 + step, step]
                                       for i in range(count)], "tags": tags or []}


def _fill(journal: Journal) -> list[tuple[str, dict]]:
    ops = [("log_batch", _batch("A", step)) for step in range(30)]  # 300 metrics: one call
    ops.append(("log_batch", {"run_id": "A", "params": [["lr", "0.1"]]}))  # params: never merged
    ops += [("log_batch", _batch("B", step, tags=[["ckpt", str(step)]] if step == 2 else None)) for step in range(5)]
    ops.append(("create_run", {"experiment_id": "0", "tags": {}}))
    ops += [("log_batch", _batch("A", step, count=400)) for step in range(3)]  # 1,200 metrics: two calls
    for op, args in ops:
        journal.append(op, args)
    return ops


def test_replay_merges_consecutive_metric_batches_of_a_run_and_keeps_their_order(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j")
    ops = _fill(journal)
    calls: list[Entry] = []
    sent = journal.replay(lambda entry, ids: calls.append(entry), merge=merge_batches)
    assert sent == len(ops) == 40 and not journal.has_pending()
    assert [(c.op, c.args.get("run_id", None), len(c.parts)) for c in calls] == [
        ("log_batch", "A", 30), ("log_batch", "A", 0), ("log_batch", "B", 5), ("create_run", None, 0),
        ("log_batch", "A", 2), ("log_batch", "A", 0)]
    stored = [m for c in calls if c.op == "log_batch" for m in c.args.get("metrics", [])]
    assert stored == [m for op, a in ops if op == "log_batch" for m in a.get("metrics", [])]
    assert calls[2].args["tags"] == [["ckpt", "2"]]
    assert [p.seq for p in calls[0].parts] == list(range(1, 31))


def test_a_replay_stopped_inside_the_file_resumes_after_the_last_merged_batch_sent(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j")
    ops = _fill(journal)
    calls: list[Entry] = []

    def apply_then_fail(entry: Entry, ids: dict[str, str]) -> None:
        if len(calls) == 2:
            raise ConnectionError("store away")
        calls.append(entry)

    with contextlib.suppress(ConnectionError):
        journal.replay(apply_then_fail, merge=merge_batches)
    assert journal.pending_count() == len(ops) - 31  # the 30 merged ones and the params entry were sent
    later = Journal(tmp_path / "j")  # another process: only the files
    rest: list[Entry] = []
    assert later.replay(lambda entry, ids: rest.append(entry), merge=merge_batches) == len(ops) - 31
    assert rest[0].args["run_id"] == "B" and len(rest[0].parts) == 5


def _offline_tracker(tmp_path: Path) -> tuple[Tracker, str, Path]:
    store_dir = tmp_path / "store"
    store_dir.mkdir()
    tracker = Tracker(f"sqlite:///{store_dir / 'mlflow.db'}", experiment="merge")
    run = tracker.create_run("session", name="s")
    tracker.close()  # no background replayer: the test replays when it wants to
    tracker.client._tracking_client.store.engine.dispose()  # drop pooled connections to the file
    store_dir.rename(tmp_path / "away")  # "unable to open database file"
    return tracker, run, store_dir


def test_a_refused_metric_inside_a_merged_batch_rejects_only_its_own_entry(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BTC_AI_JOURNAL_DIR", str(tmp_path / "journal"))
    tracker, run, store_dir = _offline_tracker(tmp_path)
    for step in range(12):
        tracker.log_values(run, {"good": float(step), **({"bad*name": 1.0} if step == 5 else {})}, step=step)
    assert tracker.offline and tracker.pending() == 12
    (tmp_path / "away").rename(store_dir)
    assert tracker.replay() == 12 and tracker.pending() == 0
    history = MlflowClient(tracker.tracking_uri).get_metric_history(run, "good")
    assert sorted(m.step for m in history) == [s for s in range(12) if s != 5]
    rejected = [json.loads(line) for line in (tracker.journal.folder / "rejected.jsonl").read_text().splitlines()]
    assert len(rejected) == 1 and [m[0] for m in rejected[0]["args"]["metrics"]] == ["good", "bad*name"]


def test_a_killed_process_loses_no_entry_it_appended(tmp_path: Path) -> None:
    """Appends return before the fsync; what they wrote is the kernel's already: a SIGKILL right after the
    last append loses nothing (only a power cut could, within the group-commit window)."""
    script = (
        "import os, signal, sys\n"
        "from btc_ai.tracking.journal import Journal\n"
        "j = Journal(sys.argv[1])\n"
        "for k in range(200):\n"
        "    j.append('log_batch', {'run_id': 'A', 'metrics': [['m', float(k), 0, k]]})\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "j")], timeout=120)
    assert done.returncode == -signal.SIGKILL
    entries = Journal(tmp_path / "j").entries()
    assert [e.args["metrics"][0][1] for e in entries] == [float(k) for k in range(200)]


def test_flush_returns_once_every_append_is_on_disk(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j")
    for k in range(50):
        journal.append("log_batch", _batch("A", k, count=1))
    assert journal.flush(timeout=60)
    assert journal._syncer._synced == 50
    assert os.path.getsize(tmp_path / "j" / "ops.jsonl") > 0
