"""Resume from the tracking server alone, bit for bit: real processes killed with real signals."""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import btc_ai_cmd, cli_env, run_cli, session_runs, store_uri, tiny_flags
from mlflow import MlflowClient

from btc_ai.domain.errors import CheckpointError
from btc_ai.training.checkpoint import load_checkpoint

# ~20-40 ms per generation: slow enough to kill mid-training, fast enough for the suite
CONFIG = {"EPISODES": 40, "HIDDEN_SIZE": 48, "ES_POPULATION": 16, "MAX_STEPS_PER_EPISODE": 128, "EPISODES_PER_EVAL": 4,
          "EVAL_INTERVAL": 4, "MIN_CHECKPOINT_INTERVAL": 3, "CHECKPOINT_MIN_SECONDS": 0, "NOISE_TABLE_SIZE": 262144}
FLAGS = tiny_flags(**CONFIG)


def _client(tmp_path: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=cli_env(tmp_path)["MLFLOW_TRACKING_URI"])


def _attempts(tmp_path: Path, session_id: str) -> list:
    client = _client(tmp_path)
    runs = client.search_runs([client.get_run(session_id).info.experiment_id],
                              f"tags.`mlflow.parentRunId` = '{session_id}'")
    runs = [r for r in runs if r.data.tags["btc_ai.kind"] == "attempt"]
    return sorted(runs, key=lambda r: int(r.data.tags["btc_ai.attempt"]))


def _run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return run_cli(tmp_path, *args)  # in this process: only the trainings a test signals need their own


