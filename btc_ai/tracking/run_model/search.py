"""Search runs: the parent run of kind ``search``, the walk-forward of each trial nested under it (tagged with
the trial's number and state) and the session that scores the chosen configuration on the held-out block."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from btc_ai.domain.errors import ResumeError
from btc_ai.domain.text_fit import fit_text
from btc_ai.tracking.run_model.names import (
    ARTIFACT_SEARCH_SPEC,
    ARTIFACT_SEARCH_SUMMARY,
    ARTIFACT_SEARCH_TABLE,
    KIND_SEARCH,
    KIND_WALK_FORWARD,
    METRIC_SEARCH_BEST_PREFIX,
    METRIC_SEARCH_PREFIX,
    METRIC_SEARCH_TRIAL_VALUE,
    METRIC_WALK_FORWARD_PREFIX,
    PARAM_BEST_PREFIX,
    PARAM_FOLDS,
    PARAM_HELD_OUT,
    PARAM_HELD_OUT_SHARE,
    PARAM_PRUNER,
    PARAM_SAMPLER,
    PARAM_SAMPLER_SEED,
    PARAM_SEEDS,
    PARAM_SPACE,
    PARAM_STUDY_STORAGE,
    PARAM_TRIALS,
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
from btc_ai.tracking.run_model.runs import RunModel, run_or_none
from btc_ai.tracking.run_model.walk_forward import ParentLink


@dataclass(frozen=True)
class SearchRecord:
    run_id: str
    experiment_id: str
    run_status: str
    status: str | None

    @property
    def completed(self) -> bool:
        return self.status == "completed"


NAN = float("nan")


@dataclass(frozen=True)
class SearchVerdict:
    """The study's verdict on its chosen configuration: each field a metric of the search run, search/<field>
    (a figure that is not a number, such as the held-out ones of a held-out session that failed, is left out)."""

    best_walk_forward_sharpe: float
    best_trial: float  # Optuna's number of the chosen trial
    trials: float
    complete: float
    pruned: float
    failed: float
    deflated_sharpe: float
    pbo: float
    pbo_splits: float
    best_fold_return_sharpe: float
    held_out_sharpe: float = NAN
    held_out_return: float = NAN
    held_out_buy_and_hold_return: float = NAN

    def metrics(self) -> dict[str, float]:
        return {METRIC_SEARCH_PREFIX + k: float(v) for k, v in asdict(self).items() if math.isfinite(v)}


def held_out_link(search_id: str, trial: int) -> ParentLink:
    """The link of the session that trains the chosen configuration (trial ``trial``'s) and scores it on the
    held-out block."""
    return ParentLink(search_id, f"held-out-trial-{trial}", {TAG_HELD_OUT: str(trial)}, candidate=True)


class SearchRuns:
    """Search runs and their trials' walk-forwards on the store of ``runs``."""

    def __init__(self, runs: RunModel) -> None:
        self.runs = runs

    @property
    def tracker(self) -> Any:
        return self.runs.tracker

    def _get(self, run_id: str) -> Any | None:
        return run_or_none(self.tracker.client, run_id)

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

    def record_study(self, run_id: str, config: Mapping[str, Any], *, trials: int, folds: int, seeds: Sequence[int],
                     sampler: str, sampler_seed: int, pruner: str, held_out_share: float, held_out: str,
                     space: Sequence[str], storage: str, spec: Mapping[str, Any]) -> None:
        """What the study was asked to do: the config every trial starts from and the budget as params, the
        whole request (data, space, held-out cut) as the artifact a resume reads."""
        self.tracker.log_params(run_id, {**config, PARAM_TRIALS: trials, PARAM_FOLDS: folds,
                                         PARAM_SEEDS: " ".join(map(str, seeds)), PARAM_SAMPLER: sampler,
                                         PARAM_SAMPLER_SEED: sampler_seed, PARAM_PRUNER: pruner,
                                         PARAM_HELD_OUT_SHARE: held_out_share, PARAM_HELD_OUT: held_out,
                                         PARAM_SPACE: " ".join(space), PARAM_STUDY_STORAGE: storage})
        self.tracker.log_dict(run_id, spec, ARTIFACT_SEARCH_SPEC)

    def record_trials(self, run_id: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """The table of every trial: its state, params and value."""
        self.tracker.log_table_csv(run_id, list(rows), ARTIFACT_SEARCH_TABLE)

    def record_verdict(self, run_id: str, verdict: SearchVerdict) -> None:
        self.tracker.log_values(run_id, verdict.metrics())

    def record_choice(self, run_id: str, params: Mapping[str, Any], walk_forward: Mapping[str, float]) -> None:
        """The chosen trial's searched values (best/<key>) and, beside the search's own figures, its
        walk-forward's aggregate (``walk_forward``: that run's metrics; the walk_forward/ ones are kept)."""
        self.tracker.log_params(run_id, {PARAM_BEST_PREFIX + k: v for k, v in params.items()})
        figures = {METRIC_SEARCH_BEST_PREFIX + k: v for k, v in walk_forward.items()
                   if k.startswith(METRIC_WALK_FORWARD_PREFIX) and math.isfinite(v)}
        if figures:
            self.tracker.log_values(run_id, figures)

    def record_history(self, run_id: str, values: Mapping[int, float]) -> None:
        """Each trial's value at its number (trial number -> value)."""
        for number, value in values.items():
            self.tracker.log_values(run_id, {METRIC_SEARCH_TRIAL_VALUE: float(value)}, step=number)

    def add_plot(self, run_id: str, path: str | Path) -> None:
        self.runs.add_plot(run_id, path)

    def record_summary(self, run_id: str, text: str) -> None:
        """The verdict as printed (`summary` reads it back)."""
        self.tracker.log_text(run_id, text, ARTIFACT_SEARCH_SUMMARY)

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
