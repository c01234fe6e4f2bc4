"""Secrets: kept out of what is written, masked only in what people read. A password — short and common
(`5000`, `mlflow`, `admin`) or holding an `@` — left in the shell never changes a run ID, tag, param, path or
model version; it is in no stored byte, console line or journal folder name; each user's journal is theirs."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import btc_ai_cmd, cli_env, session_runs, store_uri, tiny_flags
from session_record import FAULT, session_record

from btc_ai.tracking.credentials import MASK, redact
from btc_ai.tracking.paths import journal_dir, resolve_tracking_uri

PASSWORDS = ["5000", "mlflow", "admin", "abc@def"]
SECRET_NAMES = ("MLFLOW_TRACKING_PASSWORD", "PGPASSWORD")


def _distinctive(password: str) -> bool:
    """A password that can only be in a byte as a leak (a short plain word or number is also data: there the
    record comparison is the check)."""
    return len(password) >= 8 or not password.isalnum()


# -- masking is for people ------------------------------------------------------------------------------


def test_a_uri_login_is_masked_to_its_last_at_and_named_secrets_are_masked(monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "abc@secret")
    text = redact("GET http://alice:abc@secret@host:5000/api failed; PGPASSWORD='pw5000' password=admin")
    assert "secret" not in text and "pw5000" not in text and "=admin" not in text, text
    assert "http://alice:***@host:5000/api" in text
    from btc_ai.tracking.credentials import display_uri, strip_login

    assert strip_login("postgresql+psycopg2://mlflow:S3c@retPw@db:5432/mlflow") == "postgresql+psycopg2://db:5432/mlflow"
    assert display_uri("http://alice:abc@secret@host/x") == "http://alice:***@host/x"


@pytest.mark.parametrize("password", PASSWORDS)
def test_a_password_in_the_shell_rewrites_no_text_that_carries_data(monkeypatch, password: str) -> None:
    """A run ID, a checkpoint path, a port, a user name, the word mlflow: shown as they are."""
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    monkeypatch.setenv("PGPASSWORD", password)
    text = ("run 9f5000ab12cd34ef9f5000ab12cd34ef: checkpoints/gen-005000.pt of user 'admin' on "
            "http://127.0.0.1:5000 (mlflow.note.content)")
    assert redact(text) == text
    assert redact(f"http://bob:{password}@127.0.0.1:5000") == "http://bob:***@127.0.0.1:5000"


@pytest.mark.parametrize("text", [
    "/tmp/w/secret.csv: Permission denied, this user may not read the data file",
    "tokens: 3 of 5 read; my_secret.json: no such file",
    "password_hint.txt: not found",
])
def test_a_secret_word_inside_a_file_name_masks_nothing(text: str) -> None:
    """A secret is taken by name only where the name ends with the word and is followed by = or :."""
    assert redact(text) == text


@pytest.mark.parametrize("password", PASSWORDS)
def test_tracking_writes_are_never_rewritten_by_a_password(tmp_path: Path, monkeypatch, password: str) -> None:
    """Tag keys and values, params and artifact paths go to the store exactly as given; only the prose of a
    run's description has a secret masked (and only a secret)."""
    from btc_ai.tracking.tracker import Tracker

    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    folder = tmp_path / f"work-{password}"
    folder.mkdir()
    (folder / "gen-005000.pt").write_bytes(b"x")
    tracker = Tracker(store_uri(folder), experiment="secrets")
    run = tracker.create_run("attempt", tags={"btc_ai.note": "mlflow admin 5000"})
    tracker.log_params(run, {"EPISODES": "5000", "where": "admin/mlflow"})
    tracker.set_tags(run, {"mlflow.note.content": f"see http://u:{password}@h/x and run {run}", "k": "admin"})
    tracker.log_artifact(run, folder / "gen-005000.pt", "checkpoints")
    got = tracker.client.get_run(run)
    assert got.info.run_id == run and got.data.params == {"EPISODES": "5000", "where": "admin/mlflow"}
    assert got.data.tags["k"] == "admin" and got.data.tags["btc_ai.note"] == "mlflow admin 5000"
    assert got.data.tags["mlflow.note.content"] == f"see http://u:{MASK}@h/x and run {run}"
    assert [a.path for a in tracker.client.list_artifacts(run, "checkpoints")] == ["checkpoints/gen-005000.pt"]


