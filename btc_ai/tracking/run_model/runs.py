"""`RunModel`: sessions, attempts, repairs and checkpoints on one tracking store, read and written as records."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from btc_ai.domain.errors import ResumeError
from btc_ai.domain.text_fit import fit_text
from btc_ai.tracking.credentials import redact
from btc_ai.tracking.run_model.datasets import DataInputs, DataSpan
from btc_ai.tracking.run_model.names import (
    ARTIFACT_CHECKPOINTS,
    CHECKPOINT_PATH,
    KIND_ATTEMPT,
    KIND_REPAIR,
    KIND_SESSION,
    LATEST,
    MODEL_URI,
    PROSE_TAGS,
    TAG_ATTEMPT,
    TAG_BUCKET,
    TAG_DATA_SOURCE,
    TAG_DESCRIPTION,
    TAG_ERROR_TYPE,
    TAG_FINAL_SHA,
    TAG_GENERATION_REACHED,
    TAG_KIND,
    TAG_LEASE_HEARTBEAT,
    TAG_LEASE_OWNER,
    TAG_NOTE,
    TAG_OUTCOME,
    TAG_PARENT,
    TAG_PLOTS_WARNING,
    TAG_REPAIR_RULE,
    TAG_REPAIRED_BY,
    TAG_RESUMED_FROM,
    TAG_RUN_NAME,
    TAG_SESSION,
    TAG_SKIPPED_CHECKPOINTS,
    TAG_STALE_ATTEMPTS,
    TAG_START_GENERATION,
    TAG_STATUS,
    TAG_STOP_REASON,
    TAG_TEST_SPAN,
    TAG_TRIGGERED_BY,
)
from btc_ai.tracking.run_model.outputs import RunOutputs, SessionSummary, repair_params
from btc_ai.tracking.run_model.records import (
    AttemptRecord,
    CheckpointRecord,
    ModelVersionRecord,
    RepairRecord,
    SessionRecord,
    _attempt,
    _repair,
    _session,
    _version,
)

if TYPE_CHECKING:  # the store loads mlflow (seconds): importing the run model's names must not
    from btc_ai.tracking.registry import Registration
    from btc_ai.tracking.tracker import Tracker


def run_or_none(client: Any, run_id: str) -> Any | None:
    """MLflow's `Run` of ``run_id``, None when the store has no such run."""
    from mlflow.exceptions import MlflowException  # mlflow: not loaded by importing the run model

    try:
        return client.get_run(run_id)
    except MlflowException:
        return None


def missing_version(ref: str, uri: str) -> ResumeError:
    """A model URI whose version is not (or no longer) in the registry: a version deleted in the UI keeps only
    a redacted row, so it is named as the version, never by the run ID MLflow left in it."""
    match = MODEL_URI.match(ref.strip())
    assert match is not None
    name, number = match["name"], match["version"]
    hint = f" (registered names are lower case: {name.lower()})" if name != name.lower() else ""
    what = (f"model version {name}/{number} does not exist (deleted?)" if number and number != LATEST
            else f"{ref}: no version of {name} answers to it (deleted?)")
    return ResumeError(f"{what} on {uri}{hint}; see the versions on the MLflow UI's Models page, or give the "
                       "session's run ID instead")

