"""The one door to MLflow's internals: its SQL schema (read with sqlite3 by the fast reader of local stores,
the store checks and the backups, because opening MLflow costs seconds and a backup must not need it) and
the few private names btc_ai uses. Nothing else in btc_ai reads MLflow's tables or touches a private
MLflow name (tests/test_floors.py checks it), so an MLflow upgrade is checked here and nowhere else.

Checked against MLflow 3.17.2 and 3.18.0 (``SCHEMA_HEADS``); pyproject.toml pins ``mlflow>=3.17,<3.19``: a
later minor release is allowed only once it has been checked here (constraints.txt locks what CI installs).
tests/test_mlflow_internals.py builds a store with the installed MLflow and fails, naming what moved, when
a table, column or the migration head below no longer matches. docs/mlflow-internals.md says what to do
then. Importing this module imports no mlflow (the store checks and reports run without it).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import sqlite3
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from btc_ai.tracking.run_model.names import DELETED_VERSION

# the MLflow versions this module was checked against, each with the alembic revision it builds stores at
SCHEMA_HEADS: dict[str, str] = {"3.17.2": "dc11669786a5", "3.18.0": "f4a9b2c7d1e6"}
CHECKED_MLFLOW = ", ".join(SCHEMA_HEADS)

# Every table and column the SQL below reads or writes (tests/test_mlflow_internals.py checks each).
SCHEMA: dict[str, tuple[str, ...]] = {
    "alembic_version": ("version_num",),
    "experiments": ("experiment_id", "name", "lifecycle_stage", "artifact_location", "creation_time",
                    "last_update_time"),
    "runs": ("run_uuid", "name", "experiment_id", "status", "start_time", "artifact_uri", "lifecycle_stage"),
    "tags": ("run_uuid", "key", "value"),
    "params": ("run_uuid", "key", "value"),
    "latest_metrics": ("run_uuid", "key", "value", "is_nan"),
    "metrics": ("run_uuid", "key", "value", "step", "is_nan"),
    "model_versions": ("name", "version", "current_stage", "run_id"),
    "registered_model_aliases": ("name", "alias", "version"),
    "trace_tags": ("key", "value"),
}
# the tables every MLflow store has had since its first schema (the rest come with the migrations)
CORE_TABLES = frozenset({"experiments", "runs", "metrics", "params", "tags", "latest_metrics", "alembic_version"})
# what MLflow's initialisation itself writes: a store with nothing else holds no one's data
_BOOKKEEPING = {"alembic_version", "workspaces", "sqlite_sequence"}
_ROWS_OF_A_NEW_STORE = {"experiments": " WHERE experiment_id != 0"}  # the default experiment
# the columns that hold artifact locations (absolute paths or file:// URIs); a store of an older schema may
# lack some. Named table by table: a column called "source" elsewhere holds JSON, not a location, and the
# schema test flags any new column that looks like one.
LOCATION_COLUMNS = frozenset({("experiments", "artifact_location"), ("runs", "artifact_uri"),
                              ("logged_models", "artifact_location"), ("model_versions", "source"),
                              ("model_versions", "storage_location"), ("workspaces", "trace_archival_location")})
_TRACE_LOCATION_TAG = "mlflow.artifactLocation"  # a trace's artifact location is one of its tags

# What a schema this module was not checked against raises from the readers below: a missing table or
# column (sqlite3.OperationalError), a value of another type or shape (TypeError, ValueError), a row the
# record builders cannot read (LookupError, AttributeError). The fast reader answers those through MLflow.
SCHEMA_DRIFT: tuple[type[Exception], ...] = (sqlite3.Error, LookupError, ValueError, TypeError, AttributeError)


def tables(db: sqlite3.Connection) -> set[str]:
    return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def columns(db: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in db.execute(f'PRAGMA table_info("{table}")')]


# -- store files: what they hold, how MLflow builds one ----------------------------------------------------


def store_state(db: sqlite3.Connection) -> tuple[bool, str | None, bool]:
    """(MLflow's core tables all there, the schema revision or None, rows beyond what MLflow's initialisation
    writes)."""
    found = tables(db)
    revision = (db.execute("SELECT version_num FROM alembic_version").fetchone() or [None])[0] \
        if "alembic_version" in found else None
    holds = any(db.execute(f'SELECT EXISTS (SELECT 1 FROM "{table}"{_ROWS_OF_A_NEW_STORE.get(table, "")})')
                .fetchone()[0] for table in found - _BOOKKEEPING if not table.startswith("_alembic_tmp"))
    return found >= CORE_TABLES, revision, holds


def is_tracking_database(db: sqlite3.Connection) -> bool:
    return {"runs", "experiments", "tags"} <= tables(db)


@functools.lru_cache(maxsize=1)
def head_revision() -> str:
    """The schema revision the installed MLflow writes (what it insists on when it opens a store)."""
    from mlflow.store.db.utils import _get_latest_schema_revision

    return _get_latest_schema_revision()


def initialise_store(database: Path, artifacts: str | None) -> None:
    """MLflow's own initialisation of a new SQLite store at ``database`` (all tables, migrations run)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    db_uri = f"sqlite:///{database}"
    store = SqlAlchemyStore(db_uri, artifacts or database.parent.resolve().as_uri())
    store.engine.dispose()
    SqlAlchemyStore._engine_map.pop(db_uri, None)  # the cache would keep the temporary file's engine


