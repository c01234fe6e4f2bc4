"""`LocalRunModel`: the run model read straight from a local SQLite store with sqlite3 (read-only), for
commands that mostly read (`btc-ai report`): importing mlflow and opening its store costs seconds, a
query milliseconds. Writes (marking a dead process's attempts) and anything the schema does not answer
go through the MLflow store, opened only then. A test keeps both readers giving the same records.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar
from urllib.parse import unquote, urlparse

from btc_ai.tracking.run_model.names import (
    DELETED_VERSION,
    KIND_ATTEMPT,
    KIND_REPAIR,
    LATEST,
    MODEL_URI,
    TAG_KIND,
    TAG_PARENT,
    TAG_SESSION,
)
from btc_ai.tracking.run_model.records import SessionRecord, _attempt, _repair, _session
from btc_ai.tracking.run_model.runs import RunModel, missing_version

T = TypeVar("T")


def _or_mlflow(method: Callable[..., T]) -> Callable[..., T]:
    """Answer from SQLite; where the schema does not (another MLflow version), from the MLflow store."""

    @functools.wraps(method)
    def wrapper(self: LocalRunModel, *args: Any, **kwargs: Any) -> T:
        try:
            return method(self, *args, **kwargs)
        except (sqlite3.Error, _NotLocal):
            return getattr(RunModel(self.tracker), method.__name__)(*args, **kwargs)

    return wrapper


class _NotLocal(Exception):
    """The artifacts of this run are not on this machine's disk."""


