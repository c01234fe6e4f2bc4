"""The journaled tracking operations: each takes the tracker and the arguments recorded for it, and each
is idempotent, so replaying an entry twice (a process killed mid-replay) changes nothing."""

from __future__ import annotations

import contextlib
import posixpath
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.exceptions import MlflowException

from btc_ai.tracking.journal import Entry
from btc_ai.tracking.outage import is_outage, login_refused
from btc_ai.tracking.run_model.datasets import CONTEXT_TAG
from btc_ai.tracking.run_model.names import TAG_MODEL_PARAMS, TAG_MODEL_PATH, TAG_MODEL_VERSION, client_key


class Tracker(Protocol):
    """What an operation needs of `btc_ai.tracking.tracker.Tracker` (which runs them: it imports this module)."""

    client: MlflowClient

    def artifact_repository(self, run_id: str) -> Any: ...

MAX_METRICS_PER_CALL = 1000  # MLflow's limit of metrics per log_batch: one store call, one transaction
MAX_TAGS_PER_CALL = 100  # MLflow's limit of tags (and params) per log_batch


# -- the journaled operations: each takes the tracker and its recorded arguments ------------------------


def _create_run(tracker: Tracker, args: dict[str, Any]) -> str:
    tags = args["tags"]
    key, value = client_key(tags)
    found = tracker.client.search_runs([args["experiment_id"]], f"tags.`{key}` = '{value}'")
    if found:
        return found[0].info.run_id
    run = tracker.client.create_run(args["experiment_id"], tags=tags, run_name=args.get("name"),
                                    start_time=args.get("start_time"))
    return run.info.run_id


def _log_batch(tracker: Tracker, args: dict[str, Any]) -> None:
    metrics = [Metric(k, v, ts, step) for k, v, ts, step in args.get("metrics", [])]
    params = [Param(k, v) for k, v in args.get("params", [])]
    tags = [RunTag(k, v) for k, v in args.get("tags", [])]
    # one store call each, params first and tags last: a tag written with metrics (a checkpoint's marker)
    # never commits before them (MLflow's client would put the tags in its first call, the store commits
    # params, metrics and tags of one call in separate transactions in that order)
    client, run_id = tracker.client, args["run_id"]
    if params:
        client.log_batch(run_id, params=params, synchronous=True)
    for lo in range(0, len(metrics), MAX_METRICS_PER_CALL):
        client.log_batch(run_id, metrics=metrics[lo : lo + MAX_METRICS_PER_CALL], synchronous=True)
    if tags:
        client.log_batch(run_id, tags=tags, synchronous=True)


def merge_batches(first: Entry, second: Entry) -> Entry | None:
    """Two journaled metric batches of one run as one (``parts`` keeps both), while it fits one store call
    of metrics and one of tags; None otherwise. Params are never merged: a later entry's params would then be
    stored before an earlier entry's metrics. Every metric still precedes every tag of the merged batch, so a
    checkpoint's marker (a tag) still commits after its metrics."""
    if first.op != "log_batch" or second.op != "log_batch":
        return None
    a, b = first.args, second.args
    if a["run_id"] != b["run_id"] or a.get("params") or b.get("params"):
        return None
    metrics, tags = a.get("metrics", []) + b.get("metrics", []), a.get("tags", []) + b.get("tags", [])
    if len(metrics) > MAX_METRICS_PER_CALL or len(tags) > MAX_TAGS_PER_CALL:
        return None
    return Entry(second.seq, "log_batch", {"run_id": a["run_id"], "metrics": metrics, "tags": tags}, second.folder,
                 (first.parts or (first,)) + (second,))


def _already_done(exc: MlflowException) -> bool:
    """The store answered that what a delete removes is gone already (a replay after a crash), as opposed to
    not answering at all (an outage: the delete must be journaled, or the thing it removes stays for good)."""
    return not is_outage(exc) and login_refused(exc) is None


def _delete_tags(tracker: Tracker, args: dict[str, Any]) -> None:
    for key in args["keys"]:
        try:
            tracker.client.delete_tag(args["run_id"], key)
        except MlflowException as exc:
            if not _already_done(exc):
                raise


def _set_status(tracker: Tracker, args: dict[str, Any]) -> None:
    tracker.client.update_run(args["run_id"], status=args["status"])


def _set_terminated(tracker: Tracker, args: dict[str, Any]) -> None:
    tracker.client.set_terminated(args["run_id"], status=args["status"], end_time=args.get("end_time"))


def _log_artifact(tracker: Tracker, args: dict[str, Any]) -> None:
    tracker.artifact_repository(args["run_id"]).log_artifact(args["path"], args.get("artifact_path"))