def _interrupt_at(tmp_path: Path, generation: int, sig: int, *extra: str) -> tuple[int, str, str]:
    """Start `btc-ai train`, send ``sig`` once it reports ``generation``; returns (exit code, stdout, stderr)."""
    proc = subprocess.Popen(btc_ai_cmd("train", *FLAGS, *extra), cwd=tmp_path, env=cli_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if line.startswith(f"gen {generation}/"):
            proc.send_signal(sig)
            break
    out, err = proc.communicate(timeout=120)
    return proc.returncode, "".join(seen) + out, err


def _final_sha(tmp_path: Path, session_id: str) -> str:
    return _client(tmp_path).get_run(session_id).data.tags["btc_ai.final_params_sha256"]


@pytest.fixture(scope="module")
def uninterrupted_sha(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("uninterrupted")
    result = _run_cli(folder, "train", *FLAGS)
    assert result.returncode == 0, result.stderr
    (session,) = session_runs(store_uri(folder))
    return _final_sha(folder, session.info.run_id)


@pytest.mark.slow
@pytest.mark.parametrize("generation", [5, 29])  # early and late; `btc-ai chaos` kills mid-training too
def test_sigkill_then_resume_by_run_id_ends_bit_identical(tmp_path, uninterrupted_sha, generation) -> None:
    code, _out, _ = _interrupt_at(tmp_path, generation, signal.SIGKILL)
    assert code == -signal.SIGKILL
    (session,) = session_runs(store_uri(tmp_path))
    session_id = session.info.run_id
    assert session.info.status == "RUNNING"  # a killed process cannot close its runs
    shutil.rmtree(tmp_path / "checkpoints")  # nothing local: the tracking server alone must do

    result = _run_cli(tmp_path, "resume", session_id)
    assert result.returncode == 0, result.stderr
    assert _final_sha(tmp_path, session_id) == uninterrupted_sha
    first, second = _attempts(tmp_path, session_id)
    assert first.info.status == "FAILED" and first.data.tags["btc_ai.outcome"] == "interrupted"
    assert "last generation seen" in first.data.tags["btc_ai.note"]
    start = int(second.data.tags["btc_ai.start_generation"])
    # lost work: the newest checkpoint's commit may still have been in flight (periodic commits run beside the
    # training, one at a time), so at most two MIN_CHECKPOINT_INTERVALs (3) before the kill
    assert generation - 2 * 3 <= start <= 40
    client = _client(tmp_path)
    steps = [m.step for run in (first, second) for m in client.get_metric_history(run.info.run_id, "fitness/mean")]
    assert sorted(steps) == list(range(1, 41))  # every generation once: no gap, nothing logged twice
    assert _client(tmp_path).get_run(session_id).info.status == "FINISHED"


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_and_sigint_write_an_emergency_checkpoint_and_end_interrupted(tmp_path, uninterrupted_sha, sig,
                                                                              code) -> None:
    exit_code, _out, err = _interrupt_at(tmp_path, 10, sig)
    assert exit_code == code, err
    assert "Traceback" not in err and "btc-ai resume" in err
    (session,) = session_runs(store_uri(tmp_path))
    assert session.info.status == "KILLED" and session.data.tags["btc_ai.status"] == "interrupted"
    (attempt,) = _attempts(tmp_path, session.info.run_id)
    assert attempt.info.status == "KILLED" and attempt.data.tags["btc_ai.outcome"] == "interrupted"
    artifacts = {a.path for a in _client(tmp_path).list_artifacts(attempt.info.run_id, "checkpoints")}
    emergency = [p for p in artifacts if "emergency" in p]
    assert len(emergency) == 1
    reached = int(attempt.data.tags["btc_ai.generation_reached"])
    assert emergency[0] == f"checkpoints/emergency-gen-{reached:06d}.pt" and reached >= 10
    # by attempt run ID this time
    result = _run_cli(tmp_path, "resume", attempt.info.run_id)
    assert result.returncode == 0, result.stderr
    assert _final_sha(tmp_path, session.info.run_id) == uninterrupted_sha
    (_, second) = _attempts(tmp_path, session.info.run_id)
    assert int(second.data.tags["btc_ai.start_generation"]) == reached  # nothing lost beyond the generation in progress


@pytest.mark.slow
def test_resume_by_model_uri_extends_a_finished_training_and_a_plain_resume_is_a_no_op(tmp_path) -> None:
    short = tiny_flags(**{**CONFIG, "EPISODES": 12})
    assert _run_cli(tmp_path, "train", *short).returncode == 0
    (session,) = session_runs(store_uri(tmp_path))
    again = _run_cli(tmp_path, "resume", session.info.run_id)
    assert again.returncode == 0 and "already completed 12 generations" in again.stdout
    assert len(_attempts(tmp_path, session.info.run_id)) == 1
    extended = _run_cli(tmp_path, "resume", "models:/btc-ai-scalping/1", "--episodes", "15")
    assert extended.returncode == 0, extended.stderr
    _first, second = _attempts(tmp_path, session.info.run_id)
    assert int(second.data.tags["btc_ai.start_generation"]) == 12
    client = _client(tmp_path)
    assert sorted(m.step for m in client.get_metric_history(second.info.run_id, "fitness/mean")) == [13, 14, 15]
    assert max(int(v.version) for v in client.search_model_versions("name = 'btc-ai-scalping'")) == 2
    missing = _run_cli(tmp_path, "resume", "models:/btc-ai-scalping/7")
    assert missing.returncode == 2 and "model version btc-ai-scalping/7 does not exist" in missing.stderr


def _crash_run(tmp_path, generation: int = 11):
    """A training that died of an unrecoverable error in ``generation`` (checkpoints every 3 before it)."""
    result = run_cli(tmp_path, "train", *FLAGS, env={**cli_env(tmp_path), "BTC_AI_FAULT": f"PermissionError@{generation}"})
    assert result.returncode == 1, result.stderr
    (session,) = session_runs(store_uri(tmp_path))
    return session.info.run_id


@pytest.mark.slow
def test_corrupted_newest_checkpoints_are_skipped_for_the_previous_good_one(tmp_path, uninterrupted_sha) -> None:
    session_id = _crash_run(tmp_path)
    (attempt,) = _attempts(tmp_path, session_id)
    root = Path(_client(tmp_path).get_run(attempt.info.run_id).info.artifact_uri.removeprefix("file://"))
    (root / "checkpoints" / "emergency-gen-000010.pt").write_bytes(b"PK\x03\x04 cut short")  # truncated
    data = bytearray((root / "checkpoints" / "gen-000009.pt").read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit
    (root / "checkpoints" / "gen-000009.pt").write_bytes(bytes(data))
    result = _run_cli(tmp_path, "resume", session_id)
    assert result.returncode == 0, result.stderr
    _, second = _attempts(tmp_path, session_id)
    assert second.data.tags["btc_ai.resumed_from"].startswith("checkpoints/gen-000006.pt")
    skipped = second.data.tags["btc_ai.skipped_checkpoints"]
    assert "emergency-gen-000010.pt" in skipped and "gen-000009.pt" in skipped and "sha256" in skipped
    assert _final_sha(tmp_path, session_id) == uninterrupted_sha


@pytest.mark.slow
def test_concurrent_resume_is_refused_and_other_data_needs_permission(tmp_path, candles) -> None:
    session_id = _crash_run(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        import socket

        _client(tmp_path).set_tag(session_id, "btc_ai.lease.owner", f"{socket.gethostname()}:{holder.pid}")
        busy = _run_cli(tmp_path, "resume", session_id)
        assert busy.returncode == 2 and "being trained right now" in busy.stderr
    finally:
        holder.kill()
        holder.wait()
    from conftest import write_binance_csv

    other = write_binance_csv(tmp_path / "other.csv", candles)
    refused = _run_cli(tmp_path, "resume", session_id, "--data_path", str(other))
    assert refused.returncode == 2 and "fingerprint mismatch" in refused.stderr and "--allow-data-change" in refused.stderr
    allowed = _run_cli(tmp_path, "resume", session_id, "--data_path", str(other), "--allow-data-change")
    assert allowed.returncode == 0, allowed.stderr


@pytest.mark.slow
def test_retention_keeps_the_newest_periodic_checkpoints_and_every_emergency_one(tmp_path) -> None:
    session_id = _crash_run(tmp_path, generation=17)  # periodic checkpoints at 3, 6, 9, 12, 15
    (attempt,) = _attempts(tmp_path, session_id)
    names = {a.path for a in _client(tmp_path).list_artifacts(attempt.info.run_id, "checkpoints")}
    assert names == {"checkpoints/gen-000009.pt", "checkpoints/gen-000012.pt", "checkpoints/gen-000015.pt",
                     "checkpoints/emergency-gen-000016.pt"}
    local = {p.name for p in (tmp_path / "checkpoints" / session_id).iterdir()}
    assert local == {"gen-000009.pt", "gen-000012.pt", "gen-000015.pt", "emergency-gen-000016.pt"}


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_crafted_malicious_checkpoint_is_refused_without_running_it(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "payload": _Evil()}, path)
    with pytest.raises(CheckpointError, match="cannot be read safely"):
        load_checkpoint(path)
    raw = tmp_path / "evil.pkl"
    raw.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(CheckpointError):
        load_checkpoint(raw)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.slow
def test_report_shows_and_marks_a_dead_attempt_then_the_resume(tmp_path) -> None:
    code, _, _ = _interrupt_at(tmp_path, 8, signal.SIGKILL)
    assert code == -signal.SIGKILL
    (session,) = session_runs(store_uri(tmp_path))
    result = _run_cli(tmp_path, "report", session.info.run_id, "--json")
    assert result.returncode == 0, result.stderr
    import json

    summary = json.loads(result.stdout)
    (attempt,) = summary["attempts"]
    assert attempt["status"] == "FAILED" and attempt["outcome"] == "interrupted"
    assert "last generation seen" in attempt["note"] and summary["stale_marked"]
    assert summary["resume"] == f"btc-ai resume {session.info.run_id}"
    assert any(c["verified"] for c in summary["checkpoints"])
    text = _run_cli(tmp_path, "report", attempt["run_id"])  # an attempt ID finds its session too
    assert text.returncode == 0 and f"to continue: btc-ai resume {session.info.run_id}" in text.stdout
    assert "interrupted" in text.stdout
    missing = _run_cli(tmp_path, "report", "0" * 32)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
