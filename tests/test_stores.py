"""Tracking stores and URIs: every mistake one line, exit 2, fast and nothing created; a new store appears
whole or not at all (an interrupt at any moment of start-up, three trainings started at once); a half-built
store is rebuilt. Real SQLite files, real processes and signals."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import btc_ai_cmd, cli_env, session_runs, store_uri, tiny_flags

from btc_ai.tracking.mlflow_internals import head_revision
from btc_ai.tracking.stores import probe

RUN_ID = "0123456789abcdef0123456789abcdef"
Run = Callable[..., tuple[int, str, str]]


def _files(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with its sha256: what a refused command must leave as it was (but SQLite's
    shared-memory index, which readers write to)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.endswith("-shm")}


def _refused(code: int, err: str, *words: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("btc-ai: error: "), (code, err)
    for word in words:
        assert word in lines[0], (word, lines[0])


def _store(folder: Path) -> str:
    """A whole store under ``folder/mlruns`` holding one session run (no training: the Tracker alone)."""
    from btc_ai.tracking.run_model import KIND_SESSION
    from btc_ai.tracking.sqlite_wal import close_sqlite_stores
    from btc_ai.tracking.tracker import Tracker

    tracker = Tracker(store_uri(folder))
    run_id = tracker.create_run(KIND_SESSION, name="a session")
    tracker.end_run(run_id, "KILLED")
    close_sqlite_stores()  # one file, as every command leaves it
    return run_id


# -- URIs MLflow 3 cannot use ------------------------------------------------------------------------------


@pytest.mark.parametrize("flag, env, words", [
    ("file:./mlruns", None, ["--tracking-uri file:./mlruns", "file store", "sqlite:///mlruns/mlflow.db"]),
    ("file:///tmp/somewhere/mlruns", None, ["file store", "sqlite:///"]),
    (None, "./mlruns", ["MLFLOW_TRACKING_URI ./mlruns", "file store", "sqlite:///mlruns/mlflow.db"]),
    (None, "mlruns/mlflow.db", ["file store", "sqlite:///mlruns/mlflow.db"]),
    ("htp://127.0.0.1:5000", None, ["unknown scheme htp://", "did you mean http://"]),
    ("sqlte:///mlruns/mlflow.db", None, ["did you mean sqlite://"]),
    ("sqlite://mlruns/mlflow.db", None, ["three slashes"]),
    ("http://", None, ["names no server"]),
])
@pytest.mark.parametrize("command", [["train", *tiny_flags()], ["report", RUN_ID], ["resume", RUN_ID], ["sync"]])
def test_a_uri_mlflow_cannot_open_is_one_line_naming_what_to_use(run_main: Run, here: Path,
                                                                 monkeypatch: pytest.MonkeyPatch, flag: str | None,
                                                                 env: str | None, words: list[str],
                                                                 command: list[str]) -> None:
    if env is not None:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", env)
    code, _, err = run_main(*command, *(["--tracking-uri", flag] if flag else []))
    _refused(code, err, *words)
    assert _files(here) == {} and list(here.iterdir()) == []


# the database drivers SQLAlchemy would import for these URIs; made unimportable here, whatever is installed
_DRIVERS = ("psycopg", "psycopg2", "pg8000", "asyncpg", "MySQLdb", "pymysql", "mysql", "pyodbc", "pymssql")


@pytest.mark.parametrize("uri, words", [
    ("postgresql://me:secret@localhost/mlflow", ["driver psycopg", "pip install 'psycopg[binary]'",
                                                 "postgresql+psycopg2://"]),
    ("postgresql+psycopg2://me:secret@localhost/mlflow", ["driver psycopg2", "pip install 'psycopg2-binary'"]),
    ("mysql+pymysql://me:secret@localhost/mlflow", ["driver pymysql", "pip install 'PyMySQL'"]),
])
def test_a_database_uri_without_its_driver_names_the_package(run_main: Run, here: Path,
                                                             monkeypatch: pytest.MonkeyPatch, uri: str,
                                                             words: list[str]) -> None:
    for module in _DRIVERS:  # None in sys.modules: `import module` raises ImportError, as where it is missing
        monkeypatch.setitem(sys.modules, module, None)
    code, _, err = run_main("train", *tiny_flags(), "--tracking-uri", uri)
    _refused(code, err, "is not installed", *words)
    assert "secret" not in err and list(here.iterdir()) == []


# -- stores that are not there, or cannot be opened -------------------------------------------------------


@pytest.mark.parametrize("command", [["report", RUN_ID], ["report", "models:/btc-ai-scalping/1"], ["resume", RUN_ID],
                                     ["train", "--resume", RUN_ID], ["report", RUN_ID, "--json"]])
def test_a_command_that_reads_a_store_refuses_a_folder_without_one_and_creates_none(
        run_main: Run, here: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # the default store, ./mlruns/mlflow.db
    code, _, err = run_main(*command)
    _refused(code, err, "no tracking store", str(here / "mlruns" / "mlflow.db"))
    assert list(here.iterdir()) == []


def test_a_wrong_run_id_on_a_store_is_refused_and_changes_nothing(run_main: Run, here: Path) -> None:
    _store(here)
    before = _files(here)
    for command in (["resume", RUN_ID], ["report", RUN_ID], ["train", "--resume", RUN_ID], ["resume", "abc"]):
        code, _, err = run_main(*command)
        _refused(code, err, "does not exist")
    assert _files(here) == before


@pytest.mark.parametrize("content", [b"just some text, not a database\n" * 20, bytes(range(256)) * 64,
                                     b"SQLite format 3\x00" + b"\xff" * 4000])
@pytest.mark.parametrize("command", [["train", *tiny_flags()], ["report", RUN_ID], ["resume", RUN_ID],
                                     ["backup", "--version", "1", "--description", "x"]])
def test_a_store_file_that_is_not_a_database_is_refused_at_once(run_main: Run, here: Path, content: bytes,
                                                                command: list[str]) -> None:
    (here / "mlruns").mkdir()
    (here / "mlruns" / "mlflow.db").write_bytes(content)
    before = _files(here)
    code, _, err = run_main(*command)
    _refused(code, err, "cannot open the tracking store", "mlflow.db")
    assert _files(here) == before


@pytest.mark.parametrize("layout", ["store is a folder", "mlruns is a file"])
def test_a_store_path_that_cannot_hold_a_store_is_refused(run_main: Run, here: Path, layout: str) -> None:
    if layout == "store is a folder":
        (here / "mlruns" / "mlflow.db").mkdir(parents=True)
    else:
        (here / "mlruns").write_text("not a folder")
    before = _files(here)
    code, _, err = run_main("train", *tiny_flags())
    _refused(code, err, "folder" if layout == "store is a folder" else "is a file")
    assert _files(here) == before


# -- half-built stores -------------------------------------------------------------------------------------


def _half_built(database: Path) -> None:
    """What MLflow leaves when it is interrupted while creating a store: its initial tables, some of the
    migrations' tables, no schema version."""
    from mlflow.store.db.base_sql_model import Base
    from mlflow.store.db.utils import create_sqlalchemy_engine
    from mlflow.store.tracking.dbmodels.initial_models import Base as InitialBase

    database.parent.mkdir(parents=True, exist_ok=True)
    engine = create_sqlalchemy_engine(f"sqlite:///{database}")
    InitialBase.metadata.create_all(engine)
    Base.metadata.tables["secrets"].create(engine)  # MLflow alone then fails: "table secrets already exists"
    engine.dispose()


