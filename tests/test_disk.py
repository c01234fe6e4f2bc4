"""A checkpoint write that fails for real (the file-size limit of a full disk) leaves the previous
checkpoint intact and readable, leaves no temporary file, and is classified per the table."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import ROOT, TINY

from btc_ai.training.checkpoint import load_checkpoint

SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
from btc_ai.domain.synthetic import synthetic_candles
from btc_ai.training import train_model
from btc_ai.recovery.classify import classify
config = dict(json.loads(sys.argv[1]))
try:
    train_model(config, synthetic_candles(6048, seed=3), sys.argv[2])
except BaseException as exc:
    verdict = classify(exc)
    print(json.dumps({{"type": type(exc).__name__, "message": str(exc), "recoverable": verdict.recoverable}}))
"""


def _limit_file_size(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@pytest.mark.slow
def test_a_failed_checkpoint_write_keeps_the_previous_one(tmp_path) -> None:
    # generation 1's checkpoint has no best policy yet; generation 2's (after the first validation) is
    # larger: a file-size limit between the two lets the first write succeed and the second fail
    config = {**TINY, "MIN_CHECKPOINT_INTERVAL": 1, "EVAL_INTERVAL": 2}
    probe = tmp_path / "probe"
    subprocess.run([sys.executable, "-c", SCRIPT.format(tests=str(ROOT / "tests")), json.dumps({**config, "EPISODES": 2}),
                    str(probe)], check=True, capture_output=True)
    small, large = (probe / "gen-000001.pt").stat().st_size, (probe / "gen-000002.pt").stat().st_size
    assert small < large

    folder = tmp_path / "ck"
    result = subprocess.run([sys.executable, "-c", SCRIPT.format(tests=str(ROOT / "tests")), json.dumps(config),
                             str(folder)], capture_output=True, text=True, preexec_fn=_limit_file_size((small + large) // 2))
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["type"] == "OSError" and outcome["recoverable"] is False  # errno 27, File too large
    assert str(folder) in outcome["message"] and "gen-000002.pt" in outcome["message"]
    assert sorted(p.name for p in folder.iterdir()) == ["gen-000001.pt"]  # no half-written file, no temp file
    assert load_checkpoint(folder / "gen-000001.pt").generation == 1
    assert Path(folder / "gen-000001.pt").stat().st_size == small


PACED = SCRIPT.replace("train_model(config,", "inject_fault(train_model, 'Slow@2')(config,").replace(
    "from btc_ai.training import train_model", "from btc_ai.training import train_model\nfrom btc_ai.training.faults import inject_fault")


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root (to run the training as another user) and setpriv")
@pytest.mark.slow
def test_a_folder_that_becomes_unwritable_keeps_the_previous_checkpoint_and_is_unrecoverable() -> None:
    """Permission denied for real: the training runs as `nobody` (root ignores file modes), and its checkpoint
    folder is made read-only once the first checkpoint is there."""
    work = Path(tempfile.mkdtemp(prefix="btc-ai-perm-"))  # not under pytest's tmp_path: that is private to root
    try:
        work.chmod(0o777)
        folder = work / "ck"
        folder.mkdir()
        os.chown(folder, 65534, 65534)
        config = {**TINY, "MIN_CHECKPOINT_INTERVAL": 1, "EPISODES": 8}
        env = {**os.environ, "HOME": str(work), "PYTHONDONTWRITEBYTECODE": "1"}
        proc = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
                                 PACED.format(tests=str(ROOT / "tests")), json.dumps(config), str(folder)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=work)
        first = folder / "gen-000001.pt"
        deadline = time.monotonic() + 120
        while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        folder.chmod(0o555)  # generation 2 is 0.1 s away (Slow@2)
        out, err = proc.communicate(timeout=120)
        outcome = json.loads(out.strip().splitlines()[-1])
        assert outcome["type"] == "PermissionError" and outcome["recoverable"] is False, err
        assert str(folder) in outcome["message"] and "gen-000002.pt" in outcome["message"]  # names the folder
        assert sorted(p.name for p in folder.iterdir()) == ["gen-000001.pt"]
        assert load_checkpoint(first).generation == 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
