"""`btc-ai backup` / `btc-ai restore`: a real store from real trainings, archived, verified, moved away and
restored; then report and resume run from the restored folder alone. Damaged and hostile archives are
refused before anything is written."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import btc_ai_cmd, cli_env, run_cli, session_runs, tiny_flags
from mlflow import MlflowClient
from mlflow.entities import ViewType

from btc_ai.desk.backup import BackupError, check_entry_name, restore_backup, verify_backup

# one test process builds the module's store (two trainings and a backup) once, not each
pytestmark = pytest.mark.xdist_group("backup")

TINY_FLAGS = tiny_flags(EPISODES=8)


def _run_cli(cwd: Path, *args: str, env: dict[str, str] | None = None):
    return run_cli(cwd, *args, env=env)  # in this process: the trainings run beside a backup are processes


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _files(folder: Path, *names: str) -> dict[str, str]:
    """Path relative to ``folder`` -> sha256 of every file under ``folder`` (or its subfolders ``names``), the
    live database files excepted."""
    roots = [folder / n for n in names] or [folder]
    return {p.relative_to(folder).as_posix(): _sha(p) for root in roots for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.startswith("mlflow.db")}


def _artifacts(client: MlflowClient, run_id: str, path: str | None = None) -> list[str]:
    found = []
    for item in client.list_artifacts(run_id, path):
        found += _artifacts(client, run_id, item.path) if item.is_dir else [item.path]
    return found


def _store_view(uri: str) -> dict:
    """What a store serves: every run with its status, tags, params, metric histories and artifact list."""
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiments = client.search_experiments(view_type=ViewType.ALL)
    runs = client.search_runs([e.experiment_id for e in experiments], run_view_type=ViewType.ALL, max_results=1000)
    view = {}
    for run in runs:
        run_id = run.info.run_id
        view[run_id] = {
            "status": run.info.status, "tags": run.data.tags, "params": run.data.params,
            "history": {k: [(m.step, m.value, m.timestamp) for m in client.get_metric_history(run_id, k)]
                        for k in run.data.metrics},
            "artifacts": sorted(_artifacts(client, run_id)),
        }
    models = sorted((v.name, v.version, v.run_id, v.source) for v in client.search_model_versions())
    return {"experiments": sorted(e.name for e in experiments), "runs": view, "models": models}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> SimpleNamespace:
    """Two real trainings in one store (one completed from a config file, one crashed with an unrecoverable
    error, so resumable), backed up with the CLI into a folder beside the project."""
    base = tmp_path_factory.mktemp("backup")
    orig = base / "orig"
    (orig / "configs").mkdir(parents=True)
    (orig / "configs" / "tiny.json").write_text(json.dumps({"SIGMA": 0.05}))
    (orig / "notes.txt").write_text("trained on synthetic data\n")
    env = cli_env(orig)
    done = subprocess.Popen(btc_ai_cmd("train", *TINY_FLAGS, "--config", "configs/tiny.json", "--quiet"), cwd=orig,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert done.stdout is not None
    first = done.stdout.readline()  # the store exists (two processes creating it at once may collide)
    assert first.startswith("session run"), done.communicate()[1]
    crashed = subprocess.Popen(btc_ai_cmd("train", *TINY_FLAGS, "--quiet"), cwd=orig,
                               env={**env, "BTC_AI_FAULT": "PermissionError@5"},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, err = done.communicate(timeout=240)
    assert done.returncode == 0, err
    _, err = crashed.communicate(timeout=240)
    assert crashed.returncode == 1 and "PermissionError" in err, err
    result = _run_cli(orig, "backup", "--version", "v1.4", "--description", "post_training_stable", "--dest",
                      str(base / "backups"), "--include", "notes.txt")
    assert result.returncode == 0, result.stderr
    (archive,) = (base / "backups").iterdir()
    uri = env["MLFLOW_TRACKING_URI"]
    sessions = {r.data.tags["btc_ai.status"]: r for r in session_runs(uri)}
    return SimpleNamespace(base=base, orig=orig, archive=archive, stdout=result.stdout, uri=uri,
                           completed=sessions["completed"].info.run_id, failed=sessions["failed"].info.run_id,
                           files=_files(orig, "mlruns", "checkpoints"), view=_store_view(uri),
                           extra={"configs/tiny.json": _sha(orig / "configs" / "tiny.json"),
                                  "notes.txt": _sha(orig / "notes.txt")})


@pytest.mark.slow
def test_backup_names_the_archive_and_its_manifest_lists_every_file_and_session(store) -> None:
    assert store.archive.name.endswith("_v1.4_post_training_stable.zip") and store.archive.name.startswith("BTC_AI_")
    assert str(store.archive) in store.stdout and "2 sessions" in store.stdout
    with zipfile.ZipFile(store.archive) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        names = set(zf.namelist())
    listed = {f["path"]: f for f in manifest["files"]}
    assert names == {*listed, "manifest.json"}
    assert manifest["version"] == "1.4" and manifest["description"] == "post_training_stable"
    assert manifest["root"] == str(store.orig) and manifest["store"]["folder"] == str(store.orig / "mlruns")
    assert {s["run_id"] for s in manifest["sessions"]} == {store.completed, store.failed}
    assert {s["status"] for s in manifest["sessions"]} == {"completed", "failed"}
    assert "mlruns/mlflow.db" in listed and "configs/tiny.json" in listed and "notes.txt" in listed
    # every artifact and checkpoint, with the hash of the original bytes
    assert {p: f["sha256"] for p, f in listed.items() if p.startswith(("mlruns/artifacts/", "checkpoints/"))} == \
        store.files
    assert any(p.startswith("checkpoints/") and p.endswith(".pt") for p in listed)
    verified = _run_cli(store.base, "backup", "--verify", str(store.archive))
    assert verified.returncode == 0 and verified.stdout.startswith("OK") and f"{len(listed)} files" in verified.stdout


@pytest.mark.slow
def test_restore_serves_everything_and_report_and_resume_work_after_the_original_is_gone(store) -> None:
    moved = store.base / "orig-moved"
    restored = store.base / "restored"
    os.rename(store.orig, moved)  # the original folder is gone: nothing may depend on it
    try:
        before_moved = _files(moved)
        result = _run_cli(store.base, "restore", str(store.archive), "--into", str(restored))
        assert result.returncode == 0, result.stderr
        assert f"cd {restored} && btc-ai report" in result.stdout
        # every archived artifact and checkpoint restored byte for byte; configs and includes too
        assert _files(restored, "mlruns", "checkpoints") == store.files
        assert _sha(restored / "configs" / "tiny.json") == store.extra["configs/tiny.json"]
        assert _sha(restored / "notes.txt") == store.extra["notes.txt"]
        # the restored store serves every run, metric history, artifact and model version the original did
        uri = cli_env(restored)["MLFLOW_TRACKING_URI"]
        assert _store_view(uri) == store.view
        client = MlflowClient(tracking_uri=uri)
        for run_id in store.view["runs"]:
            assert client.get_run(run_id).info.artifact_uri.startswith((restored / "mlruns").as_uri() + "/")
        with sqlite3.connect(restored / "mlruns" / "mlflow.db") as db:
            cells = db.execute("SELECT artifact_location FROM experiments UNION ALL SELECT artifact_uri FROM runs")
            assert not [c for (c,) in cells if "orig" in c]

        report = _run_cli(restored, "report", store.failed)
        assert report.returncode == 0, report.stderr
        attempts = [r for r, v in store.view["runs"].items()
                    if v["tags"].get("mlflow.parentRunId") == store.failed and v["tags"]["btc_ai.kind"] == "attempt"]
        assert attempts and all(a in report.stdout for a in attempts)
        assert f"btc-ai resume {store.failed}" in report.stdout

        resumed = _run_cli(restored, "resume", store.failed, "--quiet")
        assert resumed.returncode == 0, resumed.stderr
        session = client.get_run(store.failed)
        assert session.data.tags["btc_ai.status"] == "completed" and session.info.status == "FINISHED"
        children = client.search_runs([session.info.experiment_id], f"tags.`mlflow.parentRunId` = '{store.failed}'")
        new = [r for r in children if r.info.run_id not in store.view["runs"]]
        assert new and all(r.info.artifact_uri.startswith(restored.as_uri()) for r in new)
        assert any((restored / "mlruns" / "artifacts" / r.info.run_id).is_dir() for r in new)
        assert any((restored / "checkpoints" / store.failed).iterdir())
        assert not store.orig.exists()  # nothing was written to where the original lived
        assert _files(moved) == before_moved
    finally:
        shutil.rmtree(store.orig, ignore_errors=True)
        os.rename(moved, store.orig)


@pytest.mark.parametrize(("flags", "word"), [
    (["--version", "1.4/../../x", "--description", "ok"], "--version"),
    (["--version", "one", "--description", "ok"], "--version"),
    (["--version", "1.4", "--description", "a/b"], "--description"),
    (["--version", "1.4", "--description", ".."], "--description"),
    (["--version", "1.4", "--description", "x" * 65], "--description"),
    (["--version", "1.4"], "--description"),
    (["--version", "1.4", "--description", "ok", "--tracking-uri", "http://127.0.0.1:5000"], "local SQLite store"),
    (["--version", "1.4", "--description", "ok", "--include", "../elsewhere"], "not inside the project"),
])
def test_bad_backup_input_is_one_line_exit_2_and_writes_nothing(here, run_main, flags, word) -> None:
    tmp_path = here
    (tmp_path / "mlruns").mkdir()
    sqlite3.connect(tmp_path / "mlruns" / "mlflow.db").close()
    code, _, err = run_main("backup", *flags, "--dest", "out")
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and word in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob("**/*.zip"))


@pytest.mark.slow
def test_an_existing_archive_is_never_overwritten(store, run_main, monkeypatch) -> None:
    before = (store.archive.stat().st_mtime_ns, _sha(store.archive))
    monkeypatch.chdir(store.orig)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    code, _, err = run_main("backup", "--version", "1.4", "--description", "post_training_stable", "--dest",
                            str(store.archive.parent))
    assert code == 2 and "already exists" in err and len(err.splitlines()) == 1
    assert (store.archive.stat().st_mtime_ns, _sha(store.archive)) == before
    assert [p.name for p in store.archive.parent.iterdir()] == [store.archive.name]  # no temporary left either


def _rewrite(source: Path, target: Path, change) -> None:
    """Copy a zip entry by entry, passing each (info, bytes) through ``change``."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = change(info, src.read(info))
            if data is not None:
                dst.writestr(info, data)