def test_a_half_built_store_that_holds_nothing_is_rebuilt_whole(run_main: Run, here: Path) -> None:
    database = here / "mlruns" / "mlflow.db"
    _half_built(database)
    leftover = database.with_name(".mlflow.db.building-99999")  # a builder killed earlier
    leftover.write_bytes(b"partial")
    assert probe(database).state == "half"
    code, _, err = run_main("report", RUN_ID)
    _refused(code, err, "half-built", "rebuilds it")
    run_id = _store(here)  # what `btc-ai train` opens (the sweep below trains on rebuilt stores for real)
    assert probe(database).state == "whole" and not leftover.exists()
    assert [r.info.run_id for r in session_runs(store_uri(here))] == [run_id]
    code, _, err = run_main("report", RUN_ID)
    _refused(code, err, "does not exist")


def test_a_half_built_store_that_holds_runs_is_refused_and_left_alone(run_main: Run, here: Path) -> None:
    database = here / "mlruns" / "mlflow.db"
    _half_built(database)
    with sqlite3.connect(database) as db:
        db.execute("INSERT INTO experiments (experiment_id, name, lifecycle_stage) VALUES (5, 'mine', 'active')")
        db.execute("INSERT INTO runs (run_uuid, experiment_id, lifecycle_stage, status) "
                   f"VALUES ('{RUN_ID}', 5, 'active', 'FINISHED')")
    before = _files(here)
    for command in (["train", *tiny_flags()], ["report", RUN_ID]):
        code, _, err = run_main(*command)
        _refused(code, err, "holds runs", "backup")
    assert _files(here) == before


