"""Search runs: the parent run of kind ``search``, the walk-forward of each trial nested under it (tagged with
the trial's number and state) and the session that scores the chosen configuration on the held-out block."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from btc_ai.domain.errors import ResumeError
from btc_ai.domain.text_fit import fit_text
from btc_ai.tracking.run_model.names import (
    ARTIFACT_SEARCH_SPEC,
    ARTIFACT_SEARCH_SUMMARY,
    KIND_SEARCH,
    KIND_WALK_FORWARD,
    TAG_BUCKET,
    TAG_DATA_FINGERPRINT,
    TAG_DATA_SOURCE,
    TAG_DESCRIPTION,
    TAG_HELD_OUT,
    TAG_KIND,
    TAG_LEASE_HEARTBEAT,
    TAG_LEASE_OWNER,
    TAG_PARENT,
    TAG_SESSION,
    TAG_STATUS,
    TAG_TRIAL,
    TAG_TRIAL_STATE,
    TAG_TRIALS,
)
from btc_ai.tracking.run_model.walk_forward import ParentLink

if TYPE_CHECKING:
    from btc_ai.tracking.run_model.runs import RunModel


@dataclass(frozen=True)
class SearchRecord:
    run_id: str
    experiment_id: str
    run_status: str
    status: str | None

    @property
    def completed(self) -> bool:
        return self.status == "completed"


def held_out_link(search_id: str, trial: int) -> ParentLink:
    """The link of the session that trains the chosen configuration (trial ``trial``'s) and scores it on the
    held-out block."""
    return ParentLink(search_id, f"held-out-trial-{trial}", {TAG_HELD_OUT: str(trial)})


class SearchRuns:
    """Search runs and their trials' walk-forwards on the store of ``runs``."""

    def __init__(self, runs: RunModel) -> None:
        self.runs = runs

    @property
    def tracker(self) -> Any:
        return self.runs.tracker

    def _get(self, run_id: str) -> Any | None:
        from mlflow.exceptions import MlflowException

        try:
            return self.tracker.client.get_run(run_id)
        except MlflowException:
            return None

    def find(self, ref: str) -> SearchRecord | None:
        """The search behind ``ref``: its run ID, or the ID of a run nested in it (a trial's walk-forward, one
        of its sessions, attempts or repairs, the held-out session); None for anything else."""
        ref = ref.strip()
        if not ref or ref.startswith("models:/"):
            return None
        run = self._get(ref)
        for _ in range(5):  # repair -> attempt -> session -> walk-forward -> search at most
            if run is None:
                return None
            t = run.data.tags
            if t.get(TAG_KIND) == KIND_SEARCH:
                return _record(run)
            parent = t.get(TAG_PARENT) or t.get(TAG_SESSION)
            if not parent:
                return None
            run = self._get(parent)
        return None

    def record(self, run_id: str) -> SearchRecord:
        run = self._get(run_id)
        if run is None or run.data.tags.get(TAG_KIND) != KIND_SEARCH:
            raise ResumeError(f"run {run_id} is not a search run on {self.tracker.tracking_uri}")
        return _record(run)

    def spec(self, run_id: str) -> dict[str, Any]:
        try:
            return dict(self.runs.read_json(run_id, ARTIFACT_SEARCH_SPEC))
        except (OSError, ValueError) as exc:
            raise ResumeError(f"search {run_id} has no readable {ARTIFACT_SEARCH_SPEC} ({exc}); it cannot be "
                              "continued") from None

    def trial_walk_forwards(self, record: SearchRecord) -> dict[int, tuple[str, str]]:
        """trial number -> (walk-forward run ID, trial state) of every trial begun; the newest where one was
        begun twice."""
        runs = self.tracker.client.search_runs([record.experiment_id], f"tags.`{TAG_PARENT}` = '{record.run_id}'",
                                               order_by=["attribute.start_time ASC"])
        return {int(r.data.tags[TAG_TRIAL]): (r.info.run_id, r.data.tags.get(TAG_TRIAL_STATE, ""))
                for r in runs if r.data.tags.get(TAG_KIND) == KIND_WALK_FORWARD and TAG_TRIAL in r.data.tags}

    def held_out_session(self, record: SearchRecord) -> tuple[str, int] | None:
        """(session run ID, trial) of the held-out session, if one was begun."""
        runs = self.tracker.client.search_runs([record.experiment_id], f"tags.`{TAG_PARENT}` = '{record.run_id}'",
                                               order_by=["attribute.start_time DESC"])
        for r in runs:
            if TAG_HELD_OUT in r.data.tags:
                return r.info.run_id, int(r.data.tags[TAG_HELD_OUT])
        return None

    # -- writing ---------------------------------------------------------------------------------------

    def open(self, *, name: str, bucket: str, data_source: str, data_fingerprint: str, trials: int,
             lease_owner: str, heartbeat: float) -> str:
        return self.tracker.create_run(KIND_SEARCH, name=name, tags={
            TAG_STATUS: "running", TAG_BUCKET: bucket, TAG_DATA_SOURCE: data_source,
            TAG_DATA_FINGERPRINT: data_fingerprint, TAG_TRIALS: trials, TAG_LEASE_OWNER: lease_owner,
            TAG_LEASE_HEARTBEAT: f"{heartbeat:.0f}"})

    def link_trial(self, walk_forward_id: str, search_id: str, trial: int) -> None:
        """Nest a trial's walk-forward under the search, with its number; its state is running."""
        self.tracker.set_tags(walk_forward_id, {TAG_PARENT: search_id, TAG_TRIAL: str(trial),
                                                TAG_TRIAL_STATE: "running"})

    def trial_state(self, walk_forward_id: str, state: str) -> None:
        """How the trial ended (complete, pruned, failed); a pruned trial's walk-forward ends KILLED."""
        self.tracker.set_tags(walk_forward_id, {TAG_TRIAL_STATE: state})
        if state == "pruned":
            self.tracker.set_tags(walk_forward_id, {TAG_STATUS: "pruned", TAG_LEASE_OWNER: ""})
            self.tracker.end_run(walk_forward_id, "KILLED")

    def describe(self, run_id: str, markdown: str) -> None:
        self.tracker.set_tags(run_id, {TAG_DESCRIPTION: fit_text(markdown, whole_at=f"artifact {ARTIFACT_SEARCH_SUMMARY}")})

    def summary(self, run_id: str) -> str:
        """The summary a completed search logged ('' when there is none)."""
        import tempfile

        try:
            with tempfile.TemporaryDirectory() as tmp:
                return self.runs.download(run_id, ARTIFACT_SEARCH_SUMMARY, tmp).read_text(encoding="utf-8")
        except (OSError, ValueError):
            return ""

    def reopen(self, run_id: str) -> None:
        self.runs.reopen_session(run_id)

    def close(self, run_id: str, *, status: str, run_status: str) -> None:
        self.tracker.set_tags(run_id, {TAG_STATUS: status, TAG_LEASE_OWNER: ""})
        self.tracker.end_run(run_id, run_status)


def _record(run: Any) -> SearchRecord:
    return SearchRecord(run.info.run_id, run.info.experiment_id, run.info.status, run.data.tags.get(TAG_STATUS))