def default_experiment_location(artifacts: str) -> str:
    """The artifact location MLflow's initialisation gives a new store's default experiment (ID 0) for
    ``artifacts``, the store's artifact root (`SqlAlchemyStore._get_artifact_location`)."""
    from mlflow.utils.uri import append_to_uri_path, resolve_uri_if_local

    return append_to_uri_path(resolve_uri_if_local(artifacts), "0")


def adopt_new_store(database: Path, artifacts: str) -> bool:
    """Make ``database``, a copy of a store MLflow initialised elsewhere (a template), this store's: its default
    experiment's artifact location and times set as `initialise_store` would set them here. False (nothing
    changed) unless it is a whole new store, at the installed MLflow's head, holding nothing else."""
    db = sqlite3.connect(database)
    try:
        whole, revision, holds = store_state(db)
        if not whole or holds or revision != head_revision():
            return False
        now = int(time.time() * 1000)
        with db:
            done = db.execute("UPDATE experiments SET artifact_location = ?, creation_time = ?, last_update_time = ? "
                              "WHERE experiment_id = 0 AND name = 'Default'",
                              (default_experiment_location(artifacts), now, now)).rowcount
        return done == 1
    except sqlite3.DatabaseError:  # not a database at all (a damaged template)
        return False
    finally:
        db.close()


def artifact_repository(artifact_uri: str, tracking_uri: str) -> Any:
    """MLflow's artifact repository for ``artifact_uri`` (a module MLflow does not document as public)."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    return get_artifact_repository(artifact_uri, tracking_uri=tracking_uri)


@contextlib.contextmanager
def requirements_map_of(packages: Iterable[str]) -> Iterator[None]:
    """MLflow checks a saved model's requirements against this environment with a map of every installed
    module to its package, which it builds once per process by reading every distribution's file list
    (seconds). Where the requirements are ``packages`` alone, give MLflow the map of just those (and MLflow
    itself) while it saves, then put back what was there, so that a later MLflow call in this process builds
    the full map as usual. Where MLflow's internals differ, nothing is changed and MLflow builds the map."""
    try:
        from mlflow.utils import requirements_utils

        saved = requirements_utils._MODULES_TO_PACKAGES, requirements_utils._PACKAGES_TO_MODULES
    except (AttributeError, ImportError):
        yield
        return
    if saved[0] is None:
        requirements_utils._MODULES_TO_PACKAGES = {
            name: [importlib.metadata.metadata(name)["Name"]] for name in (*packages, "mlflow")}
    try:
        yield
    finally:
        requirements_utils._MODULES_TO_PACKAGES, requirements_utils._PACKAGES_TO_MODULES = saved


# -- the fast reader: runs as the minimal shape of MLflow's `Run` ------------------------------------------