# -- deleted in the UI -------------------------------------------------------------------------------------


def test_a_session_deleted_in_the_ui_is_refused_with_how_to_restore_it(run_main: Run, here: Path) -> None:
    from mlflow import MlflowClient

    run_id = _store(here)
    MlflowClient(store_uri(here)).delete_run(run_id)
    for command in (["resume", run_id], ["report", run_id], ["train", "--resume", run_id]):
        code, _, err = run_main(*command)
        _refused(code, err, f"run {run_id} was deleted", f"mlflow runs restore --run-id {run_id}", "restore_run")
    MlflowClient(store_uri(here)).restore_run(run_id)
    code, _, err = run_main("report", run_id)
    assert code == 0, err


def test_an_experiment_deleted_in_the_ui_is_refused_with_how_to_restore_it(run_main: Run, here: Path) -> None:
    from mlflow import MlflowClient

    _store(here)
    client = MlflowClient(store_uri(here))
    experiment = client.get_experiment_by_name("btc-ai")
    client.delete_experiment(experiment.experiment_id)
    before = len(client.search_runs([experiment.experiment_id], run_view_type=3))
    code, _, err = run_main("train", *tiny_flags())
    _refused(code, err, "experiment 'btc-ai'", "was deleted",
             f"mlflow experiments restore --experiment-id {experiment.experiment_id}", "--experiment NAME")
    assert len(client.search_runs([experiment.experiment_id], run_view_type=3)) == before


# -- permissions, for real: an unprivileged user (root ignores file modes) ---------------------------------

_AS_NOBODY = os.geteuid() == 0 and shutil.which("setpriv") is not None


