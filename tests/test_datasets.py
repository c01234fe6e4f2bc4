"""The data of every session, fold, walk-forward and backtest as MLflow dataset inputs: one per span, its
context the span's role, its digest `span_digest` of the data fingerprint and the span, searchable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import session_runs, store_uri, tiny_flags, write_binance_csv

from btc_ai.domain.data import data_fingerprint, load_candles
from btc_ai.tracking.run_model import DataSpan, span_digest


def _inputs(uri: str, run_id: str) -> dict[str, tuple]:
    """context -> (dataset, profile) of a run's dataset inputs; fails on two inputs with one context."""
    from mlflow import MlflowClient

    found: dict[str, tuple] = {}
    for item in MlflowClient(uri).get_run(run_id).inputs.dataset_inputs:
        (context,) = [t.value for t in item.tags if t.key == "mlflow.data.context"]
        assert context not in found, f"two inputs with context {context}"
        found[context] = (item.dataset, json.loads(item.dataset.profile))
    return found


def _span_label(profile: dict) -> str:
    """A profile's span the way the btc_ai.test_span and btc_ai.backtest_span tags write it."""
    import pandas as pd

    return f"{pd.Timestamp(profile['start']):%Y-%m-%d %H:%M} .. {pd.Timestamp(profile['end']):%Y-%m-%d %H:%M} UTC"


def _check_digests(inputs: dict[str, tuple], fingerprint: str) -> None:
    for context, (dataset, profile) in inputs.items():
        assert profile["data_fingerprint"] == fingerprint
        span = DataSpan(context, profile["start"], profile["end"], profile["bars"])
        assert dataset.digest == span_digest(fingerprint, span) and len(dataset.digest) == 36
        assert "mlflow_colspec" in json.loads(dataset.schema)  # the schema, never the candles


@pytest.mark.slow
def test_a_session_its_resume_and_a_backtest_log_their_data_as_inputs(here, run_main, candles) -> None:
    from mlflow import MlflowClient

    data = here / "data"
    data.mkdir()
    write_binance_csv(data / "BTCUSDT-5m-2024-01.csv", candles.iloc[:3000])
    write_binance_csv(data / "BTCUSDT-5m-2024-02.csv", candles.iloc[3000:])
    code, _, err = run_main("train", "--data_path", "data", "--quiet", *tiny_flags())
    assert code == 0, err
    uri = store_uri(here)
    (session,) = session_runs(uri)
    loaded, report = load_candles(data)
    fingerprint = data_fingerprint(loaded)
    inputs = _inputs(uri, session.info.run_id)
    assert sorted(inputs) == ["test", "train", "validation"]
    _check_digests(inputs, fingerprint)
    train, validation, test = (inputs[c][1] for c in ("train", "validation", "test"))
    assert train["end"] < validation["start"] <= validation["end"] < test["start"]
    assert _span_label(test) == session.data.tags["btc_ai.test_span"]
    dataset = inputs["test"][0]
    assert dataset.name == "BTCUSDT-5m" and json.loads(dataset.source) == {"uri": str(data)}
    assert test["files_sha256"] == report.files_sha256 and len(test["files"]) == 2

    client = MlflowClient(uri)
    found = client.search_runs([session.info.experiment_id], f"dataset.digest = '{dataset.digest}'")
    assert [r.info.run_id for r in found] == [session.info.run_id]
    found = client.search_runs([session.info.experiment_id], "dataset.name = 'BTCUSDT-5m' AND dataset.context = 'test'")
    assert [r.info.run_id for r in found] == [session.info.run_id]
    (attempt,) = client.search_runs([session.info.experiment_id], "tags.`btc_ai.kind` = 'attempt'")
    assert attempt.data.tags["btc_ai.data_fingerprint"] == fingerprint  # what the digests derive from

    # a resume trains a new attempt on the same spans: the same inputs, none twice (_inputs checks)
    code, _, err = run_main("resume", session.info.run_id, "--episodes", "8", "--quiet")
    assert code == 0, err
    assert len(client.search_runs([session.info.experiment_id], "tags.`btc_ai.kind` = 'attempt'")) == 2
    assert _inputs(uri, session.info.run_id) == inputs

    code, out, err = run_main("backtest", "models:/btc-ai-scalping/latest", "data/BTCUSDT-5m-2024-02.csv", "--json")
    assert code == 0, err
    (run,) = client.search_runs([session.info.experiment_id], "tags.`btc_ai.kind` = 'backtest'")
    inputs = _inputs(uri, run.info.run_id)
    assert list(inputs) == ["backtest"]
    _check_digests(inputs, data_fingerprint(load_candles(data / "BTCUSDT-5m-2024-02.csv")[0]))
    dataset, profile = inputs["backtest"]
    assert dataset.name == "BTCUSDT-5m-2024-02.csv" and profile["bars"] == json.loads(out)["bars"]
    assert _span_label(profile) == run.data.tags["btc_ai.backtest_span"]


