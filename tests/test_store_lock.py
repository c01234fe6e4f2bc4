"""The lock a new tracking store is built under, on file systems whose locks differ from a local disk's.
No NFS exists on the test machines: these tests replace ``fcntl.flock`` with NFS's rules (the only
stand-in in this suite), everything else is real: SQLite stores under tmp_path, `btc-ai` through main()."""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import session_runs, store_uri, tiny_flags

Run = Callable[..., tuple[int, str, str]]
_real_flock = fcntl.flock


def _nfs_flock(fd, operation: int) -> None:
    """Linux's NFS client turns flock into a POSIX byte-range lock, which needs a descriptor opened for
    writing for an exclusive lock: on a read-only one (a directory's) it fails with EBADF."""
    descriptor = fd if isinstance(fd, int) else fd.fileno()
    if operation & fcntl.LOCK_EX and fcntl.fcntl(descriptor, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY:
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))
    _real_flock(fd, operation)


def _no_locks(fd, operation: int) -> None:
    """An NFS mount without its lock service (``nolock`` absent, lockd down): every lock is refused."""
    raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))


def test_a_new_store_is_built_where_flock_needs_a_writable_descriptor(here: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from btc_ai.tracking.run_model import KIND_SESSION
    from btc_ai.tracking.tracker import Tracker

    monkeypatch.setattr(fcntl, "flock", _nfs_flock)
    tracker = Tracker(store_uri(here))
    run_id = tracker.create_run(KIND_SESSION, name="a session")
    tracker.end_run(run_id, "KILLED")
    assert [r.info.run_id for r in session_runs(store_uri(here))] == [run_id]


def test_a_file_system_without_locks_is_one_line_and_no_store(run_main: Run, here: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fcntl, "flock", _no_locks)
    code, _, err = run_main("train", *tiny_flags())
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("btc-ai: error: "), (code, err)
    assert "cannot lock" in lines[0] and "mlflow.db.lock" in lines[0] and "--tracking-uri" in lines[0], lines[0]
    assert not (here / "mlruns" / "mlflow.db").exists()
