"""The errors of checkpoint commits sent beside the training are the attempt's: a real `btc-ai train` whose
last checkpoint commit the store refuses (`BTC_AI_COMMIT_FAULT`: the error raised on the writer thread in
place of the upload, as a 403 or a read-only artifact folder would) ends its attempt FAILED with its error
report and registers the policy it trained; a real SIGINT while a failed periodic commit is in flight still
stores the emergency checkpoint."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import btc_ai_cmd, cli_env, session_runs, store_uri, tiny_flags, wait_for_line
from mlflow import MlflowClient

# commits after generations 2, 4 and 6: the third is the last
CONFIG = {"EPISODES": 6, "MIN_CHECKPOINT_INTERVAL": 2, "CHECKPOINT_MIN_SECONDS": 0, "STALL_MIN_SECONDS": 3600}


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {**cli_env(tmp_path), "OMP_NUM_THREADS": "1", **extra}


def _only_attempt(client: MlflowClient, session_id: str):
    runs = client.search_runs([client.get_run(session_id).info.experiment_id],
                              f"tags.`mlflow.parentRunId` = '{session_id}' and tags.`btc_ai.kind` = 'attempt'")
    (attempt,) = runs
    return attempt


def _steps(client: MlflowClient, run_id: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, "fitness/mean"))


@pytest.mark.slow
def test_a_refused_last_commit_fails_the_attempt_with_its_report_and_the_policy_is_registered(tmp_path) -> None:
    result = subprocess.run(btc_ai_cmd("train", *tiny_flags(**CONFIG), "--quiet"), cwd=tmp_path,
                            env=_env(tmp_path, BTC_AI_COMMIT_FAULT="PermissionError@upload@3"),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    client = MlflowClient(tracking_uri=store_uri(tmp_path))
    (session,) = session_runs(store_uri(tmp_path))
    session_id = session.info.run_id
    assert session.info.status == "FAILED" and session.data.tags["btc_ai.status"] == "failed"
    assert "registered all the same" in session.data.tags["mlflow.note.content"]
    attempt = _only_attempt(client, session_id)
    assert attempt.info.status == "FAILED"  # not left RUNNING
    assert attempt.data.tags["btc_ai.outcome"] == "unrecoverable_error"
    assert attempt.data.tags["btc_ai.error_type"] == "PermissionError"
    assert attempt.data.tags["btc_ai.generation_reached"] == "6"
    report = json.loads(Path(client.download_artifacts(attempt.info.run_id, "error_report.json", str(tmp_path)))
                        .read_text())
    assert "checkpoint commit 3" in json.dumps(report)
    assert _steps(client, attempt.info.run_id) == [1, 2, 3, 4, 5, 6]  # the refused commit's metrics flushed
    assert attempt.data.tags["btc_ai.last_checkpoint"] == "4"  # the newest commit that completed
    (version,) = client.search_model_versions("name = 'btc-ai-scalping'")
    assert version.run_id == session_id
    assert "injected PermissionError in upload of checkpoint commit 3" in result.stderr
    assert "registered all the same: version 1" in result.stderr


@pytest.mark.slow
def test_ctrl_c_while_a_failed_periodic_commit_is_in_flight_still_stores_the_emergency_checkpoint(tmp_path) -> None:
    # the first commit (after generation 2) is refused; generation 4 hangs until the SIGINT comes
    env = _env(tmp_path, BTC_AI_COMMIT_FAULT="PermissionError@upload@1", BTC_AI_FAULT="Stall@4")
    proc = subprocess.Popen(btc_ai_cmd("train", *tiny_flags(**CONFIG)), cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    try:
        wait_for_line(proc, lines, "gen 3/")
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    client = MlflowClient(tracking_uri=store_uri(tmp_path))
    (session,) = session_runs(store_uri(tmp_path))
    attempt = _only_attempt(client, session.info.run_id)
    assert attempt.info.status == "KILLED" and attempt.data.tags["btc_ai.outcome"] == "interrupted"
    stored = {a.path for a in client.list_artifacts(attempt.info.run_id, "checkpoints")}
    assert "checkpoints/emergency-gen-000003.pt" in stored, (stored, err)
    assert attempt.data.tags["btc_ai.last_checkpoint"] == "3"
    assert _steps(client, attempt.info.run_id) == [1, 2, 3]  # the refused commit's generations went with it
