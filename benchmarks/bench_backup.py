"""Backup and restore of a local store holding 20 sessions (tiny trainings, models, checkpoints)."""

from __future__ import annotations

import hashlib
import itertools
import sqlite3
import tempfile
import time
from pathlib import Path

from benchmarks.common import Record, guarded, median_seconds
from btc_ai.desk.backup import create_backup, restore_backup, verify_backup
from btc_ai.domain.synthetic import default_candles
from btc_ai.recovery import TrainingRecoverySystem
from btc_ai.tracking.tracker import Tracker
from btc_ai.training.faults import inject_fault
from btc_ai.training.loop import train_model

SESSIONS = 20
CRASHED_EVERY = 4  # every 4th session dies of an unrecoverable error (emergency checkpoint, no model)
_COUNTER = itertools.count()  # archive and folder names stay unique when guarded() measures again
CONFIG = {"EPISODES": 12, "HIDDEN_SIZE": 16, "ES_POPULATION": 8, "MAX_STEPS_PER_EPISODE": 64, "EPISODES_PER_EVAL": 2,
          "EVAL_INTERVAL": 4, "MIN_CHECKPOINT_INTERVAL": 2, "CHECKPOINT_MIN_SECONDS": 0.0, "NOISE_TABLE_SIZE": 1 << 16}


def run() -> list[Record]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "project"
        build = _build_store(root)
        return guarded(lambda: measure(root, Path(tmp), build))


def _build_store(root: Path) -> float:
    """``root/mlruns`` with SESSIONS sessions and ``root/checkpoints``, as `btc-ai train` leaves them."""
    tick = time.perf_counter()
    (root / "configs").mkdir(parents=True)
    (root / "configs" / "tiny.json").write_text(str(CONFIG).replace("'", '"'))
    tracker = Tracker(f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")
    data = default_candles()
    for k in range(SESSIONS):
        crash = k % CRASHED_EVERY == CRASHED_EVERY - 1
        func = inject_fault(train_model, "PermissionError@9") if crash else train_model
        system = TrainingRecoverySystem(checkpoint_dir=root / "checkpoints", tracker=tracker, max_retries=0)
        _, metrics, _, _ = system.start_training_with_recovery(func, {**CONFIG, "SEED": k}, data)
        assert ("error" in metrics) == crash, metrics
    return time.perf_counter() - tick


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def measure(root: Path, tmp: Path, build_s: float) -> list[Record]:
    dest = tmp / "backups"

    def backup() -> None:
        create_backup(f"1.{next(_COUNTER)}", "bench", dest=dest, root=root)

    backup_s = median_seconds(backup, repeats=3)
    result = create_backup(f"2.{next(_COUNTER)}", "bench", dest=dest, root=root)
    verify_s = median_seconds(lambda: verify_backup(result.path), repeats=3)
    restore_s = median_seconds(lambda: restore_backup(result.path, tmp / f"restored-{next(_COUNTER)}"), repeats=3)
    restored = tmp / f"restored-{next(_COUNTER)}"
    restore_backup(result.path, restored)
    # byte for byte: every archived file but the database (its artifact locations were rewritten)
    originals = [p for p in root.rglob("*") if p.is_file() and not p.name.startswith("mlflow.db")
                 and "backups" not in p.parts]
    differ = sum(1 for p in originals if _sha(p) != _sha(restored / p.relative_to(root)))
    with sqlite3.connect(restored / "mlruns" / "mlflow.db") as db:
        sessions = db.execute("SELECT count(*) FROM tags WHERE key = 'btc_ai.kind' AND value = 'session'").fetchone()[0]
        runs = db.execute("SELECT count(*) FROM runs").fetchone()[0]
        metrics = db.execute("SELECT count(*) FROM metrics").fetchone()[0]
    assert sessions == len(result.sessions) == SESSIONS, (sessions, len(result.sessions))
    size_mib = result.archive_bytes / (1 << 20)
    payload_mib = result.payload_bytes / (1 << 20)
    store = (f"{SESSIONS} sessions ({SESSIONS // CRASHED_EVERY} crashed), {runs} runs, {metrics:,} metric rows, "
             f"{result.files} files, {payload_mib:.1f} MiB; built in {build_s:.0f} s")
    return [
        Record("backup_seconds_20_sessions", backup_s, "s",
               f"create_backup: SQLite online backup + sha256 + zip of the store, checkpoints and configs; {store}; "
               "median of 3"),
        Record("backup_verify_seconds_20_sessions", verify_s, "s", "verify_backup: every entry name and sha256"),
        Record("backup_restore_seconds_20_sessions", restore_s, "s",
               "restore_backup: verify, extract (hashed again), relocate artifact locations, rename into place"),
        Record("backup_archive_mib_20_sessions", size_mib, "MiB", f"archive size (payload {payload_mib:.1f} MiB)"),
        Record("backup_files_20_sessions", float(result.files), "files", "entries besides manifest.json"),
        Record("backup_restore_mismatched_files", float(differ), "files",
               f"restored files whose sha256 differs from the original ({len(originals)} compared)"),
    ]
