"""The run model's two readers of a local store, MLflow's client and sqlite3 (`LocalRunModel`, for fast
reports), give the same records; and the records say what the store holds."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest
from session_record import reference_training

from btc_ai.domain.errors import ResumeError
from btc_ai.tracking.run_model import METRIC_FITNESS_MEAN, RunModel
from btc_ai.tracking.run_model.local import LocalRunModel, open_run_model
from btc_ai.tracking.stores import sqlite_file
from btc_ai.tracking.tracker import Tracker

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("run_model")]  # one real training, in one test process


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[str, str]:
    return reference_training(tmp_path_factory.mktemp("store"))


def test_sqlite_and_mlflow_readers_give_the_same_records(trained) -> None:
    uri, session_id = trained
    local = open_run_model(uri)
    assert isinstance(local, LocalRunModel)
    remote = RunModel(Tracker(uri, experiment="record"))
    for ref in (session_id, "models:/btc-ai-scalping/1", "models:/btc-ai-scalping@latest", "models:/btc-ai-scalping/latest"):
        assert local.resolve_session(ref) == remote.resolve_session(ref)
    session = remote.session(session_id)
    assert local.session(session_id) == session
    attempts = remote.attempts(session)
    assert [a.outcome for a in attempts] == ["recoverable_error", "success"]
    assert local.attempts(session) == attempts == local.attempts(session_id)
    assert local.repairs(session) == remote.repairs(session)
    assert [r.rule for r in remote.repairs(session)] == ["clamp_offending_value"]
    assert local.checkpoints(attempts) == remote.checkpoints(attempts)
    assert {c.artifact_path for c in remote.checkpoints(attempts)} >= {"checkpoints/gen-000006.pt"}
    for attempt in attempts:
        assert local.metric_history(attempt.run_id, METRIC_FITNESS_MEAN) == \
            remote.metric_history(attempt.run_id, METRIC_FITNESS_MEAN)
        assert local.latest_metrics(attempt.run_id) == remote.latest_metrics(attempt.run_id)
        assert local.artifact_paths(attempt.run_id) == sorted(remote.artifact_paths(attempt.run_id))
    assert local.has_model(session_id) and remote.has_model(session_id)


def test_both_readers_refuse_an_unknown_reference_as_a_user_mistake(trained) -> None:
    uri, _ = trained
    for runs in (open_run_model(uri), RunModel(Tracker(uri))):
        for ref in ("0123456789abcdef0123456789abcdef", "models:/btc-ai-swing/9", "models:/nope"):
            with pytest.raises(ResumeError):
                runs.resolve_session(ref)


# schema drift the fast reader cannot read, and MLflow (reading the store itself) does not see: a column renamed
# (sqlite3.OperationalError) and a value of another type (TypeError when the history is sorted)
DRIFTS = {"a renamed column": "ALTER TABLE latest_metrics RENAME COLUMN is_nan TO nan_flag",
          "a value of another type": "UPDATE metrics SET step = 'one' WHERE rowid = (SELECT MIN(rowid) FROM metrics "
                                     f"WHERE key = '{METRIC_FITNESS_MEAN}')"}


@pytest.mark.parametrize("drift", DRIFTS.values(), ids=DRIFTS.keys())
def test_a_schema_the_fast_reader_does_not_know_is_read_through_mlflow_with_one_warning(
        trained, tmp_path: Path, caplog: pytest.LogCaptureFixture, drift: str) -> None:
    uri, session_id = trained
    drifted = tmp_path / "drifted.db"
    with sqlite3.connect(sqlite_file(uri)) as source, sqlite3.connect(drifted) as copy:
        source.backup(copy)
        copy.execute(drift)
    local = LocalRunModel(uri, drifted)  # sqlite3 reads the drifted copy; its MLflow fallback, the store itself
    remote = RunModel(Tracker(uri, experiment="record"))
    session = remote.session(session_id)
    with caplog.at_level(logging.WARNING, logger="btc_ai.tracking.run_model.local"):
        assert local.session(session_id) == session
        attempts = local.attempts(session)
        assert attempts == remote.attempts(session) and len(attempts) == 2
        for attempt in attempts:
            assert local.metric_history(attempt.run_id, METRIC_FITNESS_MEAN) == \
                remote.metric_history(attempt.run_id, METRIC_FITNESS_MEAN)
            assert local.latest_metrics(attempt.run_id) == remote.latest_metrics(attempt.run_id)
    warned = [r.getMessage() for r in caplog.records if r.name == "btc_ai.tracking.run_model.local"]
    assert len(warned) == 1 and str(drifted) in warned[0] and "reading through MLflow" in warned[0], warned
