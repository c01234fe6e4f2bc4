"""The tracking store: one experiment on one MLflow store, every write through one path that goes
straight to the store or, while it is unreachable, to the outage journal (replayed in order later).

Knows runs, params, metrics, tags and artifacts by explicit run ID; what they mean is the run model's.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException

from btc_ai.domain.errors import CredentialsError
from btc_ai.tracking.context import context_tags
from btc_ai.tracking.credentials import login_hint, redact, redact_logs
from btc_ai.tracking.journal import Entry, Journal, is_placeholder, new_placeholder, substitute
from btc_ai.tracking.operations import OPERATIONS, merge_batches
from btc_ai.tracking.outage import HTTP_TIMEOUT_S, is_outage, login_refused, outage_reason
from btc_ai.tracking.paths import artifact_root, journal_dir, resolve_tracking_uri
from btc_ai.tracking.run_model.names import PROSE_TAGS, TAG_CLIENT_KEY, TAG_KIND, TAG_PARENT
from btc_ai.tracking.sqlite_wal import make_durable, tune_sqlite
from btc_ai.tracking.stores import check_uri, deleted_experiment, ensure_store, sqlite_file

_log = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = "btc-ai"
MAX_PARAM_LENGTH = 6000  # MLflow rejects longer param values

REPLAY_INTERVAL_S = 1.0


def _mask_prose(args: dict[str, Any]) -> dict[str, Any]:
    """``args`` with secrets masked in the text written for people only (a run's description, notes, a
    version's description: `PROSE_TAGS`); every ID, key, param, metric and path goes as it is."""
    out = dict(args)
    tags = out.get("tags")
    if isinstance(tags, dict):
        out["tags"] = {k: redact(v) if k in PROSE_TAGS and isinstance(v, str) else v for k, v in tags.items()}
    elif isinstance(tags, list):
        out["tags"] = [[k, redact(v)] if k in PROSE_TAGS and isinstance(v, str) else [k, v] for k, v in tags]
    if isinstance(out.get("description"), str):
        out["description"] = redact(out["description"])
    return out


def _param_value(value: Any) -> str:
    text = str(value)
    return text if len(text) <= MAX_PARAM_LENGTH else text[: MAX_PARAM_LENGTH - 15] + "...[truncated]"


class Tracker:
    """Runs of one experiment on one tracking server, always addressed by explicit run ID."""

    def __init__(self, tracking_uri: str | None = None, experiment: str = DEFAULT_EXPERIMENT) -> None:
        self.tracking_uri = resolve_tracking_uri(tracking_uri)  # a login in the URI moves to MLflow's variables
        redact_logs()  # mlflow's own log handler exists now
        check_uri(self.tracking_uri, "tracking URI")  # MLflow's own refusals are tracebacks or minutes of retries
        ensure_store(self.tracking_uri)  # a local store: whole (built aside if new) or a StoreError
        self.database = sqlite_file(self.tracking_uri)  # a local store's file, else None
        if self.tracking_uri.startswith("sqlite:"):
            tune_sqlite()
        # a command's stderr is its one-line errors and warnings, not MLflow's download bars (a model's files)
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        if self.tracking_uri.startswith(("http://", "https://")):
            # bounded calls: a dead server must cost a generation milliseconds, not MLflow's minutes of retries
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", HTTP_TIMEOUT_S)
        self.client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        self.experiment_name = experiment
        self._repos: dict[str, Any] = {}
        self.journal = Journal(journal_dir(self.tracking_uri))
        self._write_lock = threading.Lock()
        self._ids: dict[str, str] = {}  # placeholder -> real run ID, for runs created while offline
        self._offline = self.journal.has_pending()  # entries of an earlier process go first
        self._replayer: threading.Thread | None = None
        self._closing = threading.Event()
        self.outage: str | None = None  # the first error of the current outage, for messages
        if self._offline:
            self.replay()
            if self._offline:
                self._start_replayer()
        self.experiment_id = self._experiment_id(experiment)

    def refusal(self, exc: BaseException, what: str) -> CredentialsError | None:
        """The one-line `CredentialsError` for a login or permission the server refused, else None."""
        status = login_refused(exc)
        if status is None:
            return None
        if status == 401:
            return CredentialsError(f"the tracking server at {self.tracking_uri} refused the request: "
                                    f"{login_hint(self.tracking_uri)}")
        user = os.environ.get("MLFLOW_TRACKING_USERNAME") or "(no user)"
        return CredentialsError(f"the tracking server at {self.tracking_uri} does not let user {user!r} {what}; "
                                "ask its admin for EDIT permission on the experiment (or train into your own with "
                                "--experiment NAME)")

    def _experiment_id(self, name: str) -> str:
        try:
            return self._find_or_create_experiment(name)
        except MlflowException as exc:
            refused = self.refusal(exc, f"use experiment {name!r}")
            if refused is None:
                raise
            raise refused from None

    def _find_or_create_experiment(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None and found.lifecycle_stage == "deleted":  # MLflow would refuse every run in it
            raise deleted_experiment(name, found.experiment_id, self.tracking_uri)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(name, artifact_location=artifact_root(self.tracking_uri))
        except MlflowException:  # created meanwhile by a concurrent process
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def experiment_of(self, run_id: str) -> str:
        return self.client.get_run(run_id).info.experiment_id

    # -- the write path: straight to the store, or to the journal while the store is unreachable --------

    def _write(self, op: str, args: dict[str, Any], files: Mapping[str, str | Path] | None = None) -> Any:
        """Apply one write now, or journal it (in order) when the store is unreachable or earlier writes
        still wait in the journal. A journaled ``create_run`` returns a placeholder run ID."""
        if op == "create_run":
            args = {**args, "placeholder": new_placeholder()}
        args = _mask_prose(args)  # masking is for people: data in flight is never rewritten
        with self._write_lock:
            if self._ids:  # runs created while offline, known by their real IDs since
                args = substitute(args, self._ids)
            if not self._offline:
                try:
                    return self._apply(op, args)
                except Exception as exc:
                    what = (f"write to run {args['run_id']}" if args.get("run_id")
                            else f"create runs in experiment {self.experiment_name!r}")
                    refused = self.refusal(exc, what)
                    if refused is not None:  # a login or permission problem, not an outage: nothing journaled
                        raise refused from None
                    if not is_outage(exc):
                        raise
                    self._go_offline(exc)
            self.journal.append(op, args, dict(files or {}))
            return args.get("placeholder")

    def _go_offline(self, exc: BaseException) -> None:
        self._offline = True
        self.outage = outage_reason(exc)
        _log.warning("tracking store %s unreachable (%s); writes go to the journal in %s and are replayed when "
                     "it is back", self.tracking_uri, self.outage, self.journal.folder)
        self._start_replayer()

    @property
    def offline(self) -> bool:
        return self._offline

    def pending(self) -> int:
        """Writes waiting in the journal for the store."""
        return self.journal.pending_count()

    def _start_replayer(self) -> None:
        if self._replayer is not None and self._replayer.is_alive():
            return
        self._replayer = threading.Thread(target=self._replay_loop, name="btc-ai-journal", daemon=True)
        self._replayer.start()

    def _replay_loop(self) -> None:
        while self._offline and not self._closing.wait(REPLAY_INTERVAL_S):
            if self.reachable():
                self.replay()

    def reachable(self, timeout: float = 1.0) -> bool:
        """A cheap probe before replaying: the server's /health for HTTP stores; SQLite is simply tried."""
        if not self.tracking_uri.startswith(("http://", "https://")):
            return True
        try:
            with urllib.request.urlopen(f"{self.tracking_uri.rstrip('/')}/health", timeout=timeout) as response:
                response.read()
            return True
        except OSError:
            return False

    def replay(self, *, wait: bool = False) -> int:
        """Send every journaled write, in order; returns how many were sent (fewer when the store is still
        unreachable). Back to direct writes once the journal is empty. ``wait``: where another process is
        sending the shared journal, wait for it, then send the rest (before this process exits)."""
        try:
            sent = self.journal.replay(self._apply_entry, wait=wait, merge=merge_batches)
        except Exception as exc:
            if login_refused(exc) is not None:  # a login changed meanwhile: the entries wait for a good one
                _log.warning("journal replay to %s refused the login (%s): the writes wait; fix the login, then "
                             "btc-ai sync", self.tracking_uri, redact(str(exc))[:200])
                return 0
            if not is_outage(exc):
                raise
            return 0
        with self._write_lock:  # this process journals only under this lock: nothing of ours slips in
            self._ids.update(self.journal.ids())
            if self._offline and not self.journal.has_pending():
                _log.warning("tracking store %s reachable again: %d journaled writes sent", self.tracking_uri, sent)
                self._offline = False
                self.outage = None
        return sent

    def make_durable(self) -> None:
        """Every write stored so far survives a power cut too (a local store's log fsynced; a server's database
        commits durably itself)."""
        make_durable(self.database)
        self.journal.flush()

    def close(self) -> None:
        """Stop the background replay (what is still journaled waits for the next command or `btc-ai sync`)."""
        self._closing.set()

    def _apply_entry(self, entry: Entry, ids: dict[str, str]) -> str | None:
        args = substitute(entry.args, ids)
        try:
            return self._apply(entry.op, args)
        except Exception as exc:
            if is_outage(exc) or login_refused(exc) is not None:
                raise
            if entry.parts:  # a merged batch refused: each of its entries on its own, so only the bad one is kept
                for part in entry.parts:
                    self._apply_entry(part, ids)
                return None
            # the store answered but refuses this write: it will never succeed, so it must not block
            # everything behind it; it is kept beside the journal with the reason
            with open(self.journal.folder / "rejected.jsonl", "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"seq": entry.seq, "op": entry.op, "args": args, "error": redact(str(exc))[:2000]}) + "\n")
            _log.warning("journal entry %s (%s) rejected by the store: %s", entry.seq, entry.op, exc)
            return None

    def _apply(self, op: str, args: dict[str, Any]) -> Any:
        """One write against the store. Each is idempotent, so replaying an entry twice changes nothing."""
        run_id = args.get("run_id")
        if run_id is not None and is_placeholder(run_id):  # its creation was rejected: so is this
            raise _Unresolved(f"run {run_id} was never created on the store")
        operation = OPERATIONS.get(op)
        if operation is None:
            raise ValueError(f"unknown tracking operation {op!r}")
        return operation(self, args)

    # -- runs ---------------------------------------------------------------------------------

    def create_run(self, kind: str, *, parent: str | None = None, name: str | None = None,
                   tags: Mapping[str, Any] | None = None) -> str:
        # MLflow's context tags first: a tag of the run model wins (mlflow.runName, mlflow.parentRunId)
        all_tags = {**context_tags(), TAG_KIND: kind, **(tags or {}), TAG_CLIENT_KEY: uuid.uuid4().hex}
        if parent:
            all_tags[TAG_PARENT] = parent
        return self._write("create_run", {"experiment_id": self.experiment_id, "name": name,
                                          "tags": {k: str(v) for k, v in all_tags.items()},
                                          "start_time": int(time.time() * 1000)})

    def set_status(self, run_id: str, status: str) -> None:
        """MLflow's run status (a resumed session is RUNNING again) without ending the run."""
        self._write("set_status", {"run_id": run_id, "status": status})

    def end_run(self, run_id: str, status: str) -> None:
        """Close a run with a terminal status: FINISHED, FAILED or KILLED."""
        self._write("set_terminated", {"run_id": run_id, "status": status, "end_time": int(time.time() * 1000)})

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        items = [[str(k), _param_value(v)] for k, v in params.items()]
        for lo in range(0, len(items), 100):
            self._write("log_batch", {"run_id": run_id, "params": items[lo : lo + 100]})

    def delete_tags(self, run_id: str, keys: Iterable[str]) -> None:
        """Remove tags that no longer say anything (a released lease, a retired checkpoint's marker)."""
        self._write("delete_tags", {"run_id": run_id, "keys": list(keys)})

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        self.log_metrics(run_id, [], tags)

    def log_metrics(self, run_id: str, metrics: Iterable[Metric], tags: Mapping[str, str] | None = None) -> None:
        """Metrics (and optionally tags, stored after every metric) in as few store calls as MLflow's batch
        limits allow."""
        items = [[m.key, m.value, m.timestamp, m.step] for m in metrics]
        tag_items = [[str(k), str(v)] for k, v in (tags or {}).items()]
        self._write("log_batch", {"run_id": run_id, "metrics": items, "tags": tag_items[:100]})
        for lo in range(100, len(tag_items), 100):
            self._write("log_batch", {"run_id": run_id, "tags": tag_items[lo : lo + 100]})

    def log_values(self, run_id: str, values: Mapping[str, float], step: int = 0) -> None:
        """Plain numbers (summaries) as metrics at one step."""
        stamp = int(time.time() * 1000)
        self.log_metrics(run_id, (Metric(k, float(v), stamp, step) for k, v in values.items()))

    def log_inputs(self, run_id: str, datasets: list[dict[str, Any]]) -> None:
        """Dataset inputs (`run_model.datasets.DataInputs.records`): journaled like every other write."""
        self._write("log_inputs", {"run_id": run_id, "datasets": datasets})

    def artifact_repository(self, run_id: str) -> Any:
        """The run's artifact repository, resolved once: MlflowClient.log_artifact reads the whole run
        (params, tags, latest metrics) from the store on every call to find it."""
        repo = self._repos.get(run_id)
        if repo is None:
            from btc_ai.tracking.mlflow_internals import artifact_repository

            repo = self._repos[run_id] = artifact_repository(self.client.get_run(run_id).info.artifact_uri,
                                                             self.tracking_uri)
        return repo

    def delete_artifact(self, run_id: str, artifact_path: str) -> None:
        """Remove one artifact (checkpoint retention) where the artifact store can delete."""
        self._write("delete_artifact", {"run_id": run_id, "artifact_path": artifact_path})

    def log_artifact(self, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
        self._write("log_artifact", {"run_id": run_id, "path": str(path), "artifact_path": artifact_path},
                    files={"path": path})

    def log_artifacts(self, run_id: str, folder: str | Path, artifact_path: str | None = None, *,
                      immutable: bool = False) -> None:
        """A whole folder (copied into the journal while the store is unreachable); ``immutable``: files
        already at ``artifact_path`` are kept as they are (a content-addressed folder is written once)."""
        self._write("log_artifacts", {"run_id": run_id, "path": str(folder), "artifact_path": artifact_path,
                                      **({"immutable": True} if immutable else {})}, files={"path": folder})

    def log_model(self, run_id: str, model: Mapping[str, Any], policy: str | Path) -> dict[str, str] | None:
        """Log the policy folder ``policy`` as a logged model of the run and register it, as ``model``
        describes it (see `btc_ai.tracking.registry.log_model_version`): ``{"version", "model_id"}``, None while
        journaled (the policy files wait in the journal)."""
        return self._write("log_model", {"run_id": run_id, **model, "policy": str(policy)}, files={"policy": policy})

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(artifact_file).name
            path.write_text(text, encoding="utf-8")
            parent = str(Path(artifact_file).parent)
            self.log_artifact(run_id, path, None if parent == "." else parent)

    def log_dict(self, run_id: str, data: Mapping[str, Any], artifact_file: str) -> None:
        self.log_text(run_id, json.dumps(dict(data), indent=2, default=str), artifact_file)

    def log_table_csv(self, run_id: str, rows: list[Mapping[str, Any]], artifact_file: str) -> None:
        """Rows with possibly different keys as one CSV artifact (missing cells left empty)."""
        columns: list[str] = []
        for row in rows:
            columns.extend(k for k in row if k not in columns)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(artifact_file).name
            with open(path, "w", newline="", encoding="utf-8") as fh:
                writer = csv.DictWriter(fh, fieldnames=columns)
                writer.writeheader()
                writer.writerows(rows)
            parent = str(Path(artifact_file).parent)
            self.log_artifact(run_id, path, None if parent == "." else parent)

class _Unresolved(Exception):
    """An entry names a run whose creation has not been replayed (it failed): it waits."""