def _as_user(work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`btc-ai ARGS` in ``work`` as `nobody` when this runs as root, else as this (unprivileged) user."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(HOME=str(work), PYTHONDONTWRITEBYTECODE="1")
    prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if _AS_NOBODY else []
    return subprocess.run([*prefix, *btc_ai_cmd(*args)], cwd=work, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def foreign_folder() -> Path:
    """A folder this test's user (`nobody` under root) can read but not write."""
    if os.geteuid() == 0 and not _AS_NOBODY:
        pytest.skip("needs setpriv to run btc-ai as another user (root ignores file modes)")
    work = Path(tempfile.mkdtemp(prefix="btc-ai-stores-"))  # not under tmp_path: that is private to root
    work.chmod(0o755)
    try:
        yield work
    finally:
        for path in [work, *work.rglob("*")]:
            if path.is_dir():
                path.chmod(0o755)
        shutil.rmtree(work, ignore_errors=True)


@pytest.mark.slow  # `btc-ai` processes, as another user
def test_an_unwritable_working_folder_is_one_line_and_nothing_is_created(foreign_folder: Path) -> None:
    work, elsewhere = foreign_folder / "work", foreign_folder / "store"
    work.mkdir(mode=0o555)
    elsewhere.mkdir(mode=0o777)
    work.chmod(0o555)  # mkdir's mode is masked by the umask
    elsewhere.chmod(0o777)
    done = _as_user(work, "train", *tiny_flags())  # the default store, ./mlruns
    _refused(done.returncode, done.stderr, "read-only", str(work))
    # a store elsewhere, but the checkpoints would go to ./checkpoints: refused before the session is created
    done = _as_user(work, "train", *tiny_flags(), "--tracking-uri", f"sqlite:///{elsewhere}/mlflow.db")
    _refused(done.returncode, done.stderr, "checkpoint folder", "read-only", "--checkpoint-dir")
    assert list(work.iterdir()) == [] and list(elsewhere.iterdir()) == []
    private = foreign_folder / "private"  # a folder on the store's way this user may not enter
    private.mkdir()
    private.chmod(0o700)
    for command in (["report", RUN_ID], ["train", *tiny_flags()]):
        done = _as_user(elsewhere, *command, "--tracking-uri", f"sqlite:///{private}/mlruns/mlflow.db")
        _refused(done.returncode, done.stderr, "permission denied")
    assert list(private.iterdir()) == []


@pytest.mark.slow  # `btc-ai` processes, as another user
def test_a_read_only_store_is_refused_and_still_reported(foreign_folder: Path) -> None:
    run_id = _store(foreign_folder)
    for path in [foreign_folder, *foreign_folder.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    before = _files(foreign_folder)
    for command in (["train", *tiny_flags()], ["resume", run_id]):
        done = _as_user(foreign_folder, *command)
        _refused(done.returncode, done.stderr, "read-only")
    done = _as_user(foreign_folder, "report", run_id)  # reading needs no writes
    assert done.returncode == 0 and run_id in done.stdout, done.stderr
    assert _files(foreign_folder) == before


# -- a new store appears whole or not at all ---------------------------------------------------------------


def _wait_for(proc: subprocess.Popen[str], ready: Callable[[], bool], limit: float = 120.0) -> None:
    deadline = time.monotonic() + limit
    while not ready() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)


# (signal, moment, seconds after it): from the process start, from the moment the store is being built
# aside (its temporary file appears), from the moment the store is in place. Seven points, each a fresh process:
# both signals before the store is touched, at and just after the build starts, and right after the store
# appears; later points into a build hit it only where the build is slow
KILL_POINTS = [(signal.SIGINT, "start", 0.5), (signal.SIGKILL, "start", 1.5),
               (signal.SIGKILL, "building", 0.0), (signal.SIGINT, "building", 0.2), (signal.SIGKILL, "building", 0.8),
               (signal.SIGINT, "store", 0.0), (signal.SIGKILL, "store", 0.3)]


@pytest.mark.slow
def test_an_interrupt_at_any_moment_of_start_up_leaves_a_store_the_next_command_uses(
        run_main: Run, here: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    head = head_revision()  # a store at any other revision is one MLflow stopped building
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}  # the default store, ./mlruns
    # MLflow's own build, the slow one an interrupt can land in (a copy of the template is too quick to hit)
    env.update(PYTHONUNBUFFERED="1", BTC_AI_PROGRESS_EVERY="1", BTC_AI_STORE_TEMPLATE="off")
    struck_mid_build = 0
    for number, (signum, moment, after) in enumerate(KILL_POINTS):
        folder = here / f"point-{number}"
        folder.mkdir()
        store = folder / "mlruns" / "mlflow.db"
        started = time.monotonic()
        proc = subprocess.Popen(btc_ai_cmd("train", *tiny_flags(EPISODES=5000, EARLY_STOP_PATIENCE=0)), cwd=folder, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if moment == "building":
            _wait_for(proc, lambda f=folder: any((f / "mlruns").glob(".mlflow.db.building-*")))
        elif moment == "store":
            _wait_for(proc, store.exists)
        time.sleep(max(0.0, after - (time.monotonic() - started)) if moment == "start" else after)
        building = any((folder / "mlruns").glob(".mlflow.db.building-*"))
        proc.send_signal(signum)
        struck_mid_build += building
        out, err = proc.communicate(timeout=120)
        what = f"{signal.Signals(signum).name} at {moment} + {after} s: rc {proc.returncode}\n{out}\n{err}"
        assert proc.returncode in ((130, -signal.SIGINT) if signum == signal.SIGINT else (-signal.SIGKILL,)), what
        if "is saved" in err:  # never a generation claimed that did not run
            assert "gen " in out, what
        assert not store.exists() or probe(store).revision == head, what  # whole, or not there at all
        # the next command in that folder: a training, which must use (or build) the store without error
        monkeypatch.chdir(folder)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", store_uri(folder))
        code, _, next_err = run_main("train", *tiny_flags(EPISODES=2))
        assert code == 0 and "Traceback" not in next_err, f"{what}\nnext: {next_err}"
        assert probe(store).revision == head and not list((folder / "mlruns").glob(".mlflow.db.building-*")), what
    # the sweep really hit MLflow while it built the store: the points 0.0 and 0.2 s after the build file appears
    # always do; the later ones do only where the build is slow (a busy machine), so they are not counted on
    assert struck_mid_build >= 2


@pytest.mark.slow
def test_three_trainings_started_at_once_in_a_fresh_folder_share_one_new_store(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    procs = [subprocess.Popen(btc_ai_cmd("train", "--quiet", *tiny_flags(EPISODES=2, SEED=seed)), cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for seed in (1, 2, 3)]
    results = [proc.communicate(timeout=300) for proc in procs]
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0 and "Traceback" not in err, err
    assert len(session_runs(store_uri(tmp_path))) == 3
    assert sorted(p.name for p in (tmp_path / "mlruns").iterdir() if p.name.startswith(".")) == []


def _heavy_modules_after_refusals(folder: Path, cases: list[tuple[str, list[str]]]) -> list[list]:
    """Run each case's `btc-ai ARGV` in ``folder/<its folder>`` in one fresh process through ``main(argv)``:
    [command, exit code, mlflow and torch if loaded by then] per case."""
    code = ("import json, os, sys\nfrom btc_ai.cli import main\nout = []\n"
            f"for where, argv in {cases!r}:\n"
            f"    os.chdir(os.path.join({str(folder)!r}, where))\n"
            "    out.append([argv[0], main(argv), sorted({'mlflow', 'torch'} & set(sys.modules))])\n"
            "print(json.dumps(out))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}  # the default store, ./mlruns
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow  # a fresh Python: what it loads
def test_a_refusal_loads_neither_mlflow_nor_torch(tmp_path: Path) -> None:
    """What makes a refusal take milliseconds, not the seconds mlflow and torch take to import (timed in
    benchmarks/bench_startup.py): every check runs before either loads."""
    (tmp_path / "junk" / "mlruns").mkdir(parents=True)
    (tmp_path / "junk" / "mlruns" / "mlflow.db").write_bytes(b"not a database\n" * 50)
    (tmp_path / "empty").mkdir()
    cases = [("empty", ["train", "--tracking-uri", "file:./mlruns"]), ("empty", ["report", RUN_ID, "--tracking-uri",
                                                                                  "htp://x"]),
             ("empty", ["resume", RUN_ID]), ("empty", ["report", "models:/btc-ai-scalping/1"]),
             ("junk", ["report", RUN_ID]), ("junk", ["train", *tiny_flags()])]
    assert _heavy_modules_after_refusals(tmp_path, cases) == [[argv[0], 2, []] for _, argv in cases]


@pytest.mark.slow  # a fresh Python: what it loads
@pytest.mark.parametrize("command", [["resume", RUN_ID], ["report", RUN_ID]])
def test_an_unknown_run_id_on_a_store_is_refused_before_mlflow_loads(tmp_path: Path, command: list[str]) -> None:
    _store(tmp_path / "store")
    assert _heavy_modules_after_refusals(tmp_path, [("store", command)]) == [[command[0], 2, []]]


@pytest.mark.slow  # a fresh Python: what it loads
def test_importing_the_store_checks_loads_no_mlflow() -> None:
    code = "import sys, btc_ai.tracking.stores, btc_ai.cli.main; print('mlflow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr


@pytest.mark.slow  # a fresh Python: what it loads
def test_the_parser_loads_neither_pandas_torch_nor_mlflow() -> None:
    """`btc-ai --help` (and every command's parser) builds without the data and training stack: what keeps it
    under half a second (benchmarks/bench_startup.py times it)."""
    code = ("import sys\nfrom btc_ai.cli import build_parser\nbuild_parser()\n"
            "print(sorted({'pandas', 'torch', 'mlflow', 'scipy', 'sqlalchemy'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr
