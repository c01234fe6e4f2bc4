"""The one door to MLflow's internals (`btc_ai.tracking.mlflow_internals`) still fits the installed MLflow:
a store it builds has every table and column the fast reader, the store checks and the backups read, the
migration head the module was checked at, no artifact location column the backups would miss, and the
private names the module uses. Each failure names what MLflow changed (docs/mlflow-internals.md: what then)."""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from btc_ai.tracking import mlflow_internals as internals

INSTALLED = importlib.metadata.version("mlflow")
WHAT_NOW = "see docs/mlflow-internals.md, 'When MLflow upgrades'"
LOCATIONS = set(internals.LOCATION_COLUMNS)  # what a backup archives and a restore rewrites
# columns named like a location that hold none a backup keeps: the registry's link to a run, a workspace's
# default root (a setting), where a dataset, an evaluation record or an MCP server version came from (JSON
# describing a source, which a restore leaves as it was recorded)
NOT_LOCATIONS = {("model_versions", "run_link"), ("workspaces", "default_artifact_root"),
                 ("datasets", "dataset_source"), ("evaluation_dataset_records", "source"),
                 ("mcp_server_versions", "source"),
                 # MLflow 3.18's skill registry: the git/OCI/zip address a skill version was registered from,
                 # and the folder inside it (a restore leaves a remote address as it was recorded)
                 ("skill_versions", "source"), ("skill_versions", "subpath")}
_LOCATION_LIKE = re.compile(r"location|uri$|artifact|path$|root$|link$|source$")


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A store built by the installed MLflow's own initialisation, in this process."""
    database = tmp_path_factory.mktemp("fresh") / "mlflow.db"
    internals.initialise_store(database, None)
    yield database


def _schema(database: Path) -> dict[str, list[str]]:
    with sqlite3.connect(database) as db:
        return {table: internals.columns(db, table) for table in internals.tables(db)}


def test_the_installed_mlflow_builds_stores_at_the_checked_schema_revision(fresh: Path) -> None:
    head = internals.head_revision()
    assert internals.SCHEMA_HEADS.get(INSTALLED) == head, (
        f"MLflow {INSTALLED} builds stores at schema revision {head}, but mlflow_internals was checked against "
        f"{internals.SCHEMA_HEADS} alone: check its tables, then add the version and its head to SCHEMA_HEADS; "
        f"{WHAT_NOW}")
    with sqlite3.connect(fresh) as db:
        whole, revision, holds = internals.store_state(db)
    assert (whole, revision, holds) == (True, head, False), "a fresh store is whole, at the head, and holds nothing"


def test_every_table_and_column_the_readers_use_is_in_a_fresh_store(fresh: Path) -> None:
    schema = _schema(fresh)
    missing = [f"{table}.{column}" for table, wanted in internals.SCHEMA.items()
               for column in wanted if column not in schema.get(table, [])]
    assert not missing, (f"MLflow {INSTALLED} no longer has {', '.join(missing)}, which btc_ai reads with sqlite3 "
                         f"(the fast reader of `btc-ai report`, store checks, backups); {WHAT_NOW}")
    assert set(schema) >= internals.CORE_TABLES, sorted(internals.CORE_TABLES - set(schema))


def test_the_backup_knows_every_artifact_location_column(fresh: Path) -> None:
    with sqlite3.connect(fresh) as db:
        found = set(internals.location_columns(db))
    assert found == LOCATIONS, (f"MLflow {INSTALLED} no longer has the location columns "
                                f"{sorted(LOCATIONS - found)}; {WHAT_NOW}")
    unknown = sorted((table, column) for table, cols in _schema(fresh).items() for column in cols
                     if _LOCATION_LIKE.search(column.lower()) and (table, column) not in LOCATIONS | NOT_LOCATIONS)
    assert not unknown, (f"MLflow {INSTALLED} has columns that look like artifact locations the backup does not "
                         f"archive or relocate: {unknown}; add them to LOCATION_COLUMNS (or to NOT_LOCATIONS "
                         f"here); {WHAT_NOW}")


def test_every_query_runs_on_a_fresh_store_and_reads_only_the_declared_columns(fresh: Path, tmp_path: Path) -> None:
    """Each statement of the module, run on the fresh store: an SQLite authoriser records each (table, column)
    read or written, which must all be declared in SCHEMA (so the check above covers them)."""
    database = tmp_path / "copy.db"
    shutil.copy(fresh, database)
    touched: set[tuple[str, str]] = set()

    def authorise(action: int, table: str | None, column: str | None, *_: object) -> int:
        if action in (sqlite3.SQLITE_READ, sqlite3.SQLITE_UPDATE) and table and column and \
                not table.startswith("sqlite_"):
            touched.add((table, column))
        return sqlite3.SQLITE_OK

    db = sqlite3.connect(database)
    try:
        db.set_authorizer(authorise)
        reader = internals.StoreReader(db)
        assert reader.run("0" * 32) is None
        assert reader.children("0", "btc_ai.kind", "attempt") == []
        assert reader.latest_metrics("0" * 32) == {} and reader.metric_history("0" * 32, "m") == []
        for version, alias, latest in (("1", None, False), (None, "champion", False), (None, None, True)):
            assert reader.version_run("m", version, alias, latest) is None
        assert internals.tagged_runs(db, "btc_ai.kind", "session", also="btc_ai.status") == []
        (default,) = internals.locations(db)  # the default experiment's
        with db:
            assert internals.relocate_prefix(db, default.rsplit("/", 1)[0], "file:///new/store") == 1
        assert internals.locations(db) == ["file:///new/store/0"]
        internals.store_state(db)
    finally:
        db.close()
    declared = {(table, column) for table, cols in internals.SCHEMA.items() for column in cols}
    location_cells = {(table, column) for table, column in LOCATIONS}
    undeclared = sorted(touched - declared - location_cells)
    assert not undeclared, f"the queries read {undeclared}: declare them in mlflow_internals.SCHEMA"
    assert {("runs", "run_uuid"), ("metrics", "is_nan"), ("model_versions", "current_stage")} <= touched


def test_the_private_names_the_module_uses_are_still_there(fresh: Path) -> None:
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from mlflow.utils import requirements_utils

    assert isinstance(SqlAlchemyStore._engine_map, dict), \
        f"MLflow {INSTALLED} caches store engines elsewhere: initialise_store must drop the new one; {WHAT_NOW}"
    assert f"sqlite:///{fresh}" not in SqlAlchemyStore._engine_map  # the temporary store's engine is not kept
    for name in ("_MODULES_TO_PACKAGES", "_PACKAGES_TO_MODULES"):
        assert hasattr(requirements_utils, name), (
            f"MLflow {INSTALLED} has no requirements_utils.{name}: saving a model builds the full package map "
            f"again (seconds); {WHAT_NOW}")
