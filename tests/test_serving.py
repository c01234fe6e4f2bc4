"""`mlflow models serve` of a registered version and of its alias, on 127.0.0.1, started the way `make serve`
starts it (the venv's bin first on PATH, even when the caller's PATH lacks it): /ping answers, and candles
sent to /invocations come back as the positions `mlflow.pyfunc.load_model(...).predict` gives."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from test_logged_models import _log

from btc_ai.domain.synthetic import synthetic_candles
from btc_ai.tracking.serving import ModelServer, main, serve_environment
from btc_ai.tracking.tracker import Tracker

NAME = "btc-ai-scalping"


def test_serving_puts_the_interpreters_bin_first_on_path_and_refuses_a_bad_model_uri(capsys) -> None:
    env = serve_environment("sqlite:///x.db", base={"PATH": "/usr/bin:/bin"})
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)  # where uvicorn is
    assert env["MLFLOW_TRACKING_URI"] == "sqlite:///x.db"
    with pytest.raises(SystemExit) as exited:
        main(["btc-ai-scalping"])
    assert exited.value.code == 2 and "MODEL=models:/btc-ai-scalping@champion" in capsys.readouterr().err


@pytest.mark.slow
def test_a_version_and_the_champion_alias_serve_what_pyfunc_predicts(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, experiment="serve")
    _log(tracker, tracker.create_run("session", name="s"), seed=1)  # version 1, @champion
    candles = synthetic_candles(1500).reset_index()
    candles["timestamp"] = candles["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    # a caller whose PATH lacks the venv (`.venv/bin/mlflow` called by its path): uvicorn is found all the same
    bare = {**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}, "PATH": "/usr/bin:/bin"}
    servers = [ModelServer(f"models:/{NAME}/1", uri, tmp_path / "v1.log", base_env=bare),
               ModelServer(f"models:/{NAME}@champion", uri, tmp_path / "champion.log", base_env=bare)]
    try:
        for server in servers:  # both start together: a start-up costs seconds
            server.start_process()
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # for the fluent API (and undone after the test)
        for server in servers:
            server.wait(timeout=180)
            expected = mlflow.pyfunc.load_model(server.model_uri).predict(candles)
            served = server.invoke(candles)
            pd.testing.assert_frame_equal(served, expected, check_dtype=False)
            assert served["ready"].sum() > 0 and set(served["position"]) <= {-1, 0, 1}
    finally:
        for server in servers:
            server.stop()
    assert all(server.proc is None for server in servers)