def _log_artifacts(tracker: Tracker, args: dict[str, Any]) -> None:
    repo = tracker.artifact_repository(args["run_id"])
    if not args.get("immutable"):
        repo.log_artifacts(args["path"], args.get("artifact_path"))
        return
    # a content-addressed folder (a model a version points at): a file already there is never written again,
    # a missing one (an upload cut short) is added
    folder, root = args["artifact_path"], Path(args["path"])
    there = _files_under(repo, folder)
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = file.relative_to(root).as_posix()
        if relative not in there:
            repo.log_artifact(str(file), posixpath.join(folder, posixpath.dirname(relative)).rstrip("/"))


def _files_under(repo: Any, folder: str) -> set[str]:
    """Paths (relative to ``folder``) of every file under ``folder`` of an artifact repository."""
    found, todo = set(), [folder]
    while todo:
        for info in repo.list_artifacts(todo.pop()):
            if info.is_dir:
                todo.append(info.path)
            else:
                found.add(posixpath.relpath(info.path, folder))
    return found


def _delete_artifact(tracker: Tracker, args: dict[str, Any]) -> None:
    try:
        with contextlib.suppress(NotImplementedError, FileNotFoundError):  # a store that cannot delete; gone
            tracker.artifact_repository(args["run_id"]).delete_artifacts(args["artifact_path"])
    except MlflowException as exc:
        if not _already_done(exc):
            raise


DATASET_RACE_TRIES = 4  # a lost race is settled by the next try; four losses in a row are a fault


def _dataset_race(exc: BaseException) -> bool:
    """MLflow's store makes an experiment's dataset on first use by looking, then inserting: two trainings
    logging the same dataset at once on a database server both look, both insert, and the second insert
    breaks the datasets table's key (PostgreSQL's UniqueViolation on dataset_pk, seen under load). Sent
    again, the call finds the dataset the other made and links it."""
    text = str(exc)
    return isinstance(exc, MlflowException) and "dataset" in text and \
        any(word in text for word in ("UniqueViolation", "duplicate key", "UNIQUE constraint failed", "IntegrityError"))


def _log_inputs(tracker: Tracker, args: dict[str, Any]) -> None:
    # no check for inputs already there: MLflow's store logs an input once per dataset (name, digest) and run
    inputs = [DatasetInput(Dataset(d["name"], d["digest"], d["source_type"], d["source"], d.get("schema"),
                                   d.get("profile")), [InputTag(CONTEXT_TAG, d["context"])])
              for d in args["datasets"]]
    for attempt in range(1, DATASET_RACE_TRIES + 1):  # an idempotent call sent again, not a retry policy (recovery's)
        try:
            tracker.client.log_inputs(args["run_id"], datasets=inputs)
            return
        except MlflowException as exc:
            if attempt == DATASET_RACE_TRIES or not _dataset_race(exc):
                raise
            time.sleep(random.uniform(0.05, 0.5))  # apart from the one it raced


def _register_model(tracker: Tracker, args: dict[str, Any]) -> str:
    """Register ``runs:/<run_id>/<path>`` once (a replay finds the version it made), point its aliases at it,
    and record it on the run (right also when it was journaled and replayed)."""
    # mlflow.pyfunc (the candle model) loads in seconds: only when a model is registered
    from btc_ai.tracking.logged_model import ensure_version

    client, run_id = tracker.client, args["run_id"]
    version = ensure_version(client, run_id, args, source=f"runs:/{run_id}/{args['path']}")
    client.set_tag(run_id, TAG_MODEL_VERSION, version)
    client.set_tag(run_id, TAG_MODEL_PATH, args["path"])
    client.set_tag(run_id, TAG_MODEL_PARAMS, args["params_sha256"])
    return version


def _log_model(tracker: Tracker, args: dict[str, Any]) -> dict[str, str]:
    from btc_ai.tracking.logged_model import log_and_register  # mlflow.pyfunc: only when a model is logged

    return log_and_register(tracker.client, tracker.tracking_uri, args["run_id"], args)


OPERATIONS: dict[str, Callable[[Tracker, dict[str, Any]], Any]] = {
    "create_run": _create_run, "log_batch": _log_batch, "set_status": _set_status, "set_terminated": _set_terminated,
    "delete_tags": _delete_tags,
    "log_artifact": _log_artifact, "log_artifacts": _log_artifacts, "delete_artifact": _delete_artifact,
    "register_model": _register_model, "log_model": _log_model, "log_inputs": _log_inputs,
}
