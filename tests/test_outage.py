"""Tracking-server outages: a real `mlflow server` on 127.0.0.1, killed and restarted around a real training.

Nothing may be lost or doubled: every generation's metrics exactly once, every checkpoint with its
sha256 tag, every run closed with its true status, the model registered; writes made while the server
was down are journaled on disk and replayed in order, during the training or by the next command.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from conftest import btc_ai_cmd, cli_env, run_cli, tiny_flags, wait_for_line
from mlflow import MlflowClient

from btc_ai.tracking.journal import Journal, journal_dir
from btc_ai.tracking.server import LocalMlflowServer

pytestmark = pytest.mark.slow

FLAGS = tiny_flags(HIDDEN_SIZE=16, EPISODES=None)  # each test gives its --episodes


@pytest.fixture
def server(tmp_path: Path):
    srv = LocalMlflowServer(tmp_path / "server")
    srv.start()
    yield srv
    srv.stop()


def _env(tmp_path: Path, url: str) -> dict[str, str]:
    env = cli_env(tmp_path)
    env["MLFLOW_TRACKING_URI"] = url
    env["BTC_AI_FAULT"] = "Slow@1"  # 0.1 s more per generation: time to act between generations
    return env


def _check_store(url: str, generations: int, checkpoint_dir: Path) -> str:
    """The server holds one completed session: metrics of every generation once, the checkpoints the
    training kept (sha256 matching the tag), closed runs, a registered model. Returns the session ID."""
    client = MlflowClient(url)
    experiment = client.get_experiment_by_name("btc-ai")
    runs = client.search_runs([experiment.experiment_id])
    sessions = [r for r in runs if r.data.tags["btc_ai.kind"] == "session"]
    assert len(sessions) == 1
    session = sessions[0]
    assert session.info.status == "FINISHED" and session.data.tags["btc_ai.status"] == "completed"
    assert all(r.info.status != "RUNNING" for r in runs)
    attempts = [r for r in runs if r.data.tags["btc_ai.kind"] == "attempt"]
    assert len(attempts) == 1
    attempt = attempts[0].info.run_id
    for key in ("fitness/mean", "fitness/max", "perf/seconds_per_generation"):
        steps = [m.step for m in client.get_metric_history(attempt, key)]
        assert sorted(steps) == list(range(1, generations + 1)), key  # none lost, none doubled
    tags = client.get_run(attempt).data.tags
    stored = {a.path.split("/")[-1] for a in client.list_artifacts(attempt, "checkpoints")}
    local = {p.name for p in checkpoint_dir.rglob("*.pt")}
    assert stored == local and f"gen-{generations:06d}.pt" in stored
    with tempfile.TemporaryDirectory() as tmp:
        for name in stored:
            data = Path(client.download_artifacts(attempt, f"checkpoints/{name}", tmp)).read_bytes()
            assert hashlib.sha256(data).hexdigest() == tags[f"btc_ai.checkpoint.{Path(name).stem}"]
    names = {a.path for a in client.list_artifacts(session.info.run_id)}
    assert "performance_history.csv" in names
    version = max(client.search_model_versions("name = 'btc-ai-scalping'"), key=lambda v: int(v.version))
    assert version.run_id == session.info.run_id
    (model,) = client.search_logged_models([session.info.experiment_id])  # logged once, READY, with its figures
    assert version.source == f"models:/{model.model_id}" and model.status == "READY" and model.metrics
    assert client.get_run(session.info.run_id).data.tags["btc_ai.model_version"] == version.version
    assert len(client.search_model_versions("name = 'btc-ai-scalping'")) == 1  # registered once
    return session.info.run_id


def test_server_lost_and_back_mid_training_loses_and_doubles_nothing(tmp_path: Path, server) -> None:
    episodes = 40
    with open(tmp_path / "stderr.txt", "w") as stderr_file:
        proc = subprocess.Popen(btc_ai_cmd("train", "--episodes", str(episodes), *FLAGS), cwd=tmp_path,
                                env=_env(tmp_path, server.url), stdout=subprocess.PIPE, stderr=stderr_file, text=True)
    lines: list[str] = []
    try:
        wait_for_line(proc, lines, "gen 6/")
        server.stop()  # a crash: training must go on, writing to the journal
        wait_for_line(proc, lines, "gen 14/")
        proc.send_signal(signal.SIGSTOP)  # hold the training while the server restarts (seconds here)
        server.start()
        proc.send_signal(signal.SIGCONT)
        rest, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    lines.append(rest)
    stderr = (tmp_path / "stderr.txt").read_text()
    assert proc.returncode == 0, "".join(lines) + stderr
    assert re.search(r"unreachable \([^)]{1,60}\); writes go to the journal", stderr), stderr  # a short reason
    assert "reachable again" in stderr  # replayed during the same training
    assert "wait in the journal" not in "".join(lines)
    _check_store(server.url, episodes, tmp_path / "checkpoints")
    assert Journal(journal_dir(server.url, tmp_path / "mlruns" / "journal")).pending_count() == 0


@pytest.mark.parametrize("failure", ["killed", "hung"])
def test_writes_of_a_training_that_ended_offline_are_sent_by_the_next_command(tmp_path: Path, server,
                                                                              failure: str) -> None:
    """The server is killed (connections refused) or hung (SIGSTOP: connections accepted, never answered)
    mid-training; the training still ends normally, and the next command sends what it journaled."""
    episodes = 16
    env = _env(tmp_path, server.url)
    proc = subprocess.Popen(btc_ai_cmd("train", "--episodes", str(episodes), *FLAGS), cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    wait_for_line(proc, lines, "gen 4/")
    server.stop() if failure == "killed" else server.pause()
    seen = [time.monotonic()]
    assert proc.stdout is not None
    for line in proc.stdout:  # when each later generation is reported
        lines.append(line)
        if line.startswith("gen "):
            seen.append(time.monotonic())
    out, err = "".join(lines), proc.stderr.read() if proc.stderr else ""
    proc.wait(timeout=60)
    assert proc.returncode == 0, out + err  # the training finished although the server is gone
    assert "wait in the journal" in out and "btc-ai sync" in out
    # generations of ~0.1 s: a dead server costs a write milliseconds; a hung one costs one timeout (5 s),
    # once, before the training stops asking it
    gaps = sorted(b - a for a, b in itertools.pairwise(seen))
    assert len(gaps) == episodes - 4
    assert gaps[-2] < 1.5 and gaps[-1] < (1.5 if failure == "killed" else 10.0), gaps
    journal = Journal(journal_dir(server.url, tmp_path / "mlruns" / "journal"))
    waiting = journal.pending_count()
    assert waiting > 0

    sync = run_cli(tmp_path, "sync", env=env)  # the commands after the training: in this process
    assert sync.returncode == 1 and "cannot reach the tracking server" in sync.stderr
    assert len(sync.stderr.strip().splitlines()) == 1 and journal.pending_count() == waiting  # nothing lost

    server.start() if failure == "killed" else server.unpause()
    session = MlflowClient(server.url).search_runs(
        [MlflowClient(server.url).get_experiment_by_name("btc-ai").experiment_id],
        "tags.`btc_ai.kind` = 'session'")[0].info.run_id
    report = run_cli(tmp_path, "report", session, env=env)
    assert report.returncode == 0, report.stderr  # opening the store sent the journal first
    assert journal.pending_count() == 0
    assert _check_store(server.url, episodes, tmp_path / "checkpoints") == session
    again = run_cli(tmp_path, "sync", env=env)
    assert again.returncode == 0 and "nothing to send" in again.stdout


def test_deletes_made_while_the_server_is_down_are_journaled_not_dropped(tmp_path: Path, server, monkeypatch) -> None:
    """Checkpoint retention deletes an old checkpoint's file and marker; with the server down those deletes
    must wait in the journal like any write (they were once swallowed as "already gone", leaving a marker of a
    file that no longer exists, which a resume would then try to use)."""
    from btc_ai.tracking.tracker import Tracker

    monkeypatch.setenv("BTC_AI_JOURNAL_DIR", str(tmp_path / "journal"))
    tracker = Tracker(server.url, experiment="deletes")
    run_id = tracker.create_run("attempt")
    (tmp_path / "gen-000001.pt").write_bytes(b"checkpoint")
    tracker.log_artifact(run_id, tmp_path / "gen-000001.pt", "checkpoints")
    tracker.set_tags(run_id, {"btc_ai.checkpoint.gen-000001": "sha", "other": "kept"})
    server.stop()
    tracker.delete_artifact(run_id, "checkpoints/gen-000001.pt")
    tracker.delete_tags(run_id, ["btc_ai.checkpoint.gen-000001"])
    assert tracker.offline and tracker.pending() == 2
    server.start()
    tracker.replay(wait=True)  # the tracker's own replayer may be sending them already
    assert tracker.pending() == 0 and not tracker.offline
    tracker.close()
    client = MlflowClient(server.url)
    assert "btc_ai.checkpoint.gen-000001" not in client.get_run(run_id).data.tags
    assert client.get_run(run_id).data.tags["other"] == "kept"
    assert client.list_artifacts(run_id, "checkpoints") == []
    # a delete replayed twice (a process killed after the store applied it) changes nothing
    tracker.delete_tags(run_id, ["btc_ai.checkpoint.gen-000001"])
    tracker.delete_artifact(run_id, "checkpoints/gen-000001.pt")
    assert not tracker.offline and tracker.pending() == 0
