"""A new local store from a template: MLflow's initialisation of a SQLite store runs every migration (seconds
per store); the first store this MLflow builds is kept as a template in the cache folder, and later new stores
are copies of it made this store's (`mlflow_internals.adopt_new_store`: the default experiment's artifact
location and times), in milliseconds. The template is keyed by the MLflow version and its schema head, and
used only when it checks out as a whole new store at that head; anything else (missing, damaged, another
schema) is rebuilt by MLflow and written again. ``BTC_AI_STORE_TEMPLATE=off`` builds every store with
MLflow itself. Where: ``$BTC_AI_CACHE_DIR/stores`` (default ``$XDG_CACHE_HOME/btc_ai/stores``, else
``~/.cache/btc_ai/stores``)."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import shutil
from pathlib import Path

from btc_ai.domain.cache_dir import cache_root, switched_off
from btc_ai.tracking.mlflow_internals import adopt_new_store, head_revision, initialise_store

SWITCH_VARIABLE = "BTC_AI_STORE_TEMPLATE"  # off / 0 / no / false: every new store built by MLflow


def template_path() -> Path | None:
    """The template of the installed MLflow's stores, or None when templates are turned off."""
    if switched_off(SWITCH_VARIABLE):
        return None
    return cache_root() / "stores" / f"mlflow-{importlib.metadata.version('mlflow')}-{head_revision()}.db"


def build_store(database: Path, artifacts: str | None) -> None:
    """A new store at ``database`` (a temporary file the caller moves into place): a copy of the template made
    this store's, else MLflow's own initialisation (then kept as the template, where there is none yet)."""
    root = artifacts or database.parent.resolve().as_uri()
    template = template_path()
    if template is not None and template.is_file():
        with contextlib.suppress(OSError):
            shutil.copyfile(template, database)
            if adopt_new_store(database, root):
                return
        database.unlink(missing_ok=True)  # a damaged or stale template: built afresh below, and replaced
    initialise_store(database, root)
    if template is not None:
        _keep(database, template)


def _keep(database: Path, template: Path) -> None:
    """A copy of the new store ``database`` as the template, whole or not at all (a cache: a failure to write
    it costs the next store its speed, nothing else)."""
    partial = template.with_name(f".{template.name}.{os.getpid()}")
    try:
        template.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(database, partial)
        os.replace(partial, template)
    except OSError:
        pass
    finally:
        partial.unlink(missing_ok=True)