def _assert_nothing_written(parent: Path, into: Path) -> None:
    assert not into.exists()
    assert not [p for p in parent.iterdir() if p.name.startswith(f".{into.name}")]  # no temporary sibling


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["rewritten entry", "flipped byte"])
def test_a_damaged_archive_fails_verify_and_restore_refuses_it_writing_nothing(store, here, run_main, damage) -> None:
    tmp_path = here
    bad = tmp_path / "bad.zip"
    if damage == "rewritten entry":  # a checkpoint's bytes changed, the manifest left as it was
        def change(info, data):
            if info.filename.startswith("checkpoints/") and info.filename.endswith(".pt"):
                data = data[:100] + bytes([data[100] ^ 1]) + data[101:]
            return data
        _rewrite(store.archive, bad, change)
    else:  # bit rot inside a deflated entry on disk
        raw = bytearray(store.archive.read_bytes())
        with zipfile.ZipFile(store.archive) as zf:
            info = zf.getinfo("mlruns/mlflow.db")
        raw[info.header_offset + 200] ^= 0xFF
        bad.write_bytes(bytes(raw))
    code, _, err = run_main("backup", "--verify", str(bad))
    assert code == 2 and ("damaged" in err or "altered" in err)
    assert len(err.splitlines()) == 1
    into = tmp_path / "into"
    code, _, err = run_main("restore", str(bad), "--into", str(into))
    assert code == 2 and len(err.splitlines()) == 1
    _assert_nothing_written(tmp_path, into)


