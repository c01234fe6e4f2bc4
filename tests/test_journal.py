"""The journal on its own (no MLflow) and the tracker's switch to it: order, exactly once, durability."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException

from btc_ai.tracking.journal import Entry, Journal, is_placeholder, journal_dir, new_placeholder, substitute
from btc_ai.tracking.outage import outage_reason
from btc_ai.tracking.tracker import Tracker, is_outage


class Store:
    """Applies entries to a list; raises ConnectionError (an outage) while ``down``."""

    def __init__(self) -> None:
        self.applied: list[tuple[int, str, dict]] = []
        self.down = False
        self.fail_at: int | None = None

    def __call__(self, entry: Entry, ids: dict[str, str]) -> str | None:
        if self.down or entry.seq == self.fail_at:
            raise ConnectionError("store unreachable")
        args = substitute(entry.args, ids)
        self.applied.append((entry.seq, entry.op, args))
        return f"real{entry.seq}" if entry.op == "create_run" else None


def test_entries_replay_in_order_exactly_once_across_an_outage(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j")
    for k in range(5):
        journal.append("log_batch", {"run_id": "r", "k": k})
    store = Store()
    store.fail_at = 3  # the store goes away while entry 3 is sent
    with pytest.raises(ConnectionError):
        journal.replay(store)
    assert [seq for seq, _, _ in store.applied] == [1, 2] and journal.pending_count() == 3
    journal.append("log_batch", {"run_id": "r", "k": 5})  # appends go on during the outage
    store.fail_at = None
    assert journal.replay(store) == 4
    assert [args["k"] for _, _, args in store.applied] == [0, 1, 2, 3, 4, 5]
    assert journal.pending_count() == 0 and journal.replay(store) == 0  # nothing sent twice
    assert journal.append("log_batch", {"k": 6}) == 7  # numbering continues after compaction


def test_a_new_process_resumes_the_replay_where_the_last_one_stopped(tmp_path: Path) -> None:
    first = Journal(tmp_path / "j")
    for k in range(3):
        first.append("log_batch", {"k": k})
    store = Store()
    store.fail_at = 2
    with pytest.raises(ConnectionError):
        first.replay(store)
    later = Journal(tmp_path / "j")  # another process: only the files
    store.fail_at = None
    later.replay(store)
    assert [args["k"] for _, _, args in store.applied] == [0, 1, 2]


def test_a_line_cut_off_by_a_killed_process_is_ignored(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j")
    journal.append("log_batch", {"k": 0})
    with open(tmp_path / "j" / "ops.jsonl", "a") as fh:
        fh.write('{"seq": 2, "op": "log_ba')  # killed mid-write
    assert [e.args for e in journal.pending()] == [{"k": 0}]


def test_files_are_copied_in_when_journaled_and_removed_once_sent(tmp_path: Path) -> None:
    source = tmp_path / "gen-000004.pt"
    source.write_bytes(b"checkpoint bytes")
    journal = Journal(tmp_path / "j")
    journal.append("log_artifact", {"run_id": "r", "path": str(source)}, {"path": source})
    source.unlink()  # retention (or a temporary folder) removes the original: the copy remains
    (entry,) = journal.pending()
    copy = Path(entry.args["path"])
    assert copy.read_bytes() == b"checkpoint bytes" and copy.parent == entry.folder
    journal.replay(Store())
    assert not copy.exists()


def test_placeholders_are_mapped_to_real_run_ids_for_later_entries(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j")
    placeholder = new_placeholder()
    assert is_placeholder(placeholder)
    journal.append("create_run", {"placeholder": placeholder, "tags": {}})
    journal.append("log_batch", {"run_id": placeholder, "tags": [["btc_ai.resumed_from", f"x@{placeholder}"]]})
    store = Store()
    journal.replay(store)
    assert store.applied[1][2] == {"run_id": "real1", "tags": [["btc_ai.resumed_from", "x@real1"]]}
    assert journal.ids() == {placeholder: "real1"}


def test_journal_folders_are_per_tracking_uri(tmp_path: Path) -> None:
    a = journal_dir("http://127.0.0.1:5000", tmp_path)
    b = journal_dir("http://127.0.0.1:5001", tmp_path)
    assert a != b and a.parent == b.parent == tmp_path.resolve()


def test_outages_are_told_apart_from_refusals() -> None:
    import requests

    try:
        try:
            raise requests.exceptions.ConnectionError("refused")
        except requests.exceptions.ConnectionError as inner:
            raise MlflowException("API request to http://x/api failed with exception refused") from inner
    except MlflowException as exc:
        assert is_outage(exc)
    assert not is_outage(MlflowException("Changing param values is not allowed", error_code="INVALID_PARAMETER_VALUE"))
    assert not is_outage(ValueError("bad"))


@pytest.mark.parametrize(("body", "outage"), [
    # Flask's own page: MLflow crashed on the request (3.18 does when its database drops a connection
    # mid-transaction and the rollback raises too); the write is journaled and replayed, not failed
    ("<!doctype html>\n<title>500 Internal Server Error</title>\n<h1>Internal Server Error</h1>", True),
    # MLflow's own error answer: it handled the request and refused it; not an outage
    ('{"error_code": "INTERNAL_ERROR", "message": "a bug in the request"}', False)])
def test_a_500_is_an_outage_only_when_mlflow_did_not_answer_it(body: str, outage: bool, monkeypatch) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Broken(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(500)
            self.send_header("Content-Type", "text/html" if outage else "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Broken)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # as the tracker sets it for a server
    client = MlflowClient(f"http://127.0.0.1:{server.server_port}")
    try:
        with pytest.raises(MlflowException) as raised:
            client.log_batch("0123456789abcdef", metrics=[Metric("fitness", 1.0, 0, 1)])
    finally:
        server.shutdown()
        server.server_close()
    assert is_outage(raised.value) is outage
    if outage:
        assert outage_reason(raised.value) == "it answered HTTP 500"


def test_tracker_goes_offline_journals_and_replays_when_the_store_is_back(tmp_path: Path, monkeypatch) -> None:
    """A real SQLite store made unopenable (its folder swapped away) and back: runs created meanwhile
    get placeholders, and after the replay every write is on the store once, in order."""
    monkeypatch.chdir(tmp_path)
    store_dir = tmp_path / "store"
    uri = f"sqlite:///{store_dir / 'mlflow.db'}"
    store_dir.mkdir()
    tracker = Tracker(uri, experiment="journal")
    session = tracker.create_run("session", name="s")
    tracker.log_values(session, {"m": 1.0}, step=1)

    tracker.client._tracking_client.store.engine.dispose()  # drop pooled connections to the file
    store_dir.rename(tmp_path / "away")  # "unable to open database file"
    attempt = tracker.create_run("attempt", parent=session, name="a")
    assert is_placeholder(attempt) and tracker.offline
    tracker.log_values(attempt, {"m": 2.0}, step=2)
    tracker.log_values(session, {"m": 3.0}, step=3)
    tracker.end_run(attempt, "FINISHED")
    assert tracker.pending() == 4

    (tmp_path / "away").rename(store_dir)
    deadline = time.monotonic() + 30  # the background replayer notices by itself
    while tracker.offline and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not tracker.offline and tracker.pending() == 0
    client = MlflowClient(uri)
    runs = {r.data.tags["btc_ai.kind"]: r for r in client.search_runs([tracker.experiment_id])}
    real = runs["attempt"].info.run_id
    assert runs["attempt"].data.tags["mlflow.parentRunId"] == session and runs["attempt"].info.status == "FINISHED"
    assert [(m.step, m.value) for m in client.get_metric_history(session, "m")] == [(1, 1.0), (3, 3.0)]
    assert [(m.step, m.value) for m in client.get_metric_history(real, "m")] == [(2, 2.0)]
    tracker.log_values(attempt, {"m": 4.0}, step=4)  # the placeholder still works, now for the real run
    assert [m.step for m in client.get_metric_history(real, "m")] == [2, 4]
    tracker.close()
    assert json.loads((tracker.journal.folder / "ids.json").read_text()) == {attempt: real}
