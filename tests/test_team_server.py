"""The team deployment, for real: `mlflow server` over PostgreSQL (started here as an unprivileged user on
127.0.0.1), artifacts proxied by the server, basic authentication. A session with a repair, resumes by run
ID and by model URI, the report and the notebook; refused logins and permissions; no password anywhere;
several trainings at once, a journal two processes share through a server restart, two resumes racing.
One server for the module; skipped with the reason where PostgreSQL is not installed."""

from __future__ import annotations

import re
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import ROOT, btc_ai_cmd, run_cli, tiny_flags, wait_for_line
from team import USERS, Team, session_exactness, team_server

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("team_server")]  # one server, in one test process


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory):
    yield from team_server(tmp_path_factory.mktemp("team-server"))


def _train(folder: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`btc-ai ARGS` with ``env``'s login, in this process (`run_cli`); trainings run beside another are real
    processes (`_popen`)."""
    return run_cli(folder, *args, env=env)


def _session_of(out: str) -> str:
    return re.search(r"\bsession ([0-9a-f]{32})", out)[1]


def _all_bytes(*roots: Path) -> list[tuple[Path, bytes]]:
    return [(p, p.read_bytes()) for root in roots if root.exists() for p in root.rglob("*") if p.is_file()]


def test_a_session_with_a_repair_resumes_by_run_id_and_model_uri_and_no_password_is_stored(
        team: Team, tmp_path: Path) -> None:
    """The password travels in the URI (user:password@), the first attempt fails and is repaired, two resumes
    extend the session; the record is exact, and the password is in no stored byte and no output."""
    password = USERS["alice"]
    host = team.url.removeprefix("http://")
    env = team.env(tmp_path, user=None)
    env["BTC_AI_FAULT"] = "ValueError@3:LEARNING_RATE"
    uri = ["--tracking-uri", f"http://alice:{password}@{host}"]
    first = _train(tmp_path, env, "train", *uri, "--experiment", "repair", *tiny_flags(LEARNING_RATE=0.05))
    assert first.returncode == 0, first.stderr
    session = _session_of(first.stdout)
    del env["BTC_AI_FAULT"]
    by_id = _train(tmp_path, env, "resume", session, "--episodes", "8", *uri)
    assert by_id.returncode == 0, by_id.stderr
    model = re.search(r"models:/btc-ai-scalping/\d+", by_id.stdout)[0]
    by_model = _train(tmp_path, env, "resume", model, "--episodes", "10", *uri)
    assert by_model.returncode == 0, by_model.stderr
    report = _train(tmp_path, env, "report", session, "--plots", *uri)
    assert report.returncode == 0 and "attempts" in report.stdout, report.stderr

    client = team.client("alice")
    found = session_exactness(client, session, 10)
    assert found.exact and found.status == "completed" and found.attempts == 4, found
    attempts = client.search_runs([client.get_run(session).info.experiment_id], "tags.`btc_ai.kind` = 'attempt'")
    failed = [a for a in attempts if a.data.tags["btc_ai.outcome"] == "recoverable_error"]
    assert len(failed) == 1
    runs = client.search_runs([client.get_run(session).info.experiment_id])
    assert {r.data.tags["mlflow.user"] for r in runs} == {"alice"}  # the login, as the UI's User column shows
    models = client.search_logged_models([client.get_run(session).info.experiment_id])
    assert models and all(m.source_run_id == session and m.metrics for m in models)
    names = {a.path for a in client.list_artifacts(failed[0].info.run_id)}
    assert {"error_report.json", "error_report.md"} <= names
    artifacts = team.server.folder / "artifacts"
    assert any(artifacts.rglob("gen-000010.pt"))  # the server stored it; the client only spoke HTTP

    # every stored byte: the database files, the artifact store, the server's log, the journal, the local
    # checkpoints; every tag and param through the API (long values may be compressed on disk); the console
    outputs = "".join(p.stdout + p.stderr for p in (first, by_id, by_model, report))
    leaks = [str(p) for p, data in _all_bytes(team.database.folder, team.server.folder, tmp_path)
             if password.encode() in data]
    for run in client.search_runs([client.get_run(session).info.experiment_id]):
        values = [*run.data.tags.values(), *run.data.params.values(), run.info.run_name or ""]
        leaks += [f"run {run.info.run_id}" for v in values if password in v]
        with tempfile.TemporaryDirectory() as tmp:
            client.download_artifacts(run.info.run_id, "", tmp)
            leaks += [str(p) for p, data in _all_bytes(Path(tmp)) if password.encode() in data]
    assert password not in outputs and not leaks, leaks
    after_at = password.split("@", 1)[1]  # a login masked only to its first "@" would show this
    assert after_at not in outputs and not [p for p, data in _all_bytes(tmp_path) if after_at.encode() in data]
    assert not [p for p in (tmp_path / "journal").rglob("*") if "abc" in p.name]  # no login in a folder name
    assert f"alice:***@{host}" in outputs or "alice" not in outputs  # a URI that is shown is masked


def test_the_notebook_runs_against_the_team_server(team: Team, tmp_path: Path, monkeypatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    env = team.env(tmp_path)
    env["BTC_AI_FAULT"] = "ValueError@3:LEARNING_RATE"
    done = _train(tmp_path, env, "train", "--experiment", "notebook", *tiny_flags(LEARNING_RATE=0.05))
    assert done.returncode == 0, done.stderr
    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(key, raising=False)
    # the login in the URI, as a user may export it: the notebook must not print it before it is taken out
    monkeypatch.setenv("MLFLOW_TRACKING_URI", team.url.replace("http://", f"http://alice:{USERS['alice']}@"))
    monkeypatch.setenv("BTC_AI_SESSION", _session_of(done.stdout))
    notebook = ROOT / "notebooks" / "compare_attempts.ipynb"
    nb = nbformat.read(notebook, as_version=4)
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(notebook.parent)}}).execute()
    text = "".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                   for out in cell.get("outputs", []) if out.output_type == "stream")
    assert "2 attempts" in text and USERS["alice"] not in text and USERS["alice"].split("@")[1] not in text


@pytest.mark.parametrize(("user", "password", "expected"), [
    (None, None, "requires a login and none is set; set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"),
    ("alice", "not-her-password", "refused the login of user 'alice'"),
])
def test_a_missing_or_wrong_login_is_one_line_and_creates_and_journals_nothing(
        team: Team, tmp_path: Path, user: str | None, password: str | None, expected: str) -> None:
    env = team.env(tmp_path, user=user, password=password)
    before = len(team.client("alice").search_experiments())
    done = _train(tmp_path, env, "train", "--experiment", "refused", *tiny_flags())
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert expected in done.stderr and team.url in done.stderr and "Traceback" not in done.stderr
    assert len(team.client("alice").search_experiments()) == before
    assert not (tmp_path / "journal").exists() and not (tmp_path / "mlruns").exists()
    assert "not-her-password" not in done.stdout + done.stderr


def test_another_user_may_read_but_not_resume_train_into_or_delete_a_session(team: Team, tmp_path: Path) -> None:
    done = _train(tmp_path, team.env(tmp_path), "train", "--experiment", "alices", *tiny_flags(EPISODES=2))
    assert done.returncode == 0, done.stderr
    session = _session_of(done.stdout)
    bob = team.env(tmp_path, user="bob")
    report = _train(tmp_path, bob, "report", session)
    assert report.returncode == 0, report.stderr  # the server's default permission: READ
    resume = _train(tmp_path, bob, "resume", session, "--episodes", "4")
    assert resume.returncode == 2 and resume.stderr.count("\n") == 1, resume.stderr
    assert "does not let user 'bob'" in resume.stderr and "EDIT permission" in resume.stderr
    into = _train(tmp_path, bob, "train", "--experiment", "alices", *tiny_flags(EPISODES=2))
    assert into.returncode == 2 and "does not let user 'bob' create runs in experiment 'alices'" in into.stderr
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match=r"403|Permission denied"):
        team.client("bob").delete_run(session)
    client = team.client("alice")
    assert client.get_run(session).info.lifecycle_stage == "active"
    assert len(client.search_runs([client.get_run(session).info.experiment_id])) == 2  # session + attempt only
    assert session_exactness(client, session, 2).exact


def _popen(folder: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(btc_ai_cmd(*args), cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_three_trainings_at_once_on_one_server_are_complete_and_exact(team: Team, tmp_path: Path) -> None:
    procs = [_popen(tmp_path, team.env(tmp_path), "train", "--quiet", "--experiment", "three",
                    *tiny_flags(EPISODES=8, SEED=seed)) for seed in (1, 2, 3)]
    results = [p.communicate(timeout=300) for p in procs]
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0 and "Traceback" not in err, err
    sessions = {_session_of(out) for out, _ in results}
    assert len(sessions) == 3
    for session in sessions:
        found = session_exactness(team.client(), session, 8)
        assert found.exact and found.status == "completed", found


def test_two_trainings_sharing_a_journal_through_a_server_restart_replay_each_entry_once(
        team: Team, tmp_path: Path) -> None:
    env = team.env(tmp_path)
    env["BTC_AI_FAULT"] = "Slow@1"  # 0.1 s a generation: time to restart the server between them
    procs = [_popen(tmp_path, env, "train", "--experiment", "journal", *tiny_flags(EPISODES=24, SEED=seed))
             for seed in (1, 2)]
    seen: list[list[str]] = [[], []]
    try:
        for proc, lines in zip(procs, seen, strict=True):
            wait_for_line(proc, lines, "gen 4/")
        team.server.stop()
        for proc, lines in zip(procs, seen, strict=True):
            wait_for_line(proc, lines, "gen 12/")  # trained on while the server was down: writes journaled
            proc.send_signal(signal.SIGSTOP)  # held while the server restarts, so both replay while training
        team.server.start(timeout=180)
        for proc in procs:
            proc.send_signal(signal.SIGCONT)
        results = [p.communicate(timeout=300) for p in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for proc, (out, err), lines in zip(procs, results, seen, strict=True):
        assert proc.returncode == 0, "".join(lines) + out + err
        assert "writes go to the journal" in err and "wait in the journal" not in out, out + err
    sessions = {_session_of("".join(lines) + out) for (out, _), lines in zip(results, seen, strict=True)}
    assert len(sessions) == 2
    for session in sessions:
        found = session_exactness(team.client(), session, 24)
        assert found.exact and found.status == "completed", found
    from btc_ai.tracking.journal import Journal, journal_dir

    assert Journal(journal_dir(team.url, tmp_path / "journal", user="alice")).pending_count() == 0


def test_two_resumes_of_one_session_from_two_processes_one_wins_the_other_is_one_line(
        team: Team, tmp_path: Path) -> None:
    done = _train(tmp_path, team.env(tmp_path), "train", "--quiet", "--experiment", "race", *tiny_flags(EPISODES=2))
    assert done.returncode == 0, done.stderr
    session = _session_of(done.stdout)
    env = team.env(tmp_path)
    env["BTC_AI_FAULT"] = "Slow@1"
    procs = [_popen(tmp_path, env, "resume", session, "--episodes", "12", "--quiet") for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], results
    refused = next(err for p, (_, err) in zip(procs, results, strict=True) if p.returncode == 2)
    assert refused.count("\n") == 1 and f"session {session}" in refused, refused
    found = session_exactness(team.client(), session, 12)
    assert found.exact and found.status == "completed" and found.attempts == 2, found


def test_runs_logging_one_new_dataset_at_once_each_get_it_as_an_input(team: Team) -> None:
    """MLflow's store makes an experiment's dataset on first use by looking, then inserting: on PostgreSQL,
    runs logging the same new dataset at once all look, all insert, and all but one break the datasets
    table's key (seen as a failed training when two shared a journal). Each must still get its input."""
    import threading
    import uuid

    from btc_ai.tracking.tracker import Tracker

    client = team.client()
    dataset = {"name": "builtin", "digest": "0123456789ab", "source_type": "code", "source": '{"tags": {}}',
               "schema": None, "profile": "{}", "context": "train"}
    for _ in range(4):  # rounds: each a new experiment, so the dataset is new to it
        experiment = f"dataset-race-{uuid.uuid4().hex[:8]}"
        trackers = [Tracker(team.url, experiment) for _ in range(6)]
        experiment_id = trackers[0].experiment_id  # made by the first, found by the others
        runs = [client.create_run(experiment_id).info.run_id for _ in trackers]
        barrier, errors = threading.Barrier(len(trackers)), []

        def log(tracker: Tracker, run_id: str, barrier: threading.Barrier = barrier, errors: list = errors) -> None:
            barrier.wait(timeout=60)
            try:
                tracker.log_inputs(run_id, [dataset])
            except Exception as exc:  # what the training would have failed with
                errors.append(exc)

        threads = [threading.Thread(target=log, args=pair) for pair in zip(trackers, runs, strict=True)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        for tracker in trackers:
            tracker.close()
        assert not errors, errors
        for run_id in runs:
            assert [d.dataset.digest for d in client.get_run(run_id).inputs.dataset_inputs] == ["0123456789ab"]


def test_a_search_by_two_workers_on_the_team_server_completes_every_trial(team: Team, tmp_path: Path, candles,
                                                                          monkeypatch) -> None:
    """`btc-ai search --parallel 2` with the team server as the tracking store and the study in the team's
    PostgreSQL: both worker processes write to both; every trial is complete and nested under the search run."""
    import json

    import optuna
    from conftest import TINY, write_binance_csv

    write_binance_csv(tmp_path / "c.csv", candles)
    (tmp_path / "space.yaml").write_text("LEARNING_RATE: {low: 0.003, high: 0.1, log: true}\n")
    (tmp_path / "tiny.json").write_text(json.dumps(TINY))
    storage = team.database.url("optuna")
    env = {**team.env(tmp_path), "PGPASSWORD": team.database.password}  # libpq's login to the study's database
    done = _train(tmp_path, env, "search", "c.csv", "--trials", "2", "--folds", "1", "--space", "space.yaml",
                  "--config", "tiny.json", "--parallel", "2", "--study-storage", storage, "--quiet")
    assert done.returncode == 0, done.stdout + done.stderr
    search_id = done.stdout.splitlines()[0].split()[2].rstrip(":")
    client = team.client()
    search = client.get_run(search_id)
    assert search.data.tags["btc_ai.kind"] == "search" and search.info.status == "FINISHED"
    monkeypatch.setenv("PGPASSWORD", team.database.password)
    trials = [t for t in optuna.load_study(study_name=search_id, storage=storage).trials
              if not t.user_attrs.get("surplus")]
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    nested = client.search_runs([search.info.experiment_id], f"tags.mlflow.parentRunId = '{search_id}'")
    assert sorted(int(r.data.tags["btc_ai.trial"]) for r in nested if "btc_ai.trial" in r.data.tags) == [0, 1]