@pytest.mark.slow
def test_a_walk_forward_and_each_fold_session_log_their_data(here, run_main, candles) -> None:
    from mlflow import MlflowClient

    path = write_binance_csv(here / "c.csv", candles)
    code, _, err = run_main("walk-forward", str(path), "--folds", "2", "--quiet", *tiny_flags())
    assert code == 0, err
    uri = store_uri(here)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("btc-ai").experiment_id
    (parent,) = client.search_runs([experiment], "tags.`btc_ai.kind` = 'walk_forward'")
    fingerprint = data_fingerprint(load_candles(path)[0])
    inputs = _inputs(uri, parent.info.run_id)
    assert list(inputs) == ["walk_forward"] and inputs["walk_forward"][0].name == "c.csv"
    assert inputs["walk_forward"][1]["bars"] == len(candles)
    _check_digests(inputs, fingerprint)
    files = inputs["walk_forward"][1]["files"]
    assert [f["path"] for f in files] == [str(path)] and len(files[0]["sha256"]) == 64
    folds = session_runs(uri)
    assert len(folds) == 2
    tests = set()
    for fold in folds:
        inputs = _inputs(uri, fold.info.run_id)
        assert sorted(inputs) == ["test", "train", "validation"]
        assert _span_label(inputs["test"][1]) == fold.data.tags["btc_ai.test_span"]
        tests.add(inputs["test"][0].digest)
        # named by the walk-forward's file, not "dataframe"; the digests of the fold's own slice of it
        for dataset, profile in inputs.values():
            assert dataset.name == "c.csv" and json.loads(dataset.source) == {"uri": str(path)}
            assert profile["files"] == files
        (attempt,) = client.search_runs([experiment], "tags.`btc_ai.kind` = 'attempt' AND "
                                        f"tags.`mlflow.parentRunId` = '{fold.info.run_id}'")
        _check_digests(inputs, attempt.data.tags["btc_ai.data_fingerprint"])
    assert len(tests) == 2  # each fold its own test span, its own dataset


@pytest.mark.slow
def test_inputs_logged_while_the_server_is_down_wait_in_the_journal(tmp_path: Path, monkeypatch) -> None:
    """Dataset inputs are written like every other write: journaled in an outage, replayed once it ends, and
    a replay of inputs already there (a process killed after the store applied them) adds none."""
    from mlflow import MlflowClient

    from btc_ai.tracking.run_model import DataInputs, RunModel
    from btc_ai.tracking.server import LocalMlflowServer
    from btc_ai.tracking.tracker import Tracker

    monkeypatch.setenv("BTC_AI_JOURNAL_DIR", str(tmp_path / "journal"))
    server = LocalMlflowServer(tmp_path / "server")
    server.start()
    try:
        tracker = Tracker(server.url, experiment="inputs")
        run_id = tracker.create_run("backtest")
        spans = [DataSpan("backtest", "2024-01-01T00:00:00+00:00", "2024-01-31T23:55:00+00:00", 8928)]
        data = DataInputs("builtin:default", "f" * 64)
        server.stop()
        RunModel(tracker).log_data_inputs(run_id, data, spans)
        assert tracker.offline and tracker.pending() == 1
        server.start()
        tracker.replay(wait=True)
        assert tracker.pending() == 0 and not tracker.offline
        RunModel(tracker).log_data_inputs(run_id, data, spans)  # again: nothing added
        tracker.close()
        (item,) = MlflowClient(server.url).get_run(run_id).inputs.dataset_inputs
        assert item.dataset.digest == span_digest("f" * 64, spans[0]) and item.dataset.name == "builtin"
        assert [(t.key, t.value) for t in item.tags] == [("mlflow.data.context", "backtest")]
    finally:
        server.stop()
