"""The model registry: the session's policy logged with mlflow.pytorch, registered as `btc-ai-<bucket>`
and pointed at by an alias; and read back."""

from __future__ import annotations

import contextlib
import tempfile
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException

from btc_ai.tracking.run_model import ARTIFACT_MODEL, TAG_CLIENT_KEY, TAG_MODEL_VERSION
from btc_ai.tracking.store import Tracker


def log_and_register_model(tracker: Tracker, run_id: str, model: Any, name: str, input_example: Any, *,
                           alias: str = "newest", tags: Mapping[str, Any] | None = None) -> str:
    """Log ``model`` with mlflow.pytorch under ``model/`` of ``run_id``, register it, point ``alias`` at it.

    The model is stored as a traced graph (``pt2``), not a pickle, so loading it runs no code
    from the artifact store. Returns the new version number ("pending" while the store is unreachable).
    """
    import mlflow.pytorch

    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / ARTIFACT_MODEL
        mlflow.pytorch.save_model(model, str(local), serialization_format="pt2", input_example=input_example,
                                  pip_requirements=["torch"])
        tracker.log_artifacts(run_id, local, ARTIFACT_MODEL)
    tags = {**{k: str(v) for k, v in (tags or {}).items()}, TAG_CLIENT_KEY: uuid.uuid4().hex}
    version = tracker.register_model(run_id, name, alias, tags)
    return "pending" if version is None else str(version)


def register(client: Any, run_id: str, name: str, alias: str, tags: Mapping[str, str]) -> str:
    """Register ``runs:/<run_id>/model`` once (a replay finds the version it made) and point ``alias`` at it."""
    with contextlib.suppress(MlflowException):  # already registered
        client.create_registered_model(name)
    found = client.search_model_versions(f"name = '{name}' and tag.`{TAG_CLIENT_KEY}` = '{tags[TAG_CLIENT_KEY]}'")
    version = found[0] if found else client.create_model_version(
        name, source=f"runs:/{run_id}/{ARTIFACT_MODEL}", run_id=run_id, tags=dict(tags))
    client.set_registered_model_alias(name, alias, version.version)
    # recorded on the run by the registration itself: right also when it was journaled and replayed
    client.set_tag(run_id, TAG_MODEL_VERSION, str(version.version))
    return str(version.version)


def load_model(tracker: Tracker, run_id: str, artifact_path: str = ARTIFACT_MODEL) -> Any:
    """The torch module :func:`log_and_register_model` logged on ``run_id``, read back from this store
    (downloaded first: ``mlflow.pytorch`` alone would resolve run URIs against the global tracking URI)."""
    import mlflow.pytorch

    with tempfile.TemporaryDirectory() as tmp:
        return mlflow.pytorch.load_model(tracker.client.download_artifacts(run_id, artifact_path, tmp))