class StoreReader:
    """Runs, metrics and registered versions read straight from a local store's tables."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def run(self, run_id: str) -> Any | None:
        found = self._runs("run_uuid = ?", [run_id])
        return found[0] if found else None

    def children(self, experiment_id: str, tag: str, value: str) -> list[Any]:
        """The live runs of ``experiment_id`` tagged ``tag = value``."""
        return self._runs("experiment_id = ? AND lifecycle_stage = 'active' AND run_uuid IN "
                          "(SELECT run_uuid FROM tags WHERE key = ? AND value = ?)", [experiment_id, tag, value])

    def latest_metrics(self, run_id: str) -> dict[str, float]:
        return self._keyed("latest_metrics", [run_id]).get(run_id, {})

    def metric_history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        rows = self.db.execute("SELECT step, value, is_nan FROM metrics WHERE run_uuid = ? AND key = ?", (run_id, key))
        return sorted((step, float("nan") if is_nan else value) for step, value, is_nan in rows)

    def version_run(self, name: str, version: str | None, alias: str | None, latest: bool) -> str | None:
        """The run of a registered model's version (the newest live one with ``latest``, else ``version`` or
        the one ``alias`` points at); None when there is none."""
        live = f"name = ? AND current_stage != '{DELETED_VERSION}'"
        if latest:
            version = self._scalar(f"SELECT MAX(version) FROM model_versions WHERE {live}", name)
        elif not version:
            version = self._scalar("SELECT version FROM registered_model_aliases WHERE name = ? AND alias = ?",
                                   name, alias)
        if not version:
            return None
        return self._scalar(f"SELECT run_id FROM model_versions WHERE {live} AND version = ?", name, int(version))

    def _runs(self, where: str, args: Iterable[Any]) -> list[Any]:
        rows = self.db.execute("SELECT run_uuid, experiment_id, status, start_time, artifact_uri, lifecycle_stage "
                               f"FROM runs r WHERE {where} ORDER BY start_time, run_uuid", tuple(args)).fetchall()
        ids = [row[0] for row in rows]
        tags, params, metrics = self._keyed("tags", ids), self._keyed("params", ids), self._keyed("latest_metrics", ids)
        return [SimpleNamespace(
            info=SimpleNamespace(run_id=run_id, experiment_id=str(experiment), status=status, start_time=start,
                                 artifact_uri=uri, lifecycle_stage=stage),
            data=SimpleNamespace(tags=tags.get(run_id, {}), params=params.get(run_id, {}),
                                 metrics=metrics.get(run_id, {})))
            for run_id, experiment, status, start, uri, stage in rows]

    def _keyed(self, table: str, ids: list[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        if not ids:
            return out
        marks = ",".join("?" * len(ids))
        wanted = "key, value, run_uuid, is_nan" if table == "latest_metrics" else "key, value, run_uuid, 0"
        for key, value, run_id, is_nan in self.db.execute(f"SELECT {wanted} FROM {table} WHERE run_uuid IN ({marks})",
                                                          ids):
            out.setdefault(run_id, {})[key] = float("nan") if is_nan else value
        return out

    def _scalar(self, sql: str, *args: Any) -> Any:
        row = self.db.execute(sql, args).fetchone()
        return row[0] if row else None


# -- backups: sessions and artifact locations of a database snapshot ---------------------------------------


def tagged_runs(db: sqlite3.Connection, tag: str, value: str, also: str) -> list[tuple[Any, ...]]:
    """(run ID, name, status, start time in ms, experiment ID, lifecycle stage, the ``also`` tag's value) of
    every run tagged ``tag = value``, oldest first."""
    return db.execute(
        "SELECT r.run_uuid, r.name, r.status, r.start_time, r.experiment_id, r.lifecycle_stage, "
        "(SELECT s.value FROM tags s WHERE s.run_uuid = r.run_uuid AND s.key = ?) "
        "FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid AND t.key = ? AND t.value = ? "
        "ORDER BY r.start_time, r.run_uuid", (also, tag, value),
    ).fetchall()


def location_columns(db: sqlite3.Connection) -> list[tuple[str, str]]:
    """The (table, column) pairs that hold artifact locations."""
    present = tables(db)
    return sorted((table, column) for table, column in LOCATION_COLUMNS
                  if table in present and column in columns(db, table))


def locations(db: sqlite3.Connection) -> list[str]:
    """Every artifact location the database records (experiments, runs, logged models, model versions)."""
    found: list[str] = []
    for table, column in location_columns(db):
        found += [row[0] for row in db.execute(f'SELECT DISTINCT "{column}" FROM "{table}"') if isinstance(row[0], str)]
    return found


def relocate_prefix(db: sqlite3.Connection, old: str, new: str) -> int:
    """Every artifact location that is ``old`` or lies under it now starts with ``new``; cells changed. The
    caller holds the transaction."""
    targets = [(table, column, "") for table, column in location_columns(db)]
    if "trace_tags" in tables(db):
        targets.append(("trace_tags", "value", f"key = '{_TRACE_LOCATION_TAG}' AND "))
    changed = 0
    for table, column, where in targets:
        changed += db.execute(
            f'UPDATE "{table}" SET "{column}" = ? || substr("{column}", ?) '
            f'WHERE {where}substr("{column}", 1, ?) = ? AND (length("{column}") = ? '
            f'OR substr("{column}", ?, 1) = \'/\')',
            (new, len(old) + 1, len(old), old, len(old), len(old) + 1),
        ).rowcount
    return changed