def _hostile(store, target: Path, name: str, *, link: bool = False) -> None:
    """The real archive plus one entry called ``name``, listed in the manifest with its right hash, last."""
    payload = b"/etc/passwd" if link else b"pwned\n"
    with zipfile.ZipFile(store.archive) as zf:
        manifest = json.loads(zf.read("manifest.json"))
    manifest["files"].append({"path": name, "sha256": hashlib.sha256(payload).hexdigest(), "size": len(payload)})

    def change(info, data):
        return json.dumps(manifest).encode() if info.filename == "manifest.json" else data
    _rewrite(store.archive, target, change)
    with zipfile.ZipFile(target, "a") as zf:
        info = zipfile.ZipInfo(name)
        if link:
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, payload)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["dotdot", "absolute", "symlink", "unlisted"])
def test_an_archive_escaping_its_folder_is_refused_before_anything_is_written(store, here, run_main, case) -> None:
    tmp_path = here
    evil_target = tmp_path / "evil"
    name = {"dotdot": "../evil", "absolute": str(evil_target), "symlink": "mlruns/link"}.get(case, "checkpoints/x")
    bad = tmp_path / "hostile.zip"
    _hostile(store, bad, name, link=case == "symlink")
    if case == "unlisted":  # an entry the manifest does not name
        with zipfile.ZipFile(bad, "a") as zf:
            zf.writestr("extra.txt", b"surprise")
    into = tmp_path / "into"
    with pytest.raises(BackupError, match="refused"):
        verify_backup(bad)
    code, _, err = run_main("restore", str(bad), "--into", str(into))
    assert code == 2 and "refused" in err and len(err.splitlines()) == 1
    _assert_nothing_written(tmp_path, into)
    assert not evil_target.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["hostile.zip"]
    into.mkdir()  # an existing empty folder stays empty
    with pytest.raises(BackupError):
        restore_backup(bad, into)
    assert not any(into.iterdir())


@pytest.mark.parametrize("name", ["../x", "/etc/x", "a/../../x", "C:/x", "a\\..\\x", "a//b", "./a", "dir/", ""])
def test_unsafe_entry_names_are_named_as_such(name) -> None:
    assert check_entry_name(name) is not None
    assert check_entry_name("mlruns/artifacts/abc/artifacts/model/MLmodel") is None


