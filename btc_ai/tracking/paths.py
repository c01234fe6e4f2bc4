"""Where a store is: the tracking URI in effect and the artifact root of a local SQLite store (no mlflow)."""

from __future__ import annotations

import os
from pathlib import Path


def default_tracking_uri(root: str | Path = ".") -> str:
    """``sqlite:///<root>/mlruns/mlflow.db``: the project's local store. Creates nothing: the store and its
    folder appear only when a command that writes opens it (`btc_ai.tracking.stores.ensure_store`)."""
    return f"sqlite:///{Path(root).resolve() / 'mlruns' / 'mlflow.db'}"


def resolve_tracking_uri(uri: str | None = None) -> str:
    """An explicit URI, else ``MLFLOW_TRACKING_URI``, else the local store under ``./mlruns``; a server URI's
    ``user:password@`` moves into MLflow's login variables (`btc_ai.tracking.credentials`), so the URI
    everything else sees, prints and stores holds no password."""
    from btc_ai.tracking.credentials import adopt_credentials

    return adopt_credentials(uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri())


def artifact_root(uri: str) -> str | None:
    """Artifacts of a local SQLite store live beside the database, under the same ``mlruns/`` folder."""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").resolve().as_uri()
    return None


__all__ = ["artifact_root", "default_tracking_uri", "resolve_tracking_uri"]
