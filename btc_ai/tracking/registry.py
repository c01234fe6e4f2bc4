"""The model registry: each best policy logged once as a pyfunc model in its own folder of the session run
(``models/<params sha256[:16]>``: content-addressed, never written again), registered as a version of
``btc-ai-<bucket>`` that explains itself (description, tags, validation and out-of-sample figures), with
``latest`` (every new version: MLflow reserves the name and resolves ``models:/<name>/latest`` to the newest
version itself) and the alias ``champion`` (moved only by the promotion gate or by ``btc-ai promote``)."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException

from btc_ai.domain.policy_files import load_policy
from btc_ai.domain.text_fit import fit_text
from btc_ai.tracking.candle_model import POLICY_ARTIFACT, save_candle_model
from btc_ai.tracking.run_model.names import (
    ALIAS_CHAMPION,
    TAG_CLIENT_KEY,
    TAG_MODEL_PARAMS,
    TAG_MODEL_PATH,
    TAG_MODEL_VERSION,
    VERSION_TAG_PROMOTION,
    model_path,
)
from btc_ai.tracking.store import Tracker


@dataclass(frozen=True)
class Registration:
    """What registering a session's best policy did: the version (None while journaled), whether it is new,
    and whether the promotion gate made it the champion."""

    version: str | None
    new: bool
    champion: bool
    verdict: str
    path: str


def log_model_version(tracker: Tracker, run_id: str, net: Any, card: Any, *, name: str, tags: Mapping[str, Any],
                      description: str, champion: bool, verdict: str, previous: Mapping[str, str],
                      move_champion: bool | None = None) -> Registration:
    """Log ``net`` (a `PolicyNet` with its `PolicyCard`) under ``models/<sha>`` of ``run_id`` and register it.

    ``champion`` says the version passed the promotion gate, ``move_champion`` (default: the same) whether
    the alias moves to it. ``previous`` holds the session's newest registration (its params sha256 and version tags): the same
    parameters again register nothing (the files behind the existing version stay as they are), and so do the
    parameters of an earlier version of the session (resumed from an older checkpoint): that version is the
    session's again. The folder is never written twice: a version's files never change once registered.
    """
    path = model_path(card.params_sha256)
    if previous.get(TAG_MODEL_PARAMS) == card.params_sha256:
        return Registration(previous.get(TAG_MODEL_VERSION), False, False, "unchanged", path)
    earlier = None if tracker.offline else _version_of(tracker, name, run_id, path)
    if earlier is not None:  # an earlier best policy of the session again (a resume of an older checkpoint)
        tracker.set_tags(run_id, {TAG_MODEL_VERSION: earlier, TAG_MODEL_PATH: path,
                                  TAG_MODEL_PARAMS: card.params_sha256})
        return Registration(earlier, False, False, "unchanged", path)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "model"
        save_candle_model(net, card, local, Path(tmp) / "staging")  # a new uuid and time each call:
        tracker.log_artifacts(run_id, local, path, immutable=True)  # files already there are never replaced
    promotion = f"{'passed' if champion else 'rejected'}: {verdict}"
    version = tracker.register_model(run_id, {
        "name": name, "path": path, "params_sha256": card.params_sha256, "description": fit_text(description, whole_at=f"the description of run {run_id}"),
        # "latest" is MLflow's own: models:/<name>/latest
        "aliases": [ALIAS_CHAMPION] if (champion if move_champion is None else move_champion) else [],
        "tags": {**{k: str(v)[:5000] for k, v in tags.items()}, VERSION_TAG_PROMOTION: promotion,
                 TAG_CLIENT_KEY: uuid.uuid4().hex}})
    moved = champion if move_champion is None else move_champion
    return Registration(None if version is None else str(version), True, moved, promotion, path)


def _version_of(tracker: Tracker, name: str, run_id: str, path: str) -> str | None:
    """The version of ``name`` that already holds ``path`` of ``run_id`` (the same parameters), if any."""
    try:
        found = tracker.client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    except MlflowException:  # no such model yet
        return None
    return next((str(v.version) for v in found if v.source.rstrip("/").endswith(f"/{path}")), None)


def load_model(tracker: Tracker, run_id: str, artifact_path: str) -> Any:
    """The `PolicyNet` of the logged model at ``artifact_path`` of ``run_id``, from its safetensors weights."""
    with tempfile.TemporaryDirectory() as tmp:
        local = tracker.client.download_artifacts(run_id, f"{artifact_path}/artifacts/{POLICY_ARTIFACT}", tmp)
        return load_policy(local)[0]