class RunModel(RunOutputs):
    """Sessions, attempts, repairs and checkpoints on one tracking store, as records; the only writer of runs
    above the tracking floor (what runs hold besides their lifecycle: `RunOutputs`)."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker

    @property
    def _client(self) -> Any:
        return self.tracker.client

    # -- reading ---------------------------------------------------------------------------------------

    def session(self, run_id: str) -> SessionRecord:
        return _session(self._client.get_run(run_id))

    def resolve_session(self, ref: str) -> SessionRecord:
        """The session behind a session run ID, an attempt or repair run ID, or a registered model URI;
        ResumeError (a user mistake) when there is none."""
        ref = ref.strip()
        if MODEL_URI.match(ref):
            ref = self._model_run_id(ref)
        elif ref.startswith("models:/"):
            raise ResumeError(f"{ref} is not models:/<name>/<version> or models:/<name>@<alias>")
        run = self._find_run(ref)
        if run is None:
            raise ResumeError(f"run {ref} does not exist on {self.uri}; check the ID "
                              "(btc-ai prints it at the start) and --tracking-uri")
        if run.info.lifecycle_stage == "deleted":
            from btc_ai.tracking.stores import deleted_run  # sqlalchemy: only for a deleted run

            raise deleted_run(ref, run.info.experiment_id, self.uri)
        kind = run.data.tags.get(TAG_KIND)
        if kind == KIND_SESSION:
            return _session(run)
        parent = run.data.tags.get(TAG_SESSION) or run.data.tags.get(TAG_PARENT)
        if kind in {KIND_ATTEMPT, KIND_REPAIR} and parent:
            return self.resolve_session(parent)
        raise ResumeError(f"run {ref} is not a btc_ai session, attempt or repair run")

    @property
    def uri(self) -> str:
        """The store's tracking URI."""
        return self.tracker.tracking_uri

    def _model_run_id(self, ref: str) -> str:
        """The run a model URI's version came from."""
        return self.model_version(ref).run_id or ""

    def has_run(self, run_id: str) -> bool:
        """Whether the store holds a run of that ID (read without MLflow where the store is a local file)."""
        return self._find_run(run_id.strip()) is not None

    def _find_run(self, run_id: str) -> Any | None:
        """The run (MLflow's `Run`, or a reader's look-alike), None when the store has no such run."""
        return run_or_none(self._client, run_id)

    def model_version(self, ref: str) -> ModelVersionRecord:
        """The version behind ``models:/<name>/<version|latest>`` or ``models:/<name>@<alias>``; ResumeError
        (a user mistake) when there is none."""
        from mlflow.exceptions import MlflowException  # mlflow: not loaded by importing the run model

        match = MODEL_URI.match(ref.strip())
        if not match:
            raise ResumeError(f"{ref} is not models:/<name>/<version> or models:/<name>@<alias>")
        name, number, alias = match["name"], match["version"], match["alias"]
        try:
            if LATEST in (number, alias):
                found = self._client.search_model_versions(f"name = '{name}'", order_by=["version_number DESC"],
                                                           max_results=1)
                if not found:
                    raise MlflowException(f"no versions of {name}")
                return _version(found[0])
            return _version(self._client.get_model_version(name, number) if number
                            else self._client.get_model_version_by_alias(name, alias))
        except MlflowException:
            raise missing_version(ref, self.uri) from None

    def set_alias(self, version: ModelVersionRecord, alias: str, tags: Mapping[str, str]) -> None:
        """Point ``alias`` at ``version`` and record why on it."""
        client = self._client
        client.set_registered_model_alias(version.name, alias, version.version)
        for key, value in tags.items():
            client.set_model_version_tag(version.name, version.version, key, redact(value) if key in PROSE_TAGS else value)

    def sessions(self, experiment_id: str | None = None) -> list[SessionRecord]:
        """Every session of an experiment (this tracker's by default), oldest first."""
        runs = self._client.search_runs([experiment_id or self.tracker.experiment_id],
                                        f"tags.`{TAG_KIND}` = '{KIND_SESSION}'", order_by=["attribute.start_time ASC"])
        return [_session(r) for r in runs]

    def newest_session(self) -> SessionRecord | None:
        """The newest session of any experiment on the store."""
        experiments = [e.experiment_id for e in self._client.search_experiments()]
        found = self._client.search_runs(experiments, f"tags.`{TAG_KIND}` = '{KIND_SESSION}'",
                                         order_by=["attributes.start_time DESC"], max_results=1) if experiments else []
        return _session(found[0]) if found else None

    def running_runs(self, experiment_id: str | None = None) -> list[str]:
        """IDs of the runs of an experiment (this tracker's by default) still RUNNING, of any kind."""
        runs = self._client.search_runs([experiment_id or self.tracker.experiment_id])
        return [r.info.run_id for r in runs if r.info.status == "RUNNING"]

    def artifact_folder(self, run_id: str) -> Path | None:
        """The local folder of a run's artifacts, where the store keeps them on this machine's disk."""
        uri = self._client.get_run(run_id).info.artifact_uri
        return Path(uri.removeprefix("file://")) if uri.startswith(("file://", "/")) else None

    def attempts(self, session: SessionRecord | str) -> list[AttemptRecord]:
        """The session's attempts in attempt order."""
        session_id, experiment = self._where(session)
        runs = self._client.search_runs([experiment], f"tags.`{TAG_PARENT}` = '{session_id}'")
        return sorted((_attempt(r) for r in runs if r.data.tags.get(TAG_KIND) == KIND_ATTEMPT), key=lambda a: a.number)

    def repairs(self, session: SessionRecord | str) -> list[RepairRecord]:
        """Every repair of the session (validation repairs and those after an error), oldest first."""
        session_id, experiment = self._where(session)
        runs = self._client.search_runs([experiment], f"tags.`{TAG_SESSION}` = '{session_id}'")
        return sorted((_repair(r) for r in runs if r.data.tags.get(TAG_KIND) == KIND_REPAIR),
                      key=lambda r: r.start_time)

    def _where(self, session: SessionRecord | str) -> tuple[str, str]:
        if isinstance(session, SessionRecord):
            return session.run_id, session.experiment_id
        return session, self.tracker.experiment_of(session)

    def checkpoints(self, attempts: list[AttemptRecord]) -> list[CheckpointRecord]:
        """Every checkpoint of these attempts; newest generation first, a later attempt's first."""
        refs = []
        for attempt in attempts:
            for path in self.artifact_paths(attempt.run_id, ARTIFACT_CHECKPOINTS):
                match = CHECKPOINT_PATH.match(path)
                if match:
                    refs.append(CheckpointRecord(attempt.run_id, path, int(match["generation"]), bool(match["emergency"]),
                                                 attempt.checkpoint_sha.get(Path(path).stem)))
        order = {a.run_id: k for k, a in enumerate(attempts)}
        return sorted(refs, key=lambda r: (r.generation, order[r.run_id], r.emergency), reverse=True)

    def download(self, run_id: str, artifact_path: str, folder: str | Path) -> Path:
        """One artifact into ``folder``; OSError when it cannot be had."""
        from mlflow.exceptions import MlflowException  # mlflow: not loaded by importing the run model

        try:
            return Path(self._client.download_artifacts(run_id, artifact_path, str(folder)))
        except MlflowException as exc:
            raise OSError(f"cannot download {artifact_path} of run {run_id}: {exc}") from exc

    def artifact_paths(self, run_id: str, path: str | None = None) -> list[str]:
        return [a.path for a in self._client.list_artifacts(run_id, path)]

    def has_model(self, session_id: str) -> bool:
        return self.session(session_id).model_path is not None

    def latest_metrics(self, run_id: str) -> dict[str, float]:
        """The latest value of every metric of a run (a session's summary and best-policy figures)."""
        return dict(self._client.get_run(run_id).data.metrics)

    def metric_history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        """(step, value) of one metric, in step order."""
        return sorted((m.step, m.value) for m in self._client.get_metric_history(run_id, key))

    def metric_rows(self, attempt: AttemptRecord) -> list[dict[str, Any]]:
        """Every metric of an attempt as one row per generation (the performance history)."""
        rows: dict[int, dict[str, Any]] = {}
        for key in self._client.get_run(attempt.run_id).data.metrics:
            for metric in self._client.get_metric_history(attempt.run_id, key):
                rows.setdefault(metric.step, {"generation": metric.step, "attempt": attempt.number})[key] = metric.value
        return [rows[step] for step in sorted(rows)]

    def register_policy(self, run_id: str, net: Any, card: Any, *, name: str, tags: Mapping[str, Any], description: str,
                       champion: bool, verdict: str, previous: Mapping[str, str],
                       move_champion: bool | None = None, figures: Mapping[str, float] | None = None, step: int = 0,
                       params: Mapping[str, Any] | None = None) -> Registration:
        """Log the policy ``net`` (with its `PolicyCard`) on the session run and register it as a version of
        ``name`` as a logged model (see `btc_ai.tracking.registry.log_model_version`); ``figures`` (at ``step``) go on
        the run and with the new model's ID, ``params`` explain the model on its page."""
        from btc_ai.tracking.registry import log_model_version

        return log_model_version(self.tracker, run_id, net, card, name=name, tags=tags, description=description,
                                 champion=champion, verdict=verdict, previous=previous, move_champion=move_champion,
                                 metrics=figures, step=step, params=params)

    def download_policy(self, run_id: str, model_path: str, folder: str | Path) -> Path:
        """The policy files of a session's model (``models:/<model_id>`` or an older run folder) into
        ``folder``; OSError when they cannot be had."""
        from mlflow.exceptions import MlflowException

        from btc_ai.tracking.registry import download_policy

        try:
            return download_policy(self._client, run_id, model_path, folder)
        except MlflowException as exc:
            raise OSError(f"cannot download the policy of {model_path} (run {run_id}): {exc}") from exc

    def load_model(self, session_id: str) -> Any:
        """The torch policy logged on the session run, read back from this store."""
        from btc_ai.tracking.registry import load_model  # mlflow.pyfunc: only when a model is read

        path = self.session(session_id).model_path
        if path is None:
            raise OSError(f"session {session_id} has no logged model")
        return load_model(self.tracker, session_id, path)

    def read_json(self, run_id: str, artifact_path: str) -> Any:
        with tempfile.TemporaryDirectory() as tmp:
            return json.loads(self.download(run_id, artifact_path, tmp).read_text(encoding="utf-8"))

    # -- writing ---------------------------------------------------------------------------------------

    def open_session(self, *, name: str, bucket: str, data_source: str, lease_owner: str, heartbeat: float,
                     parent: str | None = None, tags: Mapping[str, str] | None = None) -> str:
        """A new session run; with ``parent`` nested under that run (a walk-forward), ``tags`` added."""
        return self.tracker.create_run(KIND_SESSION, name=name, parent=parent, tags={
            TAG_STATUS: "running", TAG_BUCKET: bucket, TAG_DATA_SOURCE: data_source, TAG_LEASE_OWNER: lease_owner,
            TAG_LEASE_HEARTBEAT: f"{heartbeat:.0f}", **(tags or {})})

    def log_data_inputs(self, run_id: str, data: DataInputs, spans: Sequence[DataSpan]) -> None:
        """The run's data as MLflow dataset inputs, one per span (see `run_model.datasets`); again adds nothing."""
        if spans:
            self.tracker.log_inputs(run_id, data.records(spans))

    def reopen_session(self, session_id: str) -> None:
        """A resumed session runs again: MLflow status RUNNING, ``btc_ai.status`` running."""
        self.tracker.set_status(session_id, "RUNNING")
        self.tracker.set_tags(session_id, {TAG_STATUS: "running"})

    def set_lease(self, session_id: str, owner: str, heartbeat: float) -> None:
        self.tracker.set_tags(session_id, {TAG_LEASE_OWNER: owner, TAG_LEASE_HEARTBEAT: f"{heartbeat:.0f}"})

    def heartbeat(self, session_id: str, now: float) -> None:
        self.tracker.set_tags(session_id, {TAG_LEASE_HEARTBEAT: f"{now:.0f}"})

    def close_session(self, session_id: str, *, status: str, run_status: str, summary: SessionSummary | None, step: int,
                      final_params_sha256: str | None = None, description: str | None = None) -> None:
        """Summary metrics, the final status and description, the lease released (its tags removed: a session
        nobody holds has none), then the end."""
        self.tracker.log_values(session_id, summary.metrics() if summary else {}, step=step)
        tags = {TAG_STATUS: status}
        if final_params_sha256 is not None:
            tags[TAG_FINAL_SHA] = final_params_sha256
        if description:
            tags[TAG_DESCRIPTION] = fit_text(description, whole_at=f"`btc-ai report {session_id}`")
        self.tracker.set_tags(session_id, tags)
        self.tracker.delete_tags(session_id, [TAG_LEASE_OWNER, TAG_LEASE_HEARTBEAT])
        self.tracker.end_run(session_id, run_status)

    def record_outcome(self, session_id: str, *, stop_reason: str, test_span: str | None) -> None:
        """Why the training ended and which span its out-of-sample figures are of."""
        tags = {TAG_STOP_REASON: stop_reason[:5000]}
        if test_span:
            tags[TAG_TEST_SPAN] = test_span
        self.tracker.set_tags(session_id, tags)

    def warn_plots(self, session_id: str, warning: str) -> None:
        self.tracker.set_tags(session_id, {TAG_PLOTS_WARNING: warning[:5000]})

    def open_attempt(self, session_id: str, number: int, *, start_generation: int, repaired_by: str | None = None,
                     resumed_from: str | None = None, skipped: list[str] | None = None,
                     stale: list[str] | None = None) -> str:
        tags: dict[str, Any] = {TAG_ATTEMPT: number, TAG_START_GENERATION: start_generation}
        if repaired_by:
            tags[TAG_REPAIRED_BY] = repaired_by
        if resumed_from:
            tags[TAG_RESUMED_FROM] = resumed_from
        if skipped:
            tags[TAG_SKIPPED_CHECKPOINTS] = " | ".join(skipped)[:5000]
        if stale:
            tags[TAG_STALE_ATTEMPTS] = " | ".join(stale)[:5000]
        return self.tracker.create_run(KIND_ATTEMPT, parent=session_id, name=f"attempt-{number}", tags=tags)

    def attempt_succeeded(self, run_id: str, number: int) -> None:
        self.tracker.set_tags(run_id, {TAG_OUTCOME: "success", TAG_RUN_NAME: f"attempt-{number} (success)"})
        self.tracker.end_run(run_id, "FINISHED")

    def attempt_failed(self, run_id: str, *, number: int, outcome: str, error_type: str, generation_reached: int,
                       interrupted: bool, note: str | None = None) -> None:
        tags: dict[str, Any] = {TAG_OUTCOME: outcome, TAG_ERROR_TYPE: error_type,
                                TAG_GENERATION_REACHED: generation_reached,
                                TAG_RUN_NAME: f"attempt-{number} ({error_type} after generation {generation_reached})"}
        if note is not None:
            tags[TAG_NOTE] = note
        self.tracker.set_tags(run_id, tags)
        self.tracker.end_run(run_id, "KILLED" if interrupted else "FAILED")

    def log_repair(self, *, parent: str, session_id: str, rule: str, triggered_by: str, reason: str,
                   changes: Mapping[str, tuple[Any, Any]], data_actions: Sequence[str] = ()) -> str:
        """A repair run under ``parent``: the rule, what triggered it, each changed key before and after."""
        run = self.tracker.create_run(KIND_REPAIR, parent=parent, name=rule, tags={
            TAG_REPAIR_RULE: rule, TAG_TRIGGERED_BY: triggered_by, TAG_SESSION: session_id})
        self.tracker.log_params(run, repair_params(rule, reason, changes, data_actions))
        self.tracker.end_run(run, "FINISHED")
        return run
