"""A durable, ordered journal of tracking writes that could not reach the tracking server.

Each entry is one JSON line ``{"seq": n, "op": name, "args": {...}}`` appended (and fsynced) to
``ops.jsonl``; files an entry refers to are copied under ``blobs/<seq>/`` when it is written, so
later changes to the originals (checkpoint retention, temporary folders) cannot lose them. Entries are
replayed strictly in order; ``replayed`` holds the number of the last entry applied, written
atomically after each one, so a process that dies mid-replay repeats at most the entry it was
applying (the tracking layer makes every operation idempotent). Runs created while the server was
unreachable get placeholder IDs; ``ids.json`` maps them to the real IDs once their creation is
replayed, and later entries are rewritten through that map.

No mlflow here: the journal knows entries, not what they mean. A file lock keeps two processes (a
training and a ``btc-ai sync``) from replaying the same journal at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from btc_ai.tracking.paths import journal_dir, private_folder

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


class Journal:
    """Append-only entries, replayed once each, in order."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._ops = self.folder / "ops.jsonl"
        self._done = self.folder / "replayed"
        self._ids_file = self.folder / "ids.json"
        self._lock = threading.RLock()  # appends and bookkeeping, within this process
        self._replaying = threading.Lock()  # one replay at a time within this process

    # -- state on disk --------------------------------------------------------------------------

    def _read_done(self) -> int:
        try:
            return int(self._done.read_text().strip() or 0)
        except FileNotFoundError:
            return 0

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

    def entries(self) -> list[Entry]:
        """Every entry ever written (a half-written last line, from a process killed mid-append, is ignored)."""
        if not self._ops.exists():
            return []
        out = []
        with open(self._ops, encoding="utf-8") as fh:
            for line in fh:
                if not line.endswith("\n"):
                    break
                raw = json.loads(line)
                out.append(Entry(raw["seq"], raw["op"], raw["args"], self.folder / "blobs" / str(raw["seq"])))
        return out

    def pending(self) -> list[Entry]:
        done = self._read_done()
        return [e for e in self.entries() if e.seq > done]

    def pending_count(self) -> int:
        return len(self.pending()) if self._ops.exists() else 0

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

    # -- writing --------------------------------------------------------------------------------

    def append(self, op: str, args: dict[str, Any], files: dict[str, str | Path] | None = None) -> int:
        """Write one entry durably; ``files`` (arg name -> path, a file or a folder) are copied in first
        and the entry's args then name the copies. Returns the entry's number."""
        with self._lock, self._file_lock():
            entries = self.entries()
            seq = (entries[-1].seq if entries else self._read_done()) + 1
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
            line = json.dumps({"seq": seq, "op": op, "args": args}, separators=(",", ":")) + "\n"
            with open(self._ops, "a", encoding="utf-8") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
            return seq

    # -- replay ---------------------------------------------------------------------------------

    def replay(self, apply: Callable[[Entry, dict[str, str]], str | None], *, wait: bool = False) -> int:
        """Apply pending entries in order until none is left or ``apply`` raises (the entry stays pending).

        ``apply(entry, ids)`` gets the placeholder map and returns the real run ID when the entry
        created a run. Appends go on meanwhile (they queue behind); a replay already running in another
        process or thread makes this one return at once, or with ``wait`` (a process about to exit, whose
        entries another process may be sending) wait for it, then send what is left. Returns the number of
        entries applied.
        """
        applied = 0
        with self._replaying, self._file_lock("replay.lock", wait=wait) as held:
            if not held:
                return 0
            while True:
                with self._lock, self._file_lock():
                    pending = self.pending()
                    if not pending:
                        self._compact()
                        return applied
                    entry, ids = pending[0], self.ids()
                created = apply(entry, ids)  # raises: stays pending, the caller decides when to retry
                with self._lock, self._file_lock():
                    if created is not None and "placeholder" in entry.args:
                        ids = {**self.ids(), entry.args["placeholder"]: created}
                        self._write_atomic(self._ids_file, json.dumps(ids))
                    self._write_atomic(self._done, str(entry.seq))
                shutil.rmtree(entry.folder, ignore_errors=True)
                applied += 1

    def _compact(self) -> None:
        """Everything replayed: start the log afresh (the last number and the ID map are kept)."""
        if self._ops.exists() and self._ops.stat().st_size > 0:
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