def test_an_error_report_masks_its_prose_and_keeps_its_data(monkeypatch) -> None:
    from btc_ai.recovery.classify import classify
    from btc_ai.recovery.error_report import build_error_report, render_markdown

    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "5000")
    monkeypatch.setattr(sys, "argv", ["btc-ai", "train", "--tracking-uri", "http://alice:abc@def@host:5000"])
    exc = ValueError("no checkpoint gen-005000.pt for run 9f5000ab12cd34ef9f5000ab12cd34ef")
    report = build_error_report(exc, classification=classify(exc), attempt=1, generation_reached=5000,
                                last_metrics={"fitness/mean": 1.0}, config={"EPISODES": 5000}, data_summary={},
                                repair=None, decision="retry", session_run_id="9f5000ab12cd34ef9f5000ab12cd34ef")
    assert report["error"]["message"] == str(exc) and report["config"] == {"EPISODES": 5000}
    assert report["session_run_id"] == "9f5000ab12cd34ef9f5000ab12cd34ef"
    assert report["machine"]["argv"][-1] == "http://alice:***@host:5000"
    assert "abc@def" not in render_markdown(report) and "gen-005000.pt" in render_markdown(report)


# -- no password shown ------------------------------------------------------------------------------------


def test_a_login_in_mlflow_tracking_uri_is_cleaned_when_tracking_uri_is_given(monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://alice:abc@def@other:5000")
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    assert resolve_tracking_uri("http://host:5000") == "http://host:5000"
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://other:5000"
    assert "MLFLOW_TRACKING_PASSWORD" not in os.environ  # another server's login is not ours to use here
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://alice:abc@def@host:5000")
    assert resolve_tracking_uri("http://host:5000") == "http://host:5000"
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == "abc@def" and os.environ["MLFLOW_TRACKING_URI"] == "http://host:5000"


def test_a_journal_folder_is_named_without_the_login_and_per_user(tmp_path: Path, monkeypatch) -> None:
    database = "postgresql+psycopg2://mlflow:S3cretPw@db@127.0.0.1:5432/mlflow"
    folder = journal_dir(database, tmp_path)
    assert "S3cretPw" not in str(folder) and folder.parent == tmp_path.resolve()
    assert journal_dir("http://127.0.0.1:5000", tmp_path, user="alice") != \
        journal_dir("http://127.0.0.1:5000", tmp_path, user="bob")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "carol")
    assert journal_dir("http://127.0.0.1:5000", tmp_path) == journal_dir("http://127.0.0.1:5000", tmp_path, user="carol")
    from btc_ai.tracking.paths import private_folder

    private_folder(folder)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_a_journal_an_earlier_version_left_is_taken_over(tmp_path: Path) -> None:
    import hashlib
    import re

    from btc_ai.tracking.journal import Journal

    uri = "http://127.0.0.1:5000"
    legacy = tmp_path / f"{re.sub(r'[^A-Za-z0-9._-]+', '_', uri)[:60].strip('_')}-" \
                        f"{hashlib.sha256(uri.encode()).hexdigest()[:10]}"
    Journal(legacy).append("set_terminated", {"run_id": "x", "status": "FINISHED", "end_time": 1})
    folder = journal_dir(uri, tmp_path)
    assert folder != legacy and not legacy.exists() and Journal(folder).pending_count() == 1
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


# -- a whole session with a password in the shell: the record it leaves without one -----------------------


