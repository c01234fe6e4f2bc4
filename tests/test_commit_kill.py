"""A checkpoint commit is atomic as seen from the store: a real `btc-ai train` SIGKILLed after each step of a
commit (the upload, each metric chunk, the marker, the retention; `BTC_AI_KILL_AT`), then resumed by run ID
from the store alone, ends bit-identical to an uninterrupted training, resumes from the newest checkpoint
whose commit completed, and holds the metrics of every generation exactly once across its attempts."""

from __future__ import annotations

import csv
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import btc_ai_cmd, cli_env, run_cli, session_runs, store_uri, tiny_flags
from mlflow import MlflowClient

# A validation every generation: 21 metrics a generation, so a commit every 50 generations sends 1,050
# metrics, in two chunks of whole generations (47 + 3 generations) within MLflow's 1,000 a call.
CONFIG = {"EPISODES": 200, "ES_POPULATION": 8, "HIDDEN_SIZE": 8, "MAX_STEPS_PER_EPISODE": 32, "EPISODES_PER_EVAL": 1,
          "EVAL_INTERVAL": 1, "MIN_CHECKPOINT_INTERVAL": 50, "CHECKPOINT_MIN_SECONDS": 0, "EARLY_STOP_PATIENCE": 0,
          "NOISE_TABLE_SIZE": 1 << 16}
FLAGS = [*tiny_flags(**CONFIG), "--quiet"]
# generations logged once per call of the trainer (its hyperparameters), not once per training
PER_CALL = {"es/sigma", "es/learning_rate"}
DETERMINISTIC = ("fitness/mean", "fitness/max", "validation/score", "es/grad_norm")


def _client(store: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=store_uri(store))


def _env(store: Path, kill_at: str | None = None) -> dict[str, str]:
    env = {**cli_env(store), "OMP_NUM_THREADS": "1"}  # tiny matrices: one thread is far faster on 2 shared cores
    if kill_at:
        env["BTC_AI_KILL_AT"] = kill_at
    return env


def _run(store: Path, folder: Path, *args: str, kill_at: str | None = None) -> subprocess.CompletedProcess:
    """`btc-ai ARGS` in ``folder`` (its checkpoints/) on the store of ``store``, killed at ``kill_at`` (a process
    of its own); without a kill point in this process."""
    if kill_at is None:
        return run_cli(folder, *args, env=_env(store))
    return subprocess.run(btc_ai_cmd(*args), cwd=folder, env=_env(store, kill_at), capture_output=True, text=True,
                          timeout=300)


def _attempts(client: MlflowClient, session_id: str) -> list:
    runs = client.search_runs([client.get_run(session_id).info.experiment_id],
                              f"tags.`mlflow.parentRunId` = '{session_id}'")
    return sorted((r for r in runs if r.data.tags["btc_ai.kind"] == "attempt"),
                  key=lambda r: int(r.data.tags["btc_ai.attempt"]))


def _record(client: MlflowClient, session_id: str) -> dict[str, list[tuple[int, float, int]]]:
    """Every metric of the session's attempts: key -> [(step, value, attempt number)], in step order."""
    out: dict[str, list[tuple[int, float, int]]] = {}
    for attempt in _attempts(client, session_id):
        number = int(attempt.data.tags["btc_ai.attempt"])
        for key in attempt.data.metrics:
            out.setdefault(key, []).extend((m.step, m.value, number)
                                           for m in client.get_metric_history(attempt.info.run_id, key))
    return {key: sorted(rows) for key, rows in out.items()}


def _history_generations(client: MlflowClient, session_id: str, folder: Path) -> list[int]:
    path = client.download_artifacts(session_id, "performance_history.csv", str(folder))
    with open(path, newline="", encoding="utf-8") as fh:
        return [int(float(row["generation"])) for row in csv.DictReader(fh)]


def _checkpoints(client: MlflowClient, attempt_id: str) -> tuple[set[str], set[str]]:
    """The attempt's checkpoint files on the store and the stems its markers name."""
    run = client.get_run(attempt_id)
    stored = {Path(a.path).stem for a in client.list_artifacts(attempt_id, "checkpoints")}
    return stored, {k.removeprefix("btc_ai.checkpoint.") for k in run.data.tags if k.startswith("btc_ai.checkpoint.")}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """One store for the module (a new store costs seconds): each training is its own experiment."""
    return tmp_path_factory.mktemp("store")


@pytest.fixture(scope="module")
def uninterrupted(store) -> tuple[str, dict]:
    result = _run(store, store, "train", *FLAGS, "--experiment", "uninterrupted")
    assert result.returncode == 0, result.stderr
    (session,) = session_runs(store_uri(store), "uninterrupted")
    client = _client(store)
    return client.get_run(session.info.run_id).data.tags["btc_ai.final_params_sha256"], \
        _record(client, session.info.run_id)


