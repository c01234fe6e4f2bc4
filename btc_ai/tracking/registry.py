"""The model registry: each best policy logged once as an MLflow 3 logged model of the session run
(`btc_ai.tracking.logged_model`: its files never written again, its figures linked to its ``model_id``),
registered as a version of
``btc-ai-<bucket>`` that explains itself (description, tags, validation and out-of-sample figures), with
``latest`` (every new version: MLflow reserves the name and resolves ``models:/<name>/latest`` to the newest
version itself) and the alias ``champion`` (moved only by the promotion gate or by ``btc-ai promote``)."""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow.artifacts
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException

from btc_ai.domain.metric_names import METRIC_BASELINE_PREFIX, METRIC_TEST_PREFIX
from btc_ai.domain.policy_files import save_policy
from btc_ai.domain.text_fit import fit_text
from btc_ai.tracking.candle_model import POLICY_ARTIFACT
from btc_ai.tracking.credentials import redact
from btc_ai.tracking.logged_model import model_id_of, model_uri
from btc_ai.tracking.run_model.names import (
    ALIAS_CHAMPION,
    TAG_CLIENT_KEY,
    TAG_DESCRIPTION,
    TAG_MODEL_ID,
    TAG_MODEL_PARAMS,
    TAG_MODEL_PATH,
    TAG_MODEL_VERSION,
    VERSION_TAG_PARAMS,
    VERSION_TAG_PROMOTION,
    model_path,
)
from btc_ai.tracking.tracker import MAX_PARAM_LENGTH, Tracker


@dataclass(frozen=True)
class Registration:
    """What registering a session's best policy did: the version (None while journaled), whether it is new,
    and whether the promotion gate made it the champion."""

    version: str | None
    new: bool
    champion: bool
    verdict: str
    path: str  # models:/<model_id> ("" while journaled); a run folder for a session logged before logged models
    model_id: str | None = None


def log_model_version(tracker: Tracker, run_id: str, net: Any, card: Any, *, name: str, tags: Mapping[str, Any],
                      description: str, champion: bool, verdict: str, previous: Mapping[str, str],
                      move_champion: bool | None = None, metrics: Mapping[str, float] | None = None, step: int = 0,
                      params: Mapping[str, Any] | None = None) -> Registration:
    """Log ``net`` (a `PolicyNet` with its `PolicyCard`) as a logged model of ``run_id`` and register it.

    ``champion`` says the version passed the promotion gate, ``move_champion`` (default: the same) whether
    the alias moves to it. ``previous`` holds the session's newest registration (its params sha256 and version
    tags): the same parameters again log and register nothing (the model behind the existing version stays as it
    is), and so do the parameters of an earlier version of the session (resumed from an older checkpoint): that
    version is the session's again. ``metrics`` (the evaluation figures, at ``step``) go on the run, and with a
    new model's ID; ``params`` (the config) and ``tags`` explain the model on its own page.
    """
    stamp = int(time.time() * 1000)
    figures = [Metric(k, float(v), stamp, step) for k, v in (metrics or {}).items()]
    if figures:  # on the run whatever follows; the same ones go with a new model's ID
        tracker.log_metrics(run_id, figures)
    if previous.get(TAG_MODEL_PARAMS) == card.params_sha256:
        return Registration(previous.get(TAG_MODEL_VERSION), False, False, "unchanged", previous.get(TAG_MODEL_PATH, ""))
    earlier = None if tracker.offline else _version_of(tracker, name, run_id, card.params_sha256)
    if earlier is not None:  # an earlier best policy of the session again (a resume of an older checkpoint)
        version, path = earlier
        tracker.set_tags(run_id, {TAG_MODEL_VERSION: version, TAG_MODEL_PATH: path, TAG_MODEL_PARAMS: card.params_sha256,
                                  **({TAG_MODEL_ID: model_id_of(path)} if model_id_of(path) else {})})
        return Registration(version, False, False, "unchanged", path)
    promotion = f"{'passed' if champion else 'rejected'}: {verdict}"
    text = {**{k: str(v)[:5000] for k, v in tags.items()}, VERSION_TAG_PARAMS: card.params_sha256}
    with tempfile.TemporaryDirectory() as tmp:
        policy = save_policy(net, card, Path(tmp) / POLICY_ARTIFACT)
        done = tracker.log_model(run_id, {
            "name": name, "params_sha256": card.params_sha256,
            "description": fit_text(description, whole_at=f"the description of run {run_id}"),
            # "latest" is MLflow's own: models:/<name>/latest
            "aliases": [ALIAS_CHAMPION] if (champion if move_champion is None else move_champion) else [],
            "tags": {**text, VERSION_TAG_PROMOTION: promotion, TAG_CLIENT_KEY: uuid.uuid4().hex},
            "model_name": f"policy-{card.params_sha256[:16]}",
            "model_tags": {**text, TAG_DESCRIPTION: redact(fit_text(description, whole_at=f"the model of run {run_id}")),
                           TAG_CLIENT_KEY: uuid.uuid4().hex},
            "model_params": {k: _param(v) for k, v in {**(params or {}), "params_sha256": card.params_sha256}.items()},
            # the run's own metrics again, now with the model's ID: the store keeps one row of each on the run;
            # the test span's first, the columns the Models tab shows first
            "metrics": [[m.key, m.value, m.timestamp, m.step] for m in sorted(figures, key=_shown_first)],
            "step": step,
        }, policy)
    moved = champion if move_champion is None else move_champion
    if done is None:  # journaled: known once replayed
        return Registration(None, True, moved, promotion, "")
    return Registration(done["version"], True, moved, promotion, model_uri(done["model_id"]), done["model_id"])


