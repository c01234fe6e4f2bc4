"""A local store is one self-contained file after every command: `mlflow.db` copied alone (scp, a USB stick,
`mlflow ui --backend-store-uri sqlite:///copy.db`) holds every run, whatever ended the command."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from conftest import btc_ai_cmd, cli_env, tiny_flags, write_binance_csv


def _run_ids(database: Path) -> set[str]:
    db = sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return {row[0] for row in db.execute("SELECT run_uuid FROM runs")}
    finally:
        db.close()


@pytest.mark.slow
def test_mlflow_db_copied_alone_after_each_command_holds_every_run(tmp_path, candles) -> None:
    data = write_binance_csv(tmp_path / "c.csv", candles)
    store = tmp_path / "mlruns" / "mlflow.db"
    commands = [
        (0, "train", "--data_path", str(data), *tiny_flags()),
        (0, "resume", "models:/btc-ai-scalping/1", "--episodes", "8"),
        (0, "walk-forward", str(data), "--folds", "2", "--seeds", "5", "--quiet", *tiny_flags()),
        (0, "backtest", "models:/btc-ai-scalping/latest", str(data)),
        (2, "resume", "0123456789abcdef0123456789abcdef"),  # refused: no such run
        (2, "backtest", "models:/btc-ai-scalping/99", str(data)),
    ]
    seen = 0
    for number, (expected, *args) in enumerate(commands):
        result = subprocess.run(btc_ai_cmd(*args), cwd=tmp_path, env=cli_env(tmp_path), capture_output=True,
                                text=True, timeout=600)
        assert result.returncode == expected, (args, result.stderr)
        wal = Path(f"{store}-wal")
        assert not wal.exists() or wal.stat().st_size == 0, (args, wal.stat().st_size)  # nothing committed left there
        copy = tmp_path / f"copy{number}" / "mlflow.db"
        copy.parent.mkdir()
        shutil.copyfile(store, copy)  # alone
        runs = _run_ids(store)
        assert _run_ids(copy) == runs, args
        assert len(runs) >= seen  # and each command's runs are there
        seen = len(runs)
    assert seen >= 2 + 1 + 1 + 2 + 1  # train (session, attempt), resume's attempt, walk-forward's parent and folds...
