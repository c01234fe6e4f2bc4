"""A durable, ordered journal of tracking writes that could not reach the tracking server.

Each entry is one checksummed line appended to ``ops.jsonl`` in a single write, so it is whole or
detectably damaged (`btc_ai.tracking.journal_records`). A killed process loses nothing it appended (the line is
in the kernel's page cache); a power cut can lose the lines appended since the last fsync, which a background
thread runs as soon as the one before it ends (group commit: one fsync for every append that came meanwhile, so
the window is about two fsyncs long and the appender never waits for the disk). `Journal.flush` waits for that
where a promise depends on it (a checkpoint marker, before older checkpoints are deleted). Files an entry refers to are copied under
``blobs/<seq>/`` when it is written, so later changes to the originals (checkpoint retention, temporary
folders) cannot lose them. A damaged line (cut off by a kill or a full disk, garbage, a checksum that does
not match) is copied to ``damaged.jsonl`` with where it was found, reported once, and blocks nothing. An
append reads only the end of the file; replay reads it once: ``replayed`` holds the number of the last
entry applied and the byte just after it, written after each one, so a process that dies
mid-replay repeats at most the entry it was applying (the tracking layer makes every operation
idempotent). Runs created while the server was unreachable get placeholder IDs; ``ids.json`` maps them to
the real IDs once their creation is replayed, and later entries are rewritten through that map.

No mlflow here: the journal knows entries, not what they mean. A file lock keeps two processes (a
training and a ``btc-ai sync``) from replaying the same journal at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from btc_ai.tracking import journal_records as records
from btc_ai.tracking.journal_sync import Syncer
from btc_ai.tracking.paths import journal_dir, private_folder

_log = logging.getLogger(__name__)

__all__ = ["Entry", "Journal", "is_placeholder", "journal_dir", "new_placeholder", "substitute"]  # journal_dir: paths

PLACEHOLDER_PREFIX = "pending"


def new_placeholder() -> str:
    """A run ID that stands for a run whose creation waits in the journal."""
    return f"{PLACEHOLDER_PREFIX}{uuid.uuid4().hex[:25]}"


def is_placeholder(run_id: str) -> bool:
    return run_id.startswith(PLACEHOLDER_PREFIX)


@dataclass(frozen=True)
class Entry:
    seq: int
    op: str
    args: dict[str, Any]
    folder: Path  # the entry's blob folder (may not exist)
    parts: tuple[Entry, ...] = ()  # the entries a merged one stands for (see `Journal.replay`'s ``merge``)


class Journal:
    """Append-only entries, replayed once each, in order."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._ops = self.folder / "ops.jsonl"
        self._done = self.folder / "replayed"
        self._ids_file = self.folder / "ids.json"
        self.damaged_file = self.folder / "damaged.jsonl"
        self._lock = threading.RLock()  # appends and bookkeeping, within this process
        self._depth = 0  # how deep this process's holder of ``_lock`` is nested in `_exclusive`
        self._told_mark = False  # an unreadable replay mark is reported once
        self._replaying = threading.Lock()  # one replay at a time within this process
        self._syncer = Syncer(self._ops)

    # -- state on disk --------------------------------------------------------------------------

    def _progress(self) -> tuple[int, int | None]:
        """The number of the last entry replayed and the byte of ``ops.jsonl`` just after it (None: unknown,
        as the previous version wrote it or after a compaction: entries are then told apart by number)."""
        return self._mark()[1:]

    def _mark(self) -> tuple[int, int, int | None]:
        try:
            return records.read_mark(self._done.read_bytes())
        except FileNotFoundError:
            return 0, 0, None
        except ValueError:  # every operation is idempotent: sending everything again loses nothing
            if not self._told_mark:
                self._told_mark = True
                _log.warning("journal %s: its replay mark is unreadable; every entry is sent again", self.folder)
            return 0, 0, None

    def _write_atomic(self, path: Path, text: str) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    def ids(self) -> dict[str, str]:
        try:
            return json.loads(self._ids_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}

    # -- reading --------------------------------------------------------------------------------

    def entries(self) -> list[Entry]:
        """Every entry in the journal (damaged lines are set aside, see `_set_aside`)."""
        return [entry for entry, _ in self._records(0, None)]

    def pending(self) -> list[Entry]:
        return [entry for entry, _ in self._records(*self._pending_from())]

    def pending_count(self) -> int:
        return sum(1 for _ in self._records(*self._pending_from(), full=False))

    def has_pending(self) -> bool:
        return next(self._records(*self._pending_from(), full=False), None) is not None

    def _pending_from(self) -> tuple[int, int | None]:
        """Where pending entries begin: (byte, None) after the replay mark's offset, else (0, the number of the
        last entry replayed), for an offset that is missing or does not fall just after a line."""
        done, offset = self._progress()
        if offset:
            try:
                with open(self._ops, "rb") as fh:
                    fh.seek(offset - 1)
                    if fh.read(1) == b"\n":
                        return offset, None
            except FileNotFoundError:
                pass
        return 0, done

    def _records(self, start: int, above: int | None, *, full: bool = True) -> Iterator[tuple[Entry, int]]:
        """Whole entries from byte ``start`` on (numbered above ``above`` when given), each with the byte just
        after it. Read without the lock: a line that does not parse is looked at again under it."""
        try:
            fh = open(self._ops, "rb")  # noqa: SIM115 (closed by the with below; a missing file is no entry)
        except FileNotFoundError:
            return
        with fh:
            yield from self._scan(fh, start, above, full=full)

    def _scan(self, fh: BinaryIO, start: int, above: int | None, *, full: bool = True) -> Iterator[tuple[Entry, int]]:
        offset = start
        while True:
            fh.seek(offset)
            line = fh.readline()
            if not line:
                return
            try:
                found = records.parse(line, full=full)
            except records.Damaged:
                found, line = self._set_aside(offset, os.fstat(fh.fileno()).st_ino)
                if not line:  # the file was replayed and compacted meanwhile
                    return
            offset += len(line)
            if found is not None and (above is None or found[0] > above):
                seq, op, args = found
                yield Entry(seq, op, args, self.folder / "blobs" / str(seq)), offset

    def _set_aside(self, offset: int, inode: int) -> tuple[tuple[int, str, dict[str, Any]] | None, bytes]:
        """The line at ``offset`` read again under the lock (another process may have been appending it); if it
        is damaged, it and the damaged lines right after it are copied to ``damaged.jsonl`` with where they were
        found, reported in one warning, and overwritten with spaces (newlines kept, so every offset holds), so
        that they block nothing and are reported once. Returns what the line holds and the bytes read."""
        with self._exclusive(), contextlib.ExitStack() as stack:
            try:
                fh = stack.enter_context(open(self._ops, "r+b"))
            except FileNotFoundError:
                return None, b""
            fh.seek(offset)
            first = line = fh.readline()
            if os.fstat(fh.fileno()).st_ino != inode or not line:
                return None, b""
            try:
                return records.parse(line), line
            except records.Damaged as exc:
                reason = str(exc)
            damaged = [line]
            while line.endswith(b"\n") and (line := fh.readline()):
                try:
                    records.parse(line, full=False)
                    break
                except records.Damaged:
                    damaged.append(line)
            raw = b"".join(damaged)
            note = {"found": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "file": str(self._ops), "offset": offset,
                    "bytes": len(raw), "reason": reason, "text": raw.decode("utf-8", "backslashreplace")}
            with open(self.damaged_file, "a", encoding="utf-8") as out:
                out.write(json.dumps(note) + "\n")
                out.flush()
                os.fsync(out.fileno())
            fh.seek(offset)
            fh.write(bytes(b if b == 0x0A else 0x20 for b in raw) + (b"" if raw.endswith(b"\n") else b"\n"))
            fh.flush()
            os.fsync(fh.fileno())
        _log.warning("journal %s: a damaged entry (%s, %d bytes at byte %d of ops.jsonl) is set aside in %s; the "
                     "other entries are sent as usual", self.folder, reason, len(raw), offset, self.damaged_file)
        return None, first

    @contextlib.contextmanager
    def _file_lock(self, name: str = "lock", *, wait: bool = True) -> Iterator[bool]:
        """An exclusive lock shared with other processes; yields False (not held) when ``wait`` is off and
        another holder has it."""
        private_folder(self.folder)  # the owner's alone: another user neither reads nor replays it
        with open(self.folder / name, "a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """The journal to this thread alone: against other threads and processes, re-entrant within the thread
        (two flocks of one file from one process would wait for each other)."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            with self._file_lock():
                self._depth = 1
                try:
                    yield
                finally:
                    self._depth = 0

    # -- writing --------------------------------------------------------------------------------

    def flush(self, timeout: float | None = 60.0) -> bool:
        """Every entry appended by this process so far is on disk (survives a power cut); False on timeout."""
        return self._syncer.flush(timeout)

    def append(self, op: str, args: dict[str, Any], files: dict[str, str | Path] | None = None) -> int:
        """Write one entry, whole or not at all (a single write of one checksummed line, fsynced in the
        background: `flush` waits for it); ``files``
        (arg name -> path, a file or a folder) are copied in first and the entry's args then name the copies.
        Returns the entry's number. Costs the same at any length of the journal: only its end is read."""
        with self._exclusive():
            fd = os.open(self._ops, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                size = os.fstat(fd).st_size
                last, whole = records.tail(fd, size)
                seq = max(last, self._progress()[0]) + 1
                args = dict(args)
                if files:
                    blob = self.folder / "blobs" / str(seq)
                    shutil.rmtree(blob, ignore_errors=True)  # left by a process killed mid-append
                    blob.mkdir(parents=True)
                    for name, source in files.items():
                        source = Path(source)
                        target = blob / source.name
                        if source.is_dir():
                            shutil.copytree(source, target)
                        else:
                            shutil.copyfile(source, target)
                        args[name] = str(target)
                # a line cut off by a killed process is ended first: it stays a line of its own, found damaged
                data = memoryview((b"" if whole else b"\n") + records.encode(seq, op, args))
                while data:
                    data = data[os.write(fd, data) :]
            finally:
                os.close(fd)
            self._syncer.written()
            return seq

    # -- replay ---------------------------------------------------------------------------------

    def replay(self, apply: Callable[[Entry, dict[str, str]], str | None], *, wait: bool = False,
               merge: Callable[[Entry, Entry], Entry | None] | None = None) -> int:
        """Apply pending entries in order until none is left or ``apply`` raises (the entry stays pending).

        ``apply(entry, ids)`` gets the placeholder map and returns the real run ID when the entry
        created a run. ``merge(a, b)``, when given, may join an entry with the one after it into one (with
        ``parts``) that ``apply`` sends in fewer store calls, or say no (None): a long outage's many small
        metric batches then cost a few large ones. Appends go on meanwhile (they queue behind); a replay
        already running in another process or thread makes this one return at once, or with ``wait`` (a
        process about to exit, whose entries another process may be sending) wait for it, then send what is
        left. Returns the number of entries applied. One pass over the file: each entry is read once, from
        where the last one ended.
        """
        applied = 0
        with self._replaying, self._file_lock("replay.lock", wait=wait) as held:
            if not held:
                return 0
            # only the holder of replay.lock writes the mark and the ID map: both are read once, here
            number, done, _ = self._mark()
            start, above = self._pending_from()
            ids = self.ids()
            mark = os.open(self._done, os.O_RDWR | os.O_CREAT, 0o666)
            reader: BinaryIO | None = None  # kept open: nobody else compacts the file while replay.lock is held
            ahead: tuple[Entry, int] | None = None  # read, not yet applied: it did not merge with the one before
            try:
                while True:
                    # whole lines are read without the lock; "nothing more" is made sure of under it, since
                    # compacting must not drop an entry appended meanwhile
                    found = ahead or (next(self._scan(reader, start, above), None) if reader else None)
                    ahead = None
                    if found is None:
                        with self._exclusive():
                            if reader is None and self._ops.exists():
                                reader = open(self._ops, "rb")  # noqa: SIM115 (closed in finally)
                            found = next(self._scan(reader, start, above), None) if reader else None
                            if found is None:
                                self._compact(mark, number, done)
                                return applied
                    entry, end = found
                    while merge is not None and reader is not None:
                        ahead = next(self._scan(reader, end, None), None)
                        joined = merge(entry, ahead[0]) if ahead else None
                        if joined is None:
                            break
                        entry, end, ahead = joined, ahead[1], None  # type: ignore[index]
                    created = apply(entry, ids)  # raises: stays pending, the caller decides when to retry
                    if created is not None and "placeholder" in entry.args:
                        ids = {**ids, entry.args["placeholder"]: created}
                        self._write_atomic(self._ids_file, json.dumps(ids))  # synced before the mark passes
                    number += 1
                    records.write_mark(mark, number, entry.seq, end)
                    for part in entry.parts or (entry,):
                        if part.folder.exists():
                            shutil.rmtree(part.folder, ignore_errors=True)
                    applied += len(entry.parts) or 1
                    start, above, done = end, None, entry.seq
            finally:
                os.close(mark)
                if reader is not None:
                    reader.close()

    def _compact(self, mark: int, number: int, done: int) -> None:
        """Everything replayed: start the log afresh (the last number and the ID map are kept). Both slots of
        the mark lose their offset, durably, before the file it names goes."""
        if self._ops.exists():
            records.write_mark(mark, number + 1, done, None)
            records.write_mark(mark, number + 2, done, None)
            os.fsync(mark)
            self._ops.unlink()
        shutil.rmtree(self.folder / "blobs", ignore_errors=True)


def substitute(value: Any, ids: dict[str, str]) -> Any:
    """``value`` with every placeholder run ID replaced by its real ID (inside strings, lists, dicts)."""
    if not ids:
        return value
    if isinstance(value, str):
        if PLACEHOLDER_PREFIX not in value:
            return value
        for placeholder, real in ids.items():
            value = value.replace(placeholder, real)
        return value
    if isinstance(value, list):
        return [substitute(v, ids) for v in value]
    if isinstance(value, dict):
        return {substitute(k, ids): substitute(v, ids) for k, v in value.items()}
    return value
