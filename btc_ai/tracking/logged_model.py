"""A best policy as an MLflow 3 logged model: logged from the session run with `mlflow.pyfunc.log_model`
(models from code, safetensors weights, signature, an input example of candles), its evaluation figures
logged with its ``model_id`` (they show on the model's page and in `mlflow.search_logged_models`), then
registered as a version whose source is ``models:/<model_id>``.

One journaled write (``log_model``): the policy files travel with it, so a model trained during an outage is
logged when the store is back. Each step finds what an earlier, cut-short try of the same entry did (the
logged model by its client key, the run's output link, the model's metrics, the version by its client key),
so a replay adds nothing twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import mlflow
from mlflow.entities import LoggedModelOutput, LoggedModelStatus, Metric
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

from btc_ai.tracking.candle_model import (
    DESCRIPTION,
    ENTRY,
    POLICY_ARTIFACT,
    REQUIREMENTS,
    SIGNATURE,
    input_example,
)
from btc_ai.tracking.mlflow_internals import requirements_map_of
from btc_ai.tracking.run_model.names import (
    TAG_CLIENT_KEY,
    TAG_MODEL_ID,
    TAG_MODEL_PARAMS,
    TAG_MODEL_PATH,
    TAG_MODEL_VERSION,
    VERSION_TAG_PARAMS,
    client_key,
)

MODEL_TYPE = "btc-ai-policy"


def model_uri(model_id: str) -> str:
    return f"models:/{model_id}"


def model_id_of(path: str | None) -> str | None:
    """The model ID a session's model path names (``models:/<model_id>``); None for an older session's run
    folder (``models/<sha>``)."""
    return path.removeprefix("models:/") if path and path.startswith("models:/") else None


@contextlib.contextmanager
def fluent_uri(uri: str) -> Iterator[None]:
    """`mlflow.pyfunc.log_model` writes, and the registry resolves a ``models:/<model_id>`` source, through
    MLflow's process-wide tracking URI: point it at this store meanwhile, then leave it as it was (MLflow
    keeps it in ``MLFLOW_TRACKING_URI`` too: unset again where nobody had set it, or a later command in
    this process would find a store it never named)."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(None)
        if before is not None:
            os.environ["MLFLOW_TRACKING_URI"] = before


def find_or_create(client: Any, experiment_id: str, run_id: str, args: Mapping[str, Any]) -> Any:
    """The logged model of this entry: the one an earlier try created (its client key), else a new one."""
    key = args["model_tags"][TAG_CLIENT_KEY]
    found = client.search_logged_models([experiment_id], filter_string=f"tags.`{TAG_CLIENT_KEY}` = '{key}'")
    if found:
        return found[0]
    return client.create_logged_model(experiment_id, name=args["model_name"], source_run_id=run_id,
                                      tags=dict(args["model_tags"]), params=dict(args["model_params"]),
                                      model_type=MODEL_TYPE)


def log_logged_model(client: Any, tracking_uri: str, run_id: str, args: Mapping[str, Any]) -> str:
    """Log the policy at ``args['policy']`` as a logged model of ``run_id`` with its figures; its model ID."""
    experiment_id = client.get_run(run_id).info.experiment_id
    model = find_or_create(client, experiment_id, run_id, args)
    if model.status != LoggedModelStatus.READY:  # new, or a try cut short before its files were whole
        with warnings.catch_warnings(), requirements_map_of(REQUIREMENTS), fluent_uri(tracking_uri):
            warnings.simplefilter("ignore", UserWarning)  # advice on type hints: the signature is full
            # run_id stays out: MLflow would copy every metric of the run at one step onto the model, again on
            # each replay; the link to the run and the figures are written below, once
            mlflow.pyfunc.log_model(name=args["model_name"], python_model=str(ENTRY), model_id=model.model_id,
                                    artifacts={POLICY_ARTIFACT: args["policy"]}, signature=SIGNATURE,
                                    input_example=input_example(), pip_requirements=REQUIREMENTS)
    step = int(args.get("step", 0))
    run = client.get_run(run_id)
    outputs = run.outputs.model_outputs if run.outputs else []
    if not any(o.model_id == model.model_id for o in outputs):
        client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step)])
    if args.get("metrics") and not client.get_logged_model(model.model_id).metrics:
        client.log_batch(run_id, metrics=[Metric(k, float(v), int(ts), int(s), model_id=model.model_id)
                                          for k, v, ts, s in args["metrics"]], synchronous=True)
    return model.model_id


def session_models(client: Any, experiment_id: str, run_id: str) -> list[Any]:
    """The logged models of a session run (one per distinct best policy), oldest first, with their metrics."""
    found = client.search_logged_models([experiment_id], filter_string=f"source_run_id = '{run_id}'")
    return sorted(found, key=lambda m: m.creation_timestamp)


def params_of(model: Any) -> str | None:
    return model.tags.get(VERSION_TAG_PARAMS)


def log_and_register(client: Any, tracking_uri: str, run_id: str, args: Mapping[str, Any]) -> dict[str, str]:
    """The journaled ``log_model`` write: the logged model (see `btc_ai.tracking.logged_model`), then its
    version (source ``models:/<model_id>``), aliases and the run's tags; each found where a try cut short
    made it already."""
    model_id = log_logged_model(client, tracking_uri, run_id, args)
    with fluent_uri(tracking_uri):
        version = ensure_version(client, run_id, args, source=model_uri(model_id), model_id=model_id)
    client.set_tag(run_id, TAG_MODEL_ID, model_id)
    client.set_tag(run_id, TAG_MODEL_PATH, model_uri(model_id))
    client.set_tag(run_id, TAG_MODEL_VERSION, version)
    client.set_tag(run_id, TAG_MODEL_PARAMS, args["params_sha256"])
    return {"version": version, "model_id": model_id}


def ensure_version(client: Any, run_id: str, args: Mapping[str, Any], *, source: str,
                    model_id: str | None = None) -> str:
    name, tags = args["name"], dict(args["tags"])
    if model_id is not None:
        tags[TAG_MODEL_ID] = model_id
    with contextlib.suppress(MlflowException):  # already registered
        client.create_registered_model(name, description=DESCRIPTION)
    key, value = client_key(tags)
    found = client.search_model_versions(f"name = '{name}' and tag.`{key}` = '{value}'")
    version = found[0] if found else client.create_model_version(
        name, source=source, run_id=run_id, tags=tags, description=args["description"], model_id=model_id)
    for alias in args["aliases"]:
        client.set_registered_model_alias(name, alias, version.version)
    if model_id is not None:  # what mlflow.register_model records: the model's page and list show the version
        listed = json.loads(client.get_logged_model(model_id).tags.get(MLFLOW_MODEL_VERSIONS, "[]"))
        entry = {"name": name, "version": str(version.version)}
        if entry not in listed:
            client.set_logged_model_tags(model_id, {MLFLOW_MODEL_VERSIONS: json.dumps([*listed, entry])})
    return str(version.version)