class LocalRunModel(RunModel):
    """The run model of the SQLite store at ``database``; the MLflow store (``tracker``) opens on first write."""

    def __init__(self, tracking_uri: str, database: Path) -> None:
        self.tracking_uri = tracking_uri
        self.database = database
        self._tracker: Any = None
        from btc_ai.tracking.stores import connect_readonly

        self._db = connect_readonly(database, timeout=30)  # also in a read-only folder

    @property
    def tracker(self) -> Any:  # type: ignore[override]
        if self._tracker is None:
            from btc_ai.tracking.store import Tracker

            self._tracker = Tracker(self.tracking_uri)
        return self._tracker

    # -- rows as the minimal Run shape the record builders read --------------------------------------

    def _runs(self, where: str, args: Iterable[Any]) -> list[Any]:
        rows = self._db.execute("SELECT run_uuid, experiment_id, status, start_time, artifact_uri, lifecycle_stage "
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
        columns = "key, value, run_uuid, is_nan" if table == "latest_metrics" else "key, value, run_uuid, 0"
        for key, value, run_id, is_nan in self._db.execute(f"SELECT {columns} FROM {table} WHERE run_uuid IN ({marks})",
                                                           ids):
            out.setdefault(run_id, {})[key] = float("nan") if is_nan else value
        return out

    def _run(self, run_id: str) -> Any | None:
        found = self._runs("run_uuid = ?", [run_id])
        return found[0] if found else None

    def _children(self, experiment_id: str, tag: str, value: str) -> list[Any]:
        return self._runs("experiment_id = ? AND lifecycle_stage = 'active' AND run_uuid IN "
                          "(SELECT run_uuid FROM tags WHERE key = ? AND value = ?)", [experiment_id, tag, value])

    # -- the reading half of the run model ------------------------------------------------------------

    @_or_mlflow
    def session(self, run_id: str) -> SessionRecord:
        run = self._run(run_id)
        if run is None:
            raise _NotLocal(run_id)  # MLflow says how it is missing
        return _session(run)

    @_or_mlflow
    def resolve_session(self, ref: str) -> SessionRecord:
        return RunModel.resolve_session(self, ref)

    def _model_run_id(self, ref: str) -> str:
        match = MODEL_URI.match(ref)
        assert match is not None
        live = f"name = ? AND current_stage != '{DELETED_VERSION}'"
        if LATEST in (match["version"], match["alias"]):
            version = self._scalar(f"SELECT MAX(version) FROM model_versions WHERE {live}", match["name"])
        else:
            version = match["version"] or self._scalar(
                "SELECT version FROM registered_model_aliases WHERE name = ? AND alias = ?", match["name"], match["alias"])
        run_id = version and self._scalar(f"SELECT run_id FROM model_versions WHERE {live} AND version = ?",
                                          match["name"], int(version))
        if not run_id:
            raise missing_version(ref, self.uri)
        return run_id

    def _find_run(self, run_id: str) -> Any | None:
        return self._run(run_id)

    @property
    def uri(self) -> str:
        return self.tracking_uri

    def _scalar(self, sql: str, *args: Any) -> Any:
        row = self._db.execute(sql, args).fetchone()
        return row[0] if row else None

    @_or_mlflow
    def attempts(self, session: SessionRecord | str) -> list[Any]:
        session_id, experiment = self._where_local(session)
        runs = self._children(experiment, TAG_PARENT, session_id)
        return sorted((_attempt(r) for r in runs if r.data.tags.get(TAG_KIND) == KIND_ATTEMPT), key=lambda a: a.number)

    @_or_mlflow
    def repairs(self, session: SessionRecord | str) -> list[Any]:
        session_id, experiment = self._where_local(session)
        runs = self._children(experiment, TAG_SESSION, session_id)
        return sorted((_repair(r) for r in runs if r.data.tags.get(TAG_KIND) == KIND_REPAIR),
                      key=lambda r: r.start_time)

    def _where_local(self, session: SessionRecord | str) -> tuple[str, str]:
        if isinstance(session, SessionRecord):
            return session.run_id, session.experiment_id
        run = self._run(session)
        if run is None:
            raise _NotLocal(session)
        return session, run.info.experiment_id

    @_or_mlflow
    def metric_history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        rows = self._db.execute("SELECT step, value, is_nan FROM metrics WHERE run_uuid = ? AND key = ?", (run_id, key))
        return sorted((step, float("nan") if is_nan else value) for step, value, is_nan in rows)

    @_or_mlflow
    def latest_metrics(self, run_id: str) -> dict[str, float]:
        return self._keyed("latest_metrics", [run_id]).get(run_id, {})

    @_or_mlflow
    def artifact_paths(self, run_id: str, path: str | None = None) -> list[str]:
        folder = self.artifact_folder(run_id)
        if folder is None:
            raise _NotLocal(run_id)
        where = folder / path if path else folder
        if not where.is_dir():
            return []
        return sorted(f"{path}/{p.name}" if path else p.name for p in where.iterdir())

    @_or_mlflow
    def artifact_folder(self, run_id: str) -> Path | None:
        run = self._run(run_id)
        uri = run.info.artifact_uri if run is not None else None
        if not uri:
            raise _NotLocal(run_id)
        parsed = urlparse(uri)
        if parsed.scheme not in ("", "file"):
            return None
        return Path(unquote(parsed.path))


def open_run_model(tracking_uri: str | None = None) -> RunModel:
    """The run model of a store: read with sqlite3 where it is a local SQLite file with nothing waiting in
    the outage journal (which the MLflow store replays on opening), else through MLflow."""
    from btc_ai.tracking.journal import Journal
    from btc_ai.tracking.paths import journal_dir, resolve_tracking_uri
    from btc_ai.tracking.stores import check_store, sqlite_file

    uri = resolve_tracking_uri(tracking_uri)
    database = sqlite_file(uri)
    if database is not None:
        check_store(tracking_uri, must_exist=True, write=False)  # never creates an empty store to find nothing in
        if Journal(journal_dir(uri)).pending_count() == 0:
            try:
                return LocalRunModel(uri, database)
            except sqlite3.Error:
                pass
    from btc_ai.tracking.store import Tracker

    return RunModel(Tracker(uri))
