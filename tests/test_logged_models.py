"""MLflow 3 logged models: each distinct best policy is one logged model of its session run, found by
`mlflow.search_logged_models` with its evaluation figures, params and tags; its version's source is
``models:/<model_id>``; an unchanged policy logs nothing; a model's files never change once logged; the write
is journaled through an outage and a replay of it adds nothing twice. Runs carry MLflow's context tags."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

import mlflow
import pytest
from conftest import TINY
from mlflow import MlflowClient

from btc_ai.domain.config import TrainingConfig
from btc_ai.domain.policy import PolicyNet
from btc_ai.domain.policy_files import PolicyCard, save_policy
from btc_ai.domain.synthetic import synthetic_candles
from btc_ai.tracking.logged_model import log_and_register, session_models
from btc_ai.tracking.registry import log_model_version
from btc_ai.tracking.tracker import Tracker
from btc_ai.training.loop import params_sha256

NAME = "btc-ai-scalping"
CONFIG = {**TINY, "BUCKET": "Scalping"}
FIGURES = {"validation/sharpe": 1.2, "test/total_return": 0.031, "test/sharpe": 1.5,
           "baseline/sma_cross/total_return": 0.01}


def _policy(seed: int) -> tuple[PolicyNet, PolicyCard]:
    config = TrainingConfig.from_dict(CONFIG)
    card = PolicyCard.of(config)
    net = PolicyNet(card.spec, card.feature_names).load_flat(card.spec.init_params(seed))
    return net, PolicyCard.of(config, params_sha256(net.flat_params()))


def _log(tracker: Tracker, run: str, seed: int, previous: dict | None = None, **kw):
    net, card = _policy(seed)
    return log_model_version(tracker, run, net, card, name=NAME, tags={"btc_ai.bucket": "Scalping"}, description="d",
                             champion=True, verdict="passed", previous=previous or {}, metrics=FIGURES, step=6,
                             params={"LEARNING_RATE": 0.05}, **kw)


def _files(client: MlflowClient, model_id: str) -> dict[str, str]:
    """sha256 of every file of a logged model, on disk."""
    root = Path(unquote(urlparse(client.get_logged_model(model_id).artifact_location).path))
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_each_distinct_best_policy_is_one_logged_model_with_its_figures(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, experiment="models")
    client = MlflowClient(uri, registry_uri=uri)
    run = tracker.create_run("session", name="s")
    first = _log(tracker, run, seed=1)
    assert first.new and first.model_id and first.path == f"models:/{first.model_id}"
    before = _files(client, first.model_id)
    assert "artifacts/policy/policy.safetensors" in before and "input_example.json" in before
    # the same parameters again: as the session's newest (resume) and as an earlier version of it: nothing new
    card = _policy(1)[1]
    same = _log(tracker, run, seed=1, previous={"btc_ai.model_params_sha256": card.params_sha256,
                                                "btc_ai.model_version": "1"})
    assert not same.new and same.version == "1"
    assert not _log(tracker, run, seed=1).new
    second = _log(tracker, run, seed=2)
    assert second.new and second.version == "2" and second.model_id != first.model_id

    models = session_models(client, tracker.experiment_id, run)
    assert [m.model_id for m in models] == [first.model_id, second.model_id]  # one per distinct policy
    for model, seed in zip(models, (1, 2), strict=True):
        assert model.status == "READY" and model.source_run_id == run
        assert {m.key: m.value for m in model.metrics} == FIGURES and {m.step for m in model.metrics} == {6}
        assert model.params["params_sha256"] == _policy(seed)[1].params_sha256
        assert model.params["LEARNING_RATE"] == "0.05" and model.tags["btc_ai.bucket"] == "Scalping"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # for the fluent API (and undone after the test)
    found = mlflow.search_logged_models(experiment_ids=[tracker.experiment_id], output_format="list",
                                        filter_string="metrics.`test/sharpe` > 1")
    assert {m.model_id for m in found} == {first.model_id, second.model_id}
    for registration in (first, second):
        version = client.get_model_version(NAME, registration.version)
        assert version.source == f"models:/{registration.model_id}"
        assert version.tags["btc_ai.model_id"] == registration.model_id
        model = client.get_logged_model(registration.model_id)  # the model's page names its version
        assert json.loads(model.tags["mlflow.modelVersions"]) == [{"name": NAME, "version": registration.version}]
        assert model.tags["mlflow.note.content"] == "d"
    tags = client.get_run(run).data.tags
    assert tags["btc_ai.model_id"] == second.model_id and tags["btc_ai.model_path"] == second.path
    assert sorted(o.model_id for o in client.get_run(run).outputs.model_outputs) == sorted([first.model_id, second.model_id])
    assert _files(client, first.model_id) == before  # the first model's bytes, as they were
    # the registered model and the logged model are the same model: candles in, the same positions out
    candles = synthetic_candles(600).reset_index()
    by_version = mlflow.pyfunc.load_model(f"models:/{NAME}/1").predict(candles)
    assert by_version.equals(mlflow.pyfunc.load_model(first.path).predict(candles))


def test_a_logged_model_is_journaled_through_an_outage_and_a_replay_adds_nothing_twice(tmp_path: Path,
                                                                                        monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    store_dir = tmp_path / "store"
    store_dir.mkdir()
    uri = f"sqlite:///{store_dir / 'mlflow.db'}"
    tracker = Tracker(uri, experiment="models")
    run = tracker.create_run("session", name="s")
    tracker.client.search_registered_models()  # MLflow opens the registry's store on first use
    for store in (tracker.client._tracking_client.store, tracker.client._get_registry_client().store):
        store.engine.dispose()  # drop pooled connections to the file
    store_dir.rename(tmp_path / "away")  # "unable to open database file"
    journaled = _log(tracker, run, seed=1)
    assert tracker.offline and journaled.new and journaled.version is None
    assert tracker.pending() == 2  # the figures on the run, then the model
    (tmp_path / "away").rename(store_dir)
    deadline = time.monotonic() + 60  # the background replayer notices by itself
    while tracker.offline and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not tracker.offline
    tracker.close()
    client = MlflowClient(uri, registry_uri=uri)
    (model,) = session_models(client, tracker.experiment_id, run)
    assert {m.key for m in model.metrics} == set(FIGURES)
    assert client.get_model_version(NAME, "1").source == f"models:/{model.model_id}"
    assert client.get_run(run).data.tags["btc_ai.model_id"] == model.model_id

    # the same entry applied again (a process killed after the store took it, before the journal knew)
    net, card = _policy(3)
    args = {"name": NAME, "params_sha256": card.params_sha256, "description": "d", "aliases": [],
            "tags": {"mlflow.btc_ai.client_key": "v-key"}, "model_name": "policy-x",
            "model_tags": {"mlflow.btc_ai.client_key": "m-key"}, "model_params": {"a": "1"},
            "metrics": [["test/sharpe", 0.5, 1, 6]], "step": 6,
            "policy": str(save_policy(net, card, tmp_path / "policy"))}
    once = log_and_register(client, uri, run, args)
    assert log_and_register(client, uri, run, args) == once
    models = session_models(client, tracker.experiment_id, run)
    assert len(models) == 2 and len(client.search_model_versions(f"name = '{NAME}'")) == 2
    assert [(m.key, m.value) for m in client.get_logged_model(once["model_id"]).metrics] == [("test/sharpe", 0.5)]
    assert len(client.get_run(run).outputs.model_outputs) == 2


@pytest.mark.parametrize("login", [None, "alice"])
def test_client_created_runs_carry_mlflows_context_tags(tmp_path: Path, monkeypatch, login) -> None:
    import getpass

    monkeypatch.chdir(tmp_path)
    if login:  # what a team server's login sets (btc_ai.tracking.paths moves a URI's login there)
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", login)
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="context")
    named = tracker.create_run("session", name="Scalping-seed1")
    unnamed = tracker.create_run("attempt", parent=named)
    for run_id in (named, unnamed):
        tags = tracker.client.get_run(run_id).data.tags
        assert tags["mlflow.user"] == (login or getpass.getuser())
        assert tags["mlflow.source.type"] == "LOCAL" and tags["mlflow.source.name"]
        assert tags["mlflow.runName"]
    assert tracker.client.get_run(named).data.tags["mlflow.runName"] == "Scalping-seed1"


def test_a_login_of_an_earlier_run_in_this_process_is_not_the_user_of_a_later_one(tmp_path: Path, monkeypatch) -> None:
    """The context tags are resolved once a process; the user is not (a notebook that logs in, then out)."""
    import getpass

    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="context")
    for login in ("alice", None, "bob"):
        if login:
            monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", login)
        else:
            monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
        run = tracker.create_run("session", name=f"as-{login}")
        assert tracker.client.get_run(run).data.tags["mlflow.user"] == (login or getpass.getuser())


@pytest.mark.slow  # a fresh process
def test_a_run_started_from_a_git_checkout_carries_its_commit(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    repo = tmp_path / "repo"
    repo.mkdir()
    script = repo / "train.py"
    script.write_text("import sys\nfrom btc_ai.tracking.tracker import Tracker\n"
                      "t = Tracker(sys.argv[1], experiment='context')\nprint(t.create_run('session', name='s'))\n")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    for args in (["init", "-q"], ["add", "train.py"], ["commit", "-qm", "train"]):
        subprocess.run([*git, *args], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    done = subprocess.run([sys.executable, str(script), uri], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    tags = MlflowClient(uri).get_run(done.stdout.split()[-1]).data.tags
    assert tags["mlflow.source.git.commit"] == head and tags["mlflow.source.name"] == str(script)
