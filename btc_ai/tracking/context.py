"""MLflow's standard context tags for runs created through `MlflowClient` (which, unlike `mlflow.start_run`,
sets none): who ran it (``mlflow.user``: the tracking server's login, else the OS user), what ran it
(``mlflow.source.name``/``type``) and at which commit (``mlflow.source.git.commit``, in a git checkout). MLflow's
own context providers decide them, so the UI's User and Source columns read as for any MLflow run."""

from __future__ import annotations

import functools

from mlflow.tracking.context.registry import resolve_tags


@functools.cache
def _process_tags() -> dict[str, str]:
    return {k: str(v) for k, v in resolve_tags().items()}


def context_tags() -> dict[str, str]:
    """The tags of this process (resolved once: the git look-up is not repeated for each run); the login is
    read each time, since a command may set it after the first run."""
    from mlflow.utils.credentials import read_mlflow_creds
    from mlflow.utils.mlflow_tags import MLFLOW_USER

    tags = dict(_process_tags())
    user = read_mlflow_creds().username
    if user:
        tags[MLFLOW_USER] = user
    return tags
