"""A damaged journal never blocks what follows: torn lines, garbage, checksum mismatches and every single
damaged byte are set aside once, the rest is replayed; appends read only the end of the file, replay reads it
once; journals the previous version wrote are still replayed."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import cli_env, run_cli, session_runs, store_uri, tiny_flags
from mlflow import MlflowClient

from btc_ai.tracking import journal_records as records
from btc_ai.tracking.journal import Entry, Journal, journal_dir


class Store:
    def __init__(self) -> None:
        self.applied: list[tuple[int, str, dict]] = []

    def __call__(self, entry: Entry, ids: dict[str, str]) -> None:
        self.applied.append((entry.seq, entry.op, entry.args))


def _ops(journal: Journal) -> Path:
    return journal.folder / "ops.jsonl"


def _damaged(journal: Journal) -> list[dict]:
    if not journal.damaged_file.exists():
        return []
    return [json.loads(line) for line in journal.damaged_file.read_text().splitlines()]


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "damaged entry" in r.getMessage()]


def _read_bytes() -> int:
    """Bytes this process has read through read(2) and its kin so far."""
    return int(Path("/proc/self/io").read_text().split("rchar:")[1].split()[0])


def test_an_append_after_a_torn_last_line_leaves_the_journal_readable(tmp_path: Path, caplog) -> None:
    journal = Journal(tmp_path / "j")
    journal.append("log_batch", {"k": 0})
    with open(_ops(journal), "ab") as fh:
        fh.write(b'J 1234abcd 2 40 {"op":"log_ba')  # a process killed (or a disk full) mid-append
    journal.append("log_batch", {"k": 1})
    assert [e.args for e in journal.entries()] == [{"k": 0}, {"k": 1}]
    assert [e.args for e in journal.entries()] == [{"k": 0}, {"k": 1}]  # read again: no second report
    (aside,) = _damaged(journal)
    assert aside["text"] == 'J 1234abcd 2 40 {"op":"log_ba\n' and aside["offset"] > 0
    assert len(_warnings(caplog)) == 1
    store = Store()
    assert journal.replay(store) == 2 and [args for _, _, args in store.applied] == [{"k": 0}, {"k": 1}]


def test_a_line_of_garbage_in_the_middle_is_set_aside_once_and_the_rest_replayed(tmp_path: Path, caplog) -> None:
    journal = Journal(tmp_path / "j")
    journal.append("log_batch", {"k": 0})
    with open(_ops(journal), "ab") as fh:
        fh.write(b"\x00\x00 not a record \xff\n{half json\n")
    journal.append("log_batch", {"k": 1})
    assert journal.pending_count() == 2 and journal.pending_count() == 2
    store = Store()
    assert journal.replay(store) == 2
    assert [args for _, _, args in store.applied] == [{"k": 0}, {"k": 1}]
    (aside,) = _damaged(journal)  # the two garbage lines in a row: one region, one report
    assert "not a record" in aside["text"] and "{half json" in aside["text"]
    assert len(_warnings(caplog)) == 1


def test_a_record_whose_checksum_does_not_match_is_not_replayed(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j")
    for k in range(3):
        journal.append("log_batch", {"run_id": "r", "value": 1000 + k})
    data = _ops(journal).read_bytes()
    _ops(journal).write_bytes(data.replace(b'"value":1001', b'"value":9001'))  # still JSON, not what was written
    store = Store()
    journal.replay(store)
    assert [args["value"] for _, _, args in store.applied] == [1000, 1002]
    assert _damaged(journal)[0]["reason"] == "checksum mismatch"


def _each_damage(data: bytes):
    for position in range(len(data)):
        yield f"cut at {position}", data[:position]
        flipped = bytearray(data)
        flipped[position] ^= 0x01  # one bit: a digit, a letter or a newline becomes another
        yield f"bit flipped at {position}", bytes(flipped)
        newline = bytearray(data)
        newline[position] = 0x0A
        yield f"newline at {position}", bytes(newline)


@pytest.mark.slow
def test_a_journal_damaged_at_any_byte_never_raises_and_never_replays_what_was_not_written(tmp_path: Path) -> None:
    pristine = Journal(tmp_path / "pristine")
    written = [(1, "create_run", {"placeholder": "pending1", "tags": {"a": "b"}}),
               (2, "log_batch", {"run_id": "pending1", "metrics": [["m", 0.5, 1700000000000, 1]]}),
               (3, "set_terminated", {"run_id": "pending1", "status": "FINISHED"})]
    for _, op, args in written:
        pristine.append(op, args)
    data = _ops(pristine).read_bytes()
    for case, damaged in _each_damage(data):
        folder = tmp_path / "case"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        (folder / "ops.jsonl").write_bytes(damaged)
        journal = Journal(folder)
        found = [(e.seq, e.op, e.args) for e in journal.entries()]
        assert all(entry in written for entry in found), case  # whatever is read is what was written
        assert found == sorted(found), case
        if case.startswith("cut"):
            assert found == written[: len(found)], case
        reports = len(_damaged(journal))
        store = Store()
        journal.replay(store)
        assert store.applied == found, case
        assert len(_damaged(journal)) == reports, case  # set aside once, not again by the replay
        seq = journal.append("log_batch", {"after": True})
        assert seq > max([s for s, _, _ in found], default=0), case
        journal.replay(store)
        assert store.applied[-1] == (seq, "log_batch", {"after": True}), case


def test_a_journal_of_the_previous_version_torn_by_a_kill_is_replayed_after_the_upgrade(tmp_path: Path) -> None:
    folder = tmp_path / "j"
    folder.mkdir()
    old = [json.dumps({"seq": seq, "op": "log_batch", "args": {"k": seq}}, separators=(",", ":")) + "\n"
           for seq in (1, 2, 3)]
    (folder / "ops.jsonl").write_text("".join(old) + '{"seq":4,"op":"log_b')  # killed mid-append
    (folder / "replayed").write_text("1")  # its replay mark: a number
    journal = Journal(folder)
    assert journal.append("log_batch", {"k": 5}) == 4
    assert [e.args["k"] for e in journal.pending()] == [2, 3, 5]
    store = Store()
    assert journal.replay(store) == 3 and [seq for seq, _, _ in store.applied] == [2, 3, 4]
    assert journal.pending_count() == 0 and journal.append("log_batch", {}) == 5


def test_an_append_reads_only_the_end_of_the_journal(tmp_path: Path) -> None:
    """Older content that cannot be read at all (a megabyte of garbage) and thousands of entries: an append
    reads tens of kilobytes, not the file."""
    folder = tmp_path / "j"
    folder.mkdir()
    batch = {"run_id": "r", "metrics": [[f"fitness/m{i}", 0.1 * i, 1700000000000, 7] for i in range(25)]}
    with open(folder / "ops.jsonl", "wb") as fh:
        fh.write(bytes(range(256)) * 4096)  # 1 MiB, no record in it
        fh.write(b"\n")
        for seq in range(1, 2001):
            fh.write(records.encode(seq, "log_batch", batch))
    size = (folder / "ops.jsonl").stat().st_size
    journal = Journal(folder)
    before = _read_bytes()
    assert journal.append("log_batch", batch) == 2001
    assert _read_bytes() - before < 64 * 1024 < size // 40


def test_a_replay_reads_the_journal_once(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j")
    batch = {"run_id": "r", "metrics": [[f"fitness/m{i}", 0.1 * i, 1700000000000, 7] for i in range(200)]}
    for _ in range(300):
        journal.append("log_batch", batch)
    size = _ops(journal).stat().st_size
    before = _read_bytes()
    assert journal.replay(Store()) == 300
    assert _read_bytes() - before < 3 * size  # each entry read once (plus a read buffer), not the file per entry


@pytest.mark.slow
def test_train_sync_and_report_work_on_a_journal_with_garbage_and_torn_lines(tmp_path: Path) -> None:
    """A real store and `btc-ai` processes: writes journaled for the session (a garbage line between them, a
    line torn by a kill, one more append after it) are sent by the next command; the damage is reported once
    and kept in damaged.jsonl."""
    env = cli_env(tmp_path)
    first = run_cli(tmp_path, "train", *tiny_flags(EPISODES=2), env=env)
    assert first.returncode == 0, first.stderr
    session = session_runs(store_uri(tmp_path))[0].info.run_id
    journal = Journal(journal_dir(store_uri(tmp_path), tmp_path / "mlruns" / "journal"))
    journal.append("log_batch", {"run_id": session, "tags": [["journal.first", "1"]]})
    with open(_ops(journal), "ab") as fh:
        fh.write(b"garbage \x00\xff in the middle\n")
    journal.append("log_batch", {"run_id": session, "tags": [["journal.second", "2"]]})
    with open(_ops(journal), "ab") as fh:
        fh.write(b'J 0badc0de 3 80 {"op":"log_batch","ar')  # torn
    journal.append("log_batch", {"run_id": session, "tags": [["journal.third", "3"]]})

    train = run_cli(tmp_path, "train", *tiny_flags(EPISODES=2), env=env)
    assert train.returncode == 0, train.stderr
    assert train.stderr.count("damaged entry") == 2, train.stderr  # the garbage and the torn line
    sync = run_cli(tmp_path, "sync", env=env)
    report = run_cli(tmp_path, "report", session, env=env)
    assert sync.returncode == 0 and "nothing to send" in sync.stdout, sync.stderr
    assert report.returncode == 0, report.stderr
    assert "damaged" not in sync.stderr + report.stderr  # reported once, by the first command
    tags = MlflowClient(store_uri(tmp_path)).get_run(session).data.tags
    assert (tags["journal.first"], tags["journal.second"], tags["journal.third"]) == ("1", "2", "3")
    kept = [d["text"] for d in _damaged(journal)]
    assert len(kept) == 2 and "in the middle" in kept[0] and kept[1].startswith("J 0badc0de 3 80")


def test_two_processes_appending_while_a_third_replays_send_each_entry_once_in_order(tmp_path: Path) -> None:
    """Replay reads whole lines without the lock while other processes append: every entry exactly once, each
    writer's entries in its order, numbers unique."""
    import sys

    folder = tmp_path / "j"
    code = ("import sys; from btc_ai.tracking.journal import Journal; j = Journal(sys.argv[1])\n"
            "for k in range(200): j.append('log_batch', {'writer': sys.argv[2], 'k': k, 'pad': 'x' * (k * 37 % 3000)})")
    writers = [subprocess.Popen([sys.executable, "-c", code, str(folder), name]) for name in ("a", "b")]
    journal, store = Journal(folder), Store()
    while any(w.poll() is None for w in writers):
        journal.replay(store)
    journal.replay(store)
    assert all(w.returncode == 0 for w in writers)
    seqs = [seq for seq, _, _ in store.applied]
    assert seqs == sorted(set(seqs)) and len(seqs) == 400
    for name in ("a", "b"):
        assert [args["k"] for _, _, args in store.applied if args["writer"] == name] == list(range(200))
    assert journal.pending_count() == 0 and not _damaged(journal)