@pytest.mark.slow
def test_restore_into_a_non_empty_folder_is_refused_and_into_an_empty_one_works(store, here, run_main) -> None:
    tmp_path = here
    (tmp_path / "keep.txt").write_text("mine")
    code, _, err = run_main("restore", str(store.archive), "--into", str(tmp_path))
    assert code == 2 and "not empty" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    assert (tmp_path / "keep.txt").read_text() == "mine"
    empty = tmp_path / "empty"
    empty.mkdir()
    restored = restore_backup(store.archive, empty)
    assert restored.path == empty and (empty / "mlruns" / "mlflow.db").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "keep.txt"]  # no temporary sibling left


@pytest.mark.slow
def test_an_interrupted_backup_leaves_no_archive_and_no_temporary_files(store, tmp_path, monkeypatch) -> None:
    import btc_ai.desk.backup as backup
    from btc_ai.desk.backup import create as backup_create

    real, calls = backup_create._add_file, []

    def add_then_interrupt(zf, path, arcname):
        calls.append(arcname)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(zf, path, arcname)

    monkeypatch.setattr(backup_create, "_add_file", add_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        backup.create_backup("9", "interrupted", dest=tmp_path / "out", root=store.orig, tracking_uri=store.uri)
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.slow
def test_a_checkpoint_deleted_after_the_snapshot_is_archived_from_its_pinned_copy(store, tmp_path, monkeypatch) -> None:
    """Retention deleting a checkpoint between the database snapshot and the archive's writing (a training
    running meanwhile) must not leave the archive's database naming a checkpoint the archive lacks."""
    from btc_ai.desk.backup import create as backup_create

    project = restore_backup(store.archive, tmp_path / "project").path
    uri = f"sqlite:///{project / 'mlruns' / 'mlflow.db'}"
    checkpoints = sorted((project / "mlruns").rglob("checkpoints/gen-*.pt"))
    assert checkpoints
    real = backup_create._snapshot

    def snapshot_then_retention(database, target):
        real(database, target)
        for path in checkpoints:  # as retention would, after the snapshot recorded them
            path.unlink()

    monkeypatch.setattr(backup_create, "_snapshot", snapshot_then_retention)
    result = backup_create.create_backup("3", "retention", dest=tmp_path / "out", root=project, tracking_uri=uri)
    assert not result.warnings
    with zipfile.ZipFile(result.path) as zf:
        names = set(zf.namelist())
    assert {f"mlruns/{p.relative_to(project / 'mlruns').as_posix()}" for p in checkpoints} <= names


@pytest.mark.slow  # a fresh Python: what it loads
def test_the_backup_module_does_not_load_mlflow() -> None:
    code = "import sys, btc_ai.desk.backup, btc_ai.cli; print('mlflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


@pytest.mark.slow
def test_a_backup_taken_while_a_training_writes_is_consistent(tmp_path) -> None:
    live = tmp_path / "live"
    live.mkdir()
    flags = tiny_flags(EPISODES=2000)
    proc = subprocess.Popen(btc_ai_cmd("train", *flags), cwd=live, env=cli_env(live), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # well into the training: checkpoints and metrics are being committed
            if line.startswith("gen ") and int(line.split()[1].split("/")[0]) >= 30:
                break
        result = _run_cli(live, "backup", "--version", "2", "--description", "mid_training")
        assert proc.poll() is None, "the training ended before the backup was taken"
    finally:
        proc.kill()  # how the training ends does not matter here
        proc.communicate(timeout=120)
    assert result.returncode == 0, result.stderr
    (archive,) = (live / "backups").iterdir()
    checked = verify_backup(archive)
    assert [s["status"] for s in checked.sessions] == ["running"]
    restored = restore_backup(archive, tmp_path / "restored")
    with sqlite3.connect(restored.path / "mlruns" / "mlflow.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    client = MlflowClient(tracking_uri=restored.tracking_uri)
    session = client.get_run(checked.sessions[0]["run_id"])
    (attempt,) = client.search_runs([session.info.experiment_id], f"tags.`mlflow.parentRunId` = '{session.info.run_id}'")
    steps = [m.step for m in client.get_metric_history(attempt.info.run_id, "fitness/mean")]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) >= 2  # metrics committed with their checkpoints
    # every restored checkpoint the restored database records has the recorded sha256 (one still being copied
    # when the snapshot was taken is not recorded there, and a resume would not use it)
    folder = Path(attempt.info.artifact_uri.removeprefix("file://")) / "checkpoints"
    recorded = {p.name: attempt.data.tags.get(f"btc_ai.checkpoint.{p.stem}") for p in folder.iterdir()}
    assert any(recorded.values())
    assert all(_sha(folder / name) == sha for name, sha in recorded.items() if sha)
