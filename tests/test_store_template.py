"""A new local store from the template of this MLflow's stores: the same store MLflow's own initialisation
builds (schema, default experiment, usable through MLflow), and a template that is missing, damaged or of
another schema is never used but built again. Real SQLite files and MLflow."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
from pathlib import Path

import pytest

from btc_ai.tracking.mlflow_internals import adopt_new_store, head_revision
from btc_ai.tracking.store_template import template_path
from btc_ai.tracking.stores import ensure_store, probe


def _store(folder: Path) -> Path:
    ensure_store(f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}")
    return folder / "mlruns" / "mlflow.db"


def _dump(database: Path) -> list[list[str]]:
    """Every statement of the store as its sorted lines, all sorted (MLflow's own builds order some indexes and
    a table's constraints differently from one build to the next), its folder as ROOT, the default
    experiment's times aside."""
    with contextlib.closing(sqlite3.connect(database)) as db:
        db.execute("UPDATE experiments SET creation_time = 0, last_update_time = 0")  # never committed
        root = database.parent.resolve().as_uri()
        return sorted(sorted(part.strip().rstrip(",") for part in statement.replace(root, "ROOT").splitlines())
                      for statement in db.iterdump())


def _suite_template(folder: Path) -> Path:
    """The template of the suite's cache (`tests/conftest.py` gives the suite one), built by its first store."""
    _store(folder)
    template = template_path()
    assert template is not None and template.is_file()
    return template


def test_a_store_from_the_template_is_the_store_mlflow_builds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow import MlflowClient

    monkeypatch.delenv("BTC_AI_STORE_TEMPLATE", raising=False)
    _suite_template(tmp_path / "first")
    copied = _store(tmp_path / "copied")  # a copy of the template, made this folder's
    monkeypatch.setenv("BTC_AI_STORE_TEMPLATE", "off")
    monkeypatch.setenv("BTC_AI_CACHE_DIR", str(tmp_path / "cache"))
    assert template_path() is None
    built = _store(tmp_path / "built")  # MLflow's own build, for comparison; no template written
    assert not (tmp_path / "cache").exists()
    assert _dump(copied) == _dump(built)
    assert any("'ROOT/artifacts/0'" in line for lines in _dump(copied) for line in lines)
    client = MlflowClient(f"sqlite:///{copied}")
    default = client.get_experiment("0")
    assert default.artifact_location == (tmp_path / "copied" / "mlruns" / "artifacts" / "0").as_uri()
    assert default.creation_time > 0
    run = client.create_run(client.create_experiment("x"))
    client.log_metric(run.info.run_id, "m", 1.0)
    assert client.get_run(run.info.run_id).data.metrics == {"m": 1.0}


@pytest.mark.parametrize("damage", ["garbage", "another schema", "holds a run"])
def test_a_template_that_is_not_a_new_store_at_this_head_is_never_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                      damage: str) -> None:
    monkeypatch.delenv("BTC_AI_STORE_TEMPLATE", raising=False)
    template = tmp_path / "template.db"
    shutil.copyfile(_suite_template(tmp_path / "first"), template)
    if damage == "garbage":
        template.write_bytes(b"not a database" * 100)
    else:
        db = sqlite3.connect(template)
        with db:
            if damage == "another schema":
                db.execute("UPDATE alembic_version SET version_num = 'an0ther0head'")
            else:
                db.execute("INSERT INTO experiments (experiment_id, name, lifecycle_stage) VALUES (7, 'x', 'active')")
        db.close()
    assert not adopt_new_store(template, (tmp_path / "artifacts").as_uri())
    if damage == "garbage":  # the whole way once: built by MLflow instead, and the template written again
        monkeypatch.setenv("BTC_AI_CACHE_DIR", str(tmp_path / "cache"))
        cached = template_path()
        assert cached is not None
        cached.parent.mkdir(parents=True)
        shutil.copyfile(template, cached)
        store = _store(tmp_path / "second")
        found = probe(store)
        assert found.state == "whole" and found.revision == head_revision() and not found.holds_data
        assert not list(store.parent.glob(".mlflow.db.building-*"))
        fixed = probe(cached)
        assert fixed.state == "whole" and fixed.revision == head_revision() and not fixed.holds_data


@pytest.mark.slow  # a real `mlflow server`
def test_a_local_server_s_store_is_built_as_the_server_would_build_it(tmp_path: Path) -> None:
    from mlflow import MlflowClient
    from mlflow.utils.server_cli_utils import resolve_default_artifact_root

    from btc_ai.tracking.server import LocalMlflowServer

    with LocalMlflowServer(tmp_path / "server") as server:  # the store built before the server starts
        client = MlflowClient(server.url)
        expected = resolve_default_artifact_root(True, None, server.backend_store_uri()).rstrip("/") + "/0"
        assert client.get_experiment("0").artifact_location == expected == "mlflow-artifacts:/0"
        run = client.create_run("0")
        (tmp_path / "a.txt").write_text("x")
        client.log_artifact(run.info.run_id, str(tmp_path / "a.txt"))  # through the server's proxy
    assert (tmp_path / "server" / "artifacts" / "0" / run.info.run_id / "artifacts" / "a.txt").read_text() == "x"
