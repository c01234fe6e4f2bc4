"""Several trainings at once on one local SQLite store (a user's two terminals): every session complete
and exact, no "database is locked" reaching the user."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from conftest import btc_ai_cmd, cli_env, store_uri, tiny_flags
from team import session_exactness

pytestmark = pytest.mark.slow


def test_three_trainings_at_once_on_one_sqlite_store_are_complete_and_exact(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    procs = [subprocess.Popen(btc_ai_cmd("train", "--quiet", *tiny_flags(EPISODES=10, SEED=seed)), cwd=tmp_path,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for seed in (1, 2, 3)]
    results = [proc.communicate(timeout=300) for proc in procs]
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0 and "Traceback" not in err and "locked" not in err, err
    from mlflow import MlflowClient

    client = MlflowClient(store_uri(tmp_path))
    sessions = {re.search(r"\bsession ([0-9a-f]{32})", out)[1] for out, _ in results}
    assert len(sessions) == 3
    for session in sessions:
        found = session_exactness(client, session, 10)
        assert found.exact and found.status == "completed" and found.attempts == 1, found
    assert not (tmp_path / "mlruns" / "journal").exists() or not any((tmp_path / "mlruns" / "journal").rglob("ops.jsonl"))
