"""`btc-ai backup --dest DIR` and `btc-ai restore ZIP --into DIR` where the user may not write DIR (or the
folder it would be made in): one line naming the folder and the fix, exit 2, nothing created. Run as
`nobody` (tests run as root here, and root ignores file modes), against a real store."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import btc_ai_cmd, store_uri

pytestmark = pytest.mark.slow  # each case is a `btc-ai` process
_SETPRIV = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.fixture(scope="module")
def project() -> Iterator[Path]:
    """A project folder with a real store and its backup, readable but not writable by `nobody`, and an empty
    folder of nobody's own to run from. One for the module: every case is refused and checks it left the
    project as it found it."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run btc-ai as nobody")
    from btc_ai.desk.backup import create_backup
    from btc_ai.tracking.run_model import KIND_SESSION
    from btc_ai.tracking.tracker import Tracker

    base = Path(tempfile.mkdtemp(prefix="btc-ai-backup-perm-"))  # not under tmp_path: private to root
    try:
        base.chmod(0o755)
        tracker = Tracker(store_uri(base))
        tracker.end_run(tracker.create_run(KIND_SESSION, name="a session"), "FINISHED")
        create_backup("1", "before", dest=base / "backups", root=base)
        own = base / "own"
        own.mkdir()
        shutil.chown(own, "nobody")
        for path in [base, *base.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o055)  # readable (and folders enterable) by nobody
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _as_nobody(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(HOME=str(cwd), PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([*_SETPRIV, *btc_ai_cmd(*args)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("case", ["default dest", "dest inside", "restore into", "restore below"])
def test_an_unwritable_destination_is_one_line_exit_2_and_nothing_is_created(project: Path, case: str) -> None:
    (archive,) = (project / "backups").iterdir()
    store = f"sqlite:///{project / 'mlruns' / 'mlflow.db'}"
    backup = ["backup", "--version", "2", "--description", "denied", "--tracking-uri", store]
    cwd, args, folder, flag = {
        "default dest": (project, backup, project, "--dest"),  # backups/ of a project this user may only read
        "dest inside": (project / "own", [*backup, "--dest", str(project / "new" / "backups")], project, "--dest"),
        "restore into": (project / "own", ["restore", str(archive), "--into", str(project / "restored")], project,
                         "--into"),
        "restore below": (project / "own", ["restore", str(archive), "--into", str(project / "a" / "b")], project,
                          "--into"),
    }[case]
    before = _tree(project)
    done = _as_nobody(cwd, *args)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("btc-ai: error: "), done.stderr
    assert "read-only" in lines[0] and flag in lines[0], lines[0]
    assert (str(folder) in lines[0]) or ("working folder" in lines[0] and cwd == folder), lines[0]
    assert _tree(project) == before, "a refused command created files"