def _shown_first(metric: Metric) -> int:
    """The test span's figures, then the baselines', then the rest (validation, best), each in the order given."""
    return 0 if metric.key.startswith(METRIC_TEST_PREFIX) else 1 if metric.key.startswith(METRIC_BASELINE_PREFIX) else 2


def _param(value: Any) -> str:
    text = str(value)
    return text if len(text) <= MAX_PARAM_LENGTH else text[: MAX_PARAM_LENGTH - 15] + "...[truncated]"


def _version_of(tracker: Tracker, name: str, run_id: str, params_sha256: str) -> tuple[str, str] | None:
    """(version, model path) of ``name`` that already holds these parameters of ``run_id``, if any: a logged
    model (``models:/<model_id>``) or, for a session registered before logged models, its run folder."""
    try:
        found = tracker.client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    except MlflowException:  # no such model yet
        return None
    folder = model_path(params_sha256)
    for v in found:
        if v.tags.get(VERSION_TAG_PARAMS) == params_sha256 and v.source.startswith("models:/"):
            return str(v.version), v.source
        if v.source.rstrip("/").endswith(f"/{folder}"):
            return str(v.version), folder
    return None


def download_policy(client: Any, run_id: str, model_path: str, folder: str | Path) -> Path:
    """The policy folder (safetensors weights + card) of a session's model into ``folder``: from its logged
    model (``models:/<model_id>``) or, for a session logged before those, from the run's folder."""
    model_id = model_id_of(model_path)
    if model_id is None:
        return Path(client.download_artifacts(run_id, f"{model_path}/artifacts/{POLICY_ARTIFACT}", str(folder)))
    location = client.get_logged_model(model_id).artifact_location
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{location}/artifacts/{POLICY_ARTIFACT}",
                                                    dst_path=str(folder), tracking_uri=client.tracking_uri))


def load_model(tracker: Tracker, run_id: str, model_path: str) -> Any:
    """The `PolicyNet` of a session's logged model (see `download_policy`), from its safetensors weights."""
    from btc_ai.domain.policy_files import load_policy

    with tempfile.TemporaryDirectory() as tmp:
        return load_policy(download_policy(tracker.client, run_id, model_path, tmp))[0]
