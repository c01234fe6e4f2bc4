"""MLflow's standard context tags for runs created through `MlflowClient` (which, unlike `mlflow.start_run`,
sets none): who ran it (``mlflow.user``: the tracking server's login, else the OS user), what ran it
(``mlflow.source.name``/``type``) and at which commit (``mlflow.source.git.commit``, in a git checkout). MLflow's
own context providers decide them, so the UI's User and Source columns read as for any MLflow run."""

from __future__ import annotations

import functools
import getpass

from mlflow.tracking.context.registry import resolve_tags


@functools.cache
def _process_tags() -> dict[str, str]:
    return {k: str(v) for k, v in resolve_tags().items()}


def context_tags() -> dict[str, str]:
    """The tags of this process (resolved once: the git look-up is not repeated for each run); the user is
    read each time: the login, which a command may set (or unset) after the first run, else the OS user (what
    MLflow's own context gives without a login) — never a login cached from an earlier run."""
    from mlflow.utils.credentials import read_mlflow_creds
    from mlflow.utils.mlflow_tags import MLFLOW_USER

    tags = dict(_process_tags())
    tags[MLFLOW_USER] = read_mlflow_creds().username or _os_user()
    return tags


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container's): as MLflow's context says then
        return "unknown"
