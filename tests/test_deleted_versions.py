"""A model URI whose version was deleted in the MLflow UI: named as that version, one line, exit 2 (MLflow
keeps the deleted version's row with its run ID redacted, which must not surface as a missing run).
Real SQLite stores under tmp_path; the sqlite3 reader and the MLflow reader give the same line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import store_uri

from btc_ai.domain.errors import ResumeError

Run = Callable[..., tuple[int, str, str]]
NAME = "btc-ai-scalping"


def _versions(folder: Path, count: int) -> tuple[str, list[str]]:
    """A session run and ``count`` registered versions of NAME made from it (the registry, no training)."""
    from mlflow import MlflowClient

    from btc_ai.tracking.run_model import KIND_SESSION
    from btc_ai.tracking.tracker import Tracker

    tracker = Tracker(store_uri(folder))
    session = tracker.create_run(KIND_SESSION, name="a session")
    tracker.end_run(session, "FINISHED")
    client = MlflowClient(store_uri(folder), registry_uri=store_uri(folder))
    client.create_registered_model(NAME)
    versions = [client.create_model_version(NAME, f"runs:/{session}/model", run_id=session).version
                for _ in range(count)]
    return session, versions


@pytest.mark.parametrize("command", ["resume", "report"])
def test_a_deleted_version_is_named_not_its_redacted_run(run_main: Run, here: Path, command: str) -> None:
    from mlflow import MlflowClient

    session, _ = _versions(here, 2)
    MlflowClient(store_uri(here), registry_uri=store_uri(here)).delete_model_version(NAME, "2")
    code, _, err = run_main(command, f"models:/{NAME}/2")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, (code, err)
    assert f"model version {NAME}/2 does not exist (deleted?)" in lines[0] and "REDACTED" not in lines[0], lines[0]
    code, out, err = run_main("report", f"models:/{NAME}/latest")  # the newest version left: 1
    assert code == 0 and session in out, err


def test_both_readers_name_a_deleted_version_alike(here: Path) -> None:
    from mlflow import MlflowClient

    from btc_ai.tracking.run_model import RunModel
    from btc_ai.tracking.run_model.local import open_run_model
    from btc_ai.tracking.tracker import Tracker

    _versions(here, 1)
    MlflowClient(store_uri(here), registry_uri=store_uri(here)).delete_model_version(NAME, "1")
    said = []
    for runs in (open_run_model(store_uri(here)), RunModel(Tracker(store_uri(here)))):
        for ref in (f"models:/{NAME}/1", f"models:/{NAME}/latest"):
            with pytest.raises(ResumeError) as caught:
                runs.resolve_session(ref)
            assert "deleted?" in str(caught.value) and "REDACTED" not in str(caught.value), str(caught.value)
            said.append(str(caught.value))
    assert said[:2] == said[2:]
