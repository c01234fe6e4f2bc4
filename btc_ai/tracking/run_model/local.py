"""`LocalRunModel`: the run model read straight from a local SQLite store with sqlite3 (read-only), for
commands that mostly read (`btc-ai report`): importing mlflow and opening its store costs seconds, a
query milliseconds. Writes (marking a dead process's attempts) and anything the schema does not answer
go through the MLflow store, opened only then, and so does every read where the store's schema is not the
one `mlflow_internals` was checked against. A test keeps both readers giving the same records.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlparse

from btc_ai.domain.errors import BtcAiError
from btc_ai.tracking.mlflow_internals import CHECKED_MLFLOW, SCHEMA_DRIFT, StoreReader
from btc_ai.tracking.run_model.names import (
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
_log = logging.getLogger(__name__)


def _or_mlflow(method: Callable[..., T]) -> Callable[..., T]:
    """Answer from SQLite; where the schema does not (another MLflow version), from the MLflow store."""

    @functools.wraps(method)
    def wrapper(self: LocalRunModel, *args: Any, **kwargs: Any) -> T:
        try:
            return method(self, *args, **kwargs)
        except _NotLocal:
            pass
        except SCHEMA_DRIFT as exc:
            if isinstance(exc, BtcAiError):  # a verdict on the user's input, not a schema this reader misread
                raise
            self._drifted(exc)
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
        self._warned = False
        from btc_ai.tracking.sqlite_wal import remember_reader
        from btc_ai.tracking.stores import connect_readonly

        db = connect_readonly(database, timeout=30)  # also in a read-only folder
        remember_reader(db, database)
        self._store = StoreReader(db)

    @property
    def tracker(self) -> Any:  # type: ignore[override]
        if self._tracker is None:
            from btc_ai.tracking.tracker import Tracker

            self._tracker = Tracker(self.tracking_uri)
        return self._tracker

    def _drifted(self, exc: Exception) -> None:
        if not self._warned:
            self._warned = True
            _log.warning("reading %s with sqlite3 failed (%s: %s): its schema is not the one btc_ai was checked "
                         "against (MLflow %s); reading through MLflow instead, which is slower (see "
                         "docs/mlflow-internals.md)", self.database, type(exc).__name__, exc, CHECKED_MLFLOW)

    # -- the reading half of the run model ------------------------------------------------------------

    @_or_mlflow
    def session(self, run_id: str) -> SessionRecord:
        run = self._store.run(run_id)
        if run is None:
            raise _NotLocal(run_id)  # MLflow says how it is missing
        return _session(run)

    @_or_mlflow
    def resolve_session(self, ref: str) -> SessionRecord:
        return RunModel.resolve_session(self, ref)

    def _model_run_id(self, ref: str) -> str:
        match = MODEL_URI.match(ref)
        assert match is not None
        run_id = self._store.version_run(match["name"], match["version"], match["alias"],
                                         latest=LATEST in (match["version"], match["alias"]))
        if not run_id:
            raise missing_version(ref, self.uri)
        return run_id

    def _find_run(self, run_id: str) -> Any | None:
        return self._store.run(run_id)

    @property
    def uri(self) -> str:
        return self.tracking_uri

    @_or_mlflow
    def attempts(self, session: SessionRecord | str) -> list[Any]:
        session_id, experiment = self._where_local(session)
        runs = self._store.children(experiment, TAG_PARENT, session_id)
        return sorted((_attempt(r) for r in runs if r.data.tags.get(TAG_KIND) == KIND_ATTEMPT), key=lambda a: a.number)

    @_or_mlflow
    def repairs(self, session: SessionRecord | str) -> list[Any]:
        session_id, experiment = self._where_local(session)
        runs = self._store.children(experiment, TAG_SESSION, session_id)
        return sorted((_repair(r) for r in runs if r.data.tags.get(TAG_KIND) == KIND_REPAIR),
                      key=lambda r: r.start_time)

    def _where_local(self, session: SessionRecord | str) -> tuple[str, str]:
        if isinstance(session, SessionRecord):
            return session.run_id, session.experiment_id
        run = self._store.run(session)
        if run is None:
            raise _NotLocal(session)
        return session, run.info.experiment_id

    @_or_mlflow
    def metric_history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        return self._store.metric_history(run_id, key)

    @_or_mlflow
    def latest_metrics(self, run_id: str) -> dict[str, float]:
        return self._store.latest_metrics(run_id)

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
        run = self._store.run(run_id)
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
    from btc_ai.tracking.tracker import Tracker

    return RunModel(Tracker(uri))