def _assert_once_and_identical(client: MlflowClient, session_id: str, uninterrupted: tuple[str, dict],
                               folder: Path) -> None:
    final_sha, reference = uninterrupted
    assert client.get_run(session_id).data.tags["btc_ai.final_params_sha256"] == final_sha
    record = _record(client, session_id)
    assert set(record) == set(reference)
    for key, rows in record.items():
        steps = [step for step, _, _ in rows]
        assert len(steps) == len(set(steps)), f"{key}: a generation logged twice"
        if key not in PER_CALL:
            assert steps == [step for step, _, _ in reference[key]], f"{key}: generations missing"
    for key in DETERMINISTIC:  # the generations kept from a killed attempt are those the resume trained
        assert [(s, v) for s, v, _ in record[key]] == [(s, v) for s, v, _ in reference[key]], key
    assert _history_generations(client, session_id, folder) == list(range(1, CONFIG["EPISODES"] + 1))


# Checkpoints at 50, 100, 150, 200; a commit's metrics in chunks of 47 generations. Each step: the kill point
# of one process (the commit numbers count that process's commits) and the generation its attempt starts
# from (the newest checkpoint whose marker is stored).
CHAIN = [
    ("metrics:1@1", 0),  # gen-50 uploaded, 1-47 sent, no marker
    ("metrics:1@2", 0),  # gen-50 skipped (never committed), 1-47 not logged again; gen-50 committed (48-50);
    # of gen-100, 51-97 sent
    ("marker@1", 50),  # 51-97 not logged again; gen-100 committed (98-100)
    ("metrics:2@1", 100),  # of gen-150 every chunk sent (101-150), no marker
    ("upload@2", 100),  # 101-150 not logged again; gen-150 committed (the marker alone); gen-200 uploaded
    ("retention@1", 150),  # gen-200 committed whole, the session not closed
    (None, 200),  # nothing left to train: the session closes
]


@pytest.mark.slow
def test_sigkill_at_every_step_of_a_commit_then_resume_logs_every_generation_once(store, tmp_path,
                                                                                 uninterrupted) -> None:
    client = _client(store)
    session_id = None
    for number, (kill_at, start) in enumerate(CHAIN, 1):
        args = ("resume", session_id) if session_id else ("train", *FLAGS, "--experiment", "chain")
        result = _run(store, tmp_path, *args, kill_at=kill_at)
        assert result.returncode == (-signal.SIGKILL if kill_at else 0), (kill_at, result.stderr)
        if session_id is None:
            (session,) = session_runs(store_uri(store), "chain")
            session_id = session.info.run_id
        attempts = _attempts(client, session_id)
        assert len(attempts) == number
        assert int(attempts[-1].data.tags["btc_ai.start_generation"]) == start, kill_at
        stored, marked = _checkpoints(client, attempts[-1].info.run_id)
        assert marked <= stored  # a marker stands for a file on the store
        shutil.rmtree(tmp_path / "checkpoints", ignore_errors=True)  # the store alone must do
    _assert_once_and_identical(client, session_id, uninterrupted, tmp_path)


@pytest.mark.slow
def test_retention_deletes_an_older_checkpoint_only_after_the_newer_marker(store, tmp_path, uninterrupted) -> None:
    client = _client(store)
    for kill_at, kept in (("marker@4", {"gen-000050", "gen-000100", "gen-000150", "gen-000200"}),
                          ("retention@4", {"gen-000100", "gen-000150", "gen-000200"})):  # keep 3
        folder = tmp_path / kill_at.replace("@", "-")
        folder.mkdir()
        killed = _run(store, folder, "train", *FLAGS, "--experiment", folder.name, kill_at=kill_at)
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        (session,) = session_runs(store_uri(store), folder.name)
        (first,) = _attempts(client, session.info.run_id)
        stored, marked = _checkpoints(client, first.info.run_id)
        assert "gen-000200" in marked and stored == kept, kill_at  # gen-50 goes only after gen-200's marker
        assert {p.stem for p in (folder / "checkpoints" / session.info.run_id).iterdir()} == kept  # local files too
    # the last commit was whole, the session not closed: the resume trains nothing and closes it
    resumed = _run(store, folder, "resume", session.info.run_id, "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    _, second = _attempts(client, session.info.run_id)
    assert int(second.data.tags["btc_ai.start_generation"]) == 200
    _assert_once_and_identical(client, session.info.run_id, uninterrupted, folder)


def test_an_unparsable_kill_point_is_refused_in_one_line(run_main, monkeypatch) -> None:
    monkeypatch.setenv("BTC_AI_KILL_AT", "metrics@2")
    code, _, err = run_main("train", *FLAGS)
    assert code == 2 and "BTC_AI_KILL_AT" in err and "metrics:K" in err and "Traceback" not in err