@contextlib.contextmanager
def _session_environment(folder: Path, password: str | None) -> Iterator[None]:
    """This process as a shell in ``folder`` with ``password`` in the secret variables (and in a stale
    MLFLOW_TRACKING_URI of a team server); all of it undone afterwards."""
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    loggers = [logging.getLogger(n) for n in ("btc_ai", "mlflow", "alembic")]
    saved_log = [(lg, lg.level, lg.propagate, list(lg.handlers)) for lg in loggers]
    for name in [k for k in os.environ if k.startswith(("MLFLOW_", "BTC_AI_"))] + list(SECRET_NAMES):
        os.environ.pop(name, None)
    if password is not None:
        os.environ.update({name: password for name in SECRET_NAMES})
        os.environ["MLFLOW_TRACKING_USERNAME"] = "alice"
        os.environ["MLFLOW_TRACKING_URI"] = f"http://alice:{password}@127.0.0.1:9/"  # left from another session
    os.environ["BTC_AI_PROGRESS_EVERY"] = "1"
    folder.mkdir(parents=True)
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        for lg, level, propagate, handlers in saved_log:
            for handler in [h for h in lg.handlers if h not in handlers]:
                lg.removeHandler(handler)
            lg.setLevel(level)
            lg.propagate = propagate


def _session(folder: Path, password: str | None) -> tuple[dict, str, str]:
    """A training with a failure and its repair, a resume, a backup: (record, console output, store URI)."""
    from btc_ai.cli import main

    out = io.StringIO()
    with _session_environment(folder, password), contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        uri = store_uri(folder)
        os.environ["BTC_AI_FAULT"] = FAULT  # a recoverable error that blames a key: a failure and its repair
        # data that holds the password: a param's value (5000) and the checkpoints' paths (the folder's name)
        train = ["train", *tiny_flags(LEARNING_RATE=0.05, STALL_MIN_SECONDS=5000), "--tracking-uri", uri,
                 "--checkpoint-dir", str(folder / "checkpoints")]
        assert main(train) == 0, out.getvalue()
        del os.environ["BTC_AI_FAULT"]
        session = session_runs(uri)[-1].info.run_id
        assert main(["resume", session, "--episodes", "8", "--tracking-uri", uri]) == 0, out.getvalue()
        assert main(["backup", "--version", "1.0", "--description", "secrets", "--dest", str(folder / "backups"),
                     "--tracking-uri", uri]) == 0, out.getvalue()
        return session_record(uri, session), out.getvalue(), uri


@pytest.fixture(scope="module")
def without_password(tmp_path_factory: pytest.TempPathFactory) -> dict:
    record, _, _ = _session(tmp_path_factory.mktemp("plain") / "work", None)
    return record


def _stored_bytes(folder: Path) -> Iterator[tuple[str, bytes]]:
    """Every file under ``folder``, and every member of every zip (a backup) among them."""
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            yield str(path), data
            if zipfile.is_zipfile(path):
                with zipfile.ZipFile(path) as archive:
                    yield from ((f"{path}!{n}", archive.read(n)) for n in archive.namelist())


def _prose_values(record: dict) -> list[str]:
    runs = [record["session"], *record["attempts"], *record["repairs"]]
    return [v for run in runs for v in [*run["tags"].values(), *run["params"].values()]]


@pytest.mark.slow
@pytest.mark.parametrize("password", PASSWORDS)
def test_a_session_with_a_password_in_the_shell_leaves_the_record_of_one_without(
        tmp_path: Path, without_password: dict, password: str) -> None:
    """In a folder whose path holds the password too (a user's folder may): training, failure, repair,
    resume, backup on a local store. The record (run IDs' structure, tags, params, metric names and steps,
    artifact paths, model versions) is the one the same session leaves without a password; no value was
    masked; a password that can only be a leak is in no stored byte (store, artifacts, checkpoints,
    journal, backup) and no console line."""
    folder = tmp_path / f"in-{password}" / "work"
    record, console, _ = _session(folder, password)
    assert record == without_password
    assert not [v for v in _prose_values(record) if MASK in v]
    if _distinctive(password):  # the folder's own name is data (paths are stored as they are): set aside
        named = f"in-{password}"
        leaks = [where for where, data in _stored_bytes(folder) if password.encode() in data.replace(named.encode(), b"")]
        assert not leaks and password not in console.replace(named, ""), leaks
    assert f":{password}@" not in console


# -- each user's journal ----------------------------------------------------------------------------------

_AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def _nobody_cannot_run_python() -> str | None:
    """Why `nobody` cannot run this interpreter here (None when it can): not root, no setpriv, or the
    interpreter in a folder only root may enter."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return "needs root (to run a training as another user) and setpriv"
    done = subprocess.run([*_AS_NOBODY, sys.executable, "-c", "pass"], capture_output=True, text=True, timeout=60)
    return None if done.returncode == 0 else f"nobody cannot run {sys.executable}: {done.stderr.strip()[:200]}"


@pytest.mark.slow
def test_two_os_users_training_from_one_folder_keep_their_journals_apart() -> None:
    """root left a write in its journal for the shared store (an outage it has not sent yet); `nobody`
    trains from the same folder on the same store: no crash, root's entry is neither read nor sent by
    nobody, and root's journal is root's alone (0700). Root's next command sends it."""

    import tempfile

    reason = _nobody_cannot_run_python()
    if reason:
        pytest.skip(reason)
    work = Path(tempfile.mkdtemp(prefix="btc-ai-shared-"))  # not under tmp_path: that is private to root
    work.chmod(0o777)  # a project folder both may write
    try:
        _two_users(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _two_users(work: Path) -> None:
    from btc_ai.tracking.journal import Journal
    from btc_ai.tracking.tracker import Tracker

    env = {**cli_env(work), "HOME": str(work), "PYTHONDONTWRITEBYTECODE": "1"}
    def shared() -> None:  # files both may write (a team's shared group)
        os.umask(0)

    first = subprocess.run(btc_ai_cmd("train", *tiny_flags(EPISODES=2)), cwd=work, env=env, preexec_fn=shared,
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    for path in (work / "mlruns").rglob("*"):  # the store is built in a private temporary file: share it
        path.chmod(0o777 if path.is_dir() else 0o666)
    uri = store_uri(work)
    tracker = Tracker(uri, experiment="btc-ai")
    run = tracker.create_run("attempt")
    journal = Journal(journal_dir(uri, work / "mlruns" / "journal"))
    journal.append("log_batch", {"run_id": run, "tags": [["owner", "root"]]})
    assert stat.S_IMODE(journal.folder.stat().st_mode) == 0o700

    second = subprocess.run([*_AS_NOBODY, *btc_ai_cmd("train", *tiny_flags(EPISODES=2))], cwd=work, env=env,
                            preexec_fn=shared, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0 and "Traceback" not in second.stderr, second.stderr
    assert "owner" not in tracker.client.get_run(run).data.tags  # nobody did not replay root's entry
    assert journal.pending_count() == 1
    sync = subprocess.run(btc_ai_cmd("sync"), cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert sync.returncode == 0 and tracker.client.get_run(run).data.tags["owner"] == "root", sync.stderr


# -- child processes -------------------------------------------------------------------------------------

_RAY_PROBE = """
import json, os, ray
from btc_ai.training.cluster.connection import RayConnection
from btc_ai.training.cluster.processes import descendants
with RayConnection("local:1"):
    worker = ray.get(ray.remote(lambda: dict(os.environ)).remote())
    leaks = [pid for pid in descendants() if os.path.exists(f"/proc/{pid}/environ")
             and b"abc@def-ray" in open(f"/proc/{pid}/environ", "rb").read()]
    print(json.dumps({"worker": sorted(k for k, v in worker.items() if "abc@def-ray" in v or k.startswith("MLFLOW_T")),
                      "processes": leaks, "driver": os.environ["MLFLOW_TRACKING_PASSWORD"]}))
"""


@pytest.mark.slow
def test_ray_workers_never_hold_the_tracking_login(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    env = {**cli_env(tmp_path), "MLFLOW_TRACKING_PASSWORD": "abc@def-ray", "MLFLOW_TRACKING_USERNAME": "alice",
           "PGPASSWORD": "abc@def-ray", "MLFLOW_TRACKING_URI": "http://alice:abc@def-ray@127.0.0.1:9/"}
    done = subprocess.run([sys.executable, "-c", _RAY_PROBE], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found == {"worker": [], "processes": [], "driver": "abc@def-ray"}, found
