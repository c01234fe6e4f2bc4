"""Walk-forward runs: the parent run of kind ``walk_forward`` and its fold sessions, read and written as records.

A fold session is an ordinary session run, nested under the walk-forward run and tagged with its fold and
seed when it is created (in the same write), so a resume finds every fold's session from the store alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from btc_ai.domain.errors import ResumeError
from btc_ai.domain.text_fit import TAG_VALUE_LIMIT, fit_text
from btc_ai.tracking.run_model.names import (
    ARTIFACT_WALK_FORWARD_DESCRIPTION,
    ARTIFACT_WALK_FORWARD_PLOT,
    ARTIFACT_WALK_FORWARD_SPEC,
    ARTIFACT_WALK_FORWARD_TABLE,
    KIND_SESSION,
    KIND_WALK_FORWARD,
    METRIC_FOLD_BUY_AND_HOLD,
    METRIC_FOLD_TEST_RETURN,
    METRIC_WALK_FORWARD_PREFIX,
    PARAM_BLOCK_BARS,
    PARAM_FOLDS,
    PARAM_HELD_OUT_SHARE,
    PARAM_SEEDS,
    PARAM_TEST_FRACTION,
    TAG_BUCKET,
    TAG_DATA_FINGERPRINT,
    TAG_DATA_SOURCE,
    TAG_DESCRIPTION,
    TAG_FINAL_SHA,
    TAG_FOLD,
    TAG_FOLDS,
    TAG_KIND,
    TAG_LEASE_HEARTBEAT,
    TAG_LEASE_OWNER,
    TAG_NOTE,
    TAG_PARENT,
    TAG_SEED,
    TAG_SEEDS,
    TAG_SESSION,
    TAG_STATUS,
    TAG_STOP_REASON,
    TAG_TEST_SPAN,
    fold_rule_metric,
    fold_seed_metric,
)
from btc_ai.tracking.run_model.records import SessionRecord, _session
from btc_ai.tracking.run_model.runs import RunModel, run_or_none

if TYPE_CHECKING:
    from btc_ai.domain.fold_summary import Aggregate, FoldRow


@dataclass(frozen=True)
class ParentLink:
    """Where a new session run goes: nested under ``run_id``, named ``name``, with ``tags`` added. A nested
    session is a fold (an evaluation of the trainer: it moves no alias) unless it is a ``candidate`` (a
    search's held-out session, judged by the promotion gate like any other)."""

    run_id: str
    name: str
    tags: Mapping[str, str]
    candidate: bool = False


def fold_link(walk_forward_id: str, fold: int, seed: int) -> ParentLink:
    """The link of fold ``fold``, seed ``seed`` of a walk-forward run."""
    return ParentLink(walk_forward_id, f"fold-{fold}-seed-{seed}", {TAG_FOLD: str(fold), TAG_SEED: str(seed)})


@dataclass(frozen=True)
class WalkForwardRecord:
    """A walk-forward run as the run model sees it."""

    run_id: str
    experiment_id: str
    run_status: str  # MLflow's RUNNING | FINISHED | FAILED | KILLED
    status: str | None  # running | completed | failed | interrupted
    bucket: str | None
    data_source: str | None
    data_fingerprint: str | None
    folds: int
    seeds: tuple[int, ...]

    @property
    def completed(self) -> bool:
        return self.status == "completed"


@dataclass(frozen=True)
class FoldSessionRecord:
    """A session of a walk-forward: its fold and seed, and the session itself."""

    fold: int
    seed: int
    session: SessionRecord
    start_time: int

    @property
    def run_id(self) -> str:
        return self.session.run_id


@dataclass(frozen=True)
class SessionOutcome:
    """How a (fold) session ended: its summary metrics (``test/...`` among them) and the tags that say more."""

    status: str | None
    metrics: Mapping[str, float]
    test_span: str | None
    stop_reason: str | None
    final_params_sha256: str | None


def _walk_forward(run: Any) -> WalkForwardRecord:
    t = run.data.tags
    seeds = tuple(int(s) for s in t.get(TAG_SEEDS, "").split())
    return WalkForwardRecord(run.info.run_id, run.info.experiment_id, run.info.status, t.get(TAG_STATUS),
                             t.get(TAG_BUCKET), t.get(TAG_DATA_SOURCE), t.get(TAG_DATA_FINGERPRINT),
                             int(t.get(TAG_FOLDS, 0) or 0), seeds)


class WalkForwardRuns:
    """Walk-forward runs and their fold sessions on the store of ``runs``."""

    def __init__(self, runs: RunModel) -> None:
        self.runs = runs

    @property
    def tracker(self) -> Any:
        return self.runs.tracker

    # -- reading ---------------------------------------------------------------------------------------

    def _get(self, run_id: str) -> Any | None:
        return run_or_none(self.tracker.client, run_id)

    def find(self, ref: str) -> WalkForwardRecord | None:
        """The walk-forward behind ``ref``: a walk-forward run ID, or the ID of one of its fold sessions (or of an
        attempt or repair of one); None when ``ref`` is something else or nothing."""
        ref = ref.strip()
        if not ref or ref.startswith("models:/"):
            return None
        run = self._get(ref)
        for _ in range(3):  # repair -> session -> walk-forward at most
            if run is None:
                return None
            kind = run.data.tags.get(TAG_KIND)
            if kind == KIND_WALK_FORWARD:
                return _walk_forward(run)
            parent = run.data.tags.get(TAG_SESSION) or run.data.tags.get(TAG_PARENT)
            if (kind == KIND_SESSION and TAG_FOLD not in run.data.tags) or not parent:
                return None
            run = self._get(parent)
        return None

    def record(self, run_id: str) -> WalkForwardRecord:
        run = self._get(run_id)
        if run is None or run.data.tags.get(TAG_KIND) != KIND_WALK_FORWARD:
            raise ResumeError(f"run {run_id} is not a walk-forward run on {self.tracker.tracking_uri}")
        return _walk_forward(run)

    def spec(self, run_id: str) -> dict[str, Any]:
        """What the walk-forward was asked to do (its `ARTIFACT_WALK_FORWARD_SPEC`)."""
        try:
            return dict(self.runs.read_json(run_id, ARTIFACT_WALK_FORWARD_SPEC))
        except (OSError, ValueError) as exc:
            raise ResumeError(f"walk-forward {run_id} has no readable {ARTIFACT_WALK_FORWARD_SPEC} ({exc}); "
                              "it cannot be continued") from None

    def fold_sessions(self, walk_forward: WalkForwardRecord) -> dict[tuple[int, int], FoldSessionRecord]:
        """The session of every (fold, seed) begun so far; where one was begun twice, the newest."""
        runs = self.tracker.client.search_runs([walk_forward.experiment_id],
                                               f"tags.`{TAG_PARENT}` = '{walk_forward.run_id}'",
                                               order_by=["attribute.start_time ASC"])
        found: dict[tuple[int, int], FoldSessionRecord] = {}
        for run in runs:
            t = run.data.tags
            if t.get(TAG_KIND) == KIND_SESSION and TAG_FOLD in t and TAG_SEED in t:
                record = FoldSessionRecord(int(t[TAG_FOLD]), int(t[TAG_SEED]), _session(run), run.info.start_time)
                found[(record.fold, record.seed)] = record
        return found

    def outcome(self, session_id: str) -> SessionOutcome:
        run = self.tracker.client.get_run(session_id)
        t = run.data.tags
        return SessionOutcome(t.get(TAG_STATUS), dict(run.data.metrics), t.get(TAG_TEST_SPAN), t.get(TAG_STOP_REASON),
                              t.get(TAG_FINAL_SHA))

    # -- writing ---------------------------------------------------------------------------------------

    def open(self, *, name: str, bucket: str, data_source: str, data_fingerprint: str, folds: int,
             seeds: Sequence[int], lease_owner: str, heartbeat: float) -> str:
        return self.tracker.create_run(KIND_WALK_FORWARD, name=name, tags={
            TAG_STATUS: "running", TAG_BUCKET: bucket, TAG_DATA_SOURCE: data_source,
            TAG_DATA_FINGERPRINT: data_fingerprint, TAG_FOLDS: folds, TAG_SEEDS: " ".join(str(s) for s in seeds),
            TAG_LEASE_OWNER: lease_owner, TAG_LEASE_HEARTBEAT: f"{heartbeat:.0f}"})

    def record_plan(self, run_id: str, config: Mapping[str, Any], *, folds: int, seeds: Sequence[int],
                    held_out_share: float, block_bars: int, spec: Mapping[str, Any]) -> None:
        """What the walk-forward trains: the config every fold starts from and the fold plan as params (each fold
        has its own TEST_FRACTION), the whole plan as an artifact."""
        self.tracker.log_params(run_id, {**config, PARAM_TEST_FRACTION: "per fold", PARAM_FOLDS: folds,
                                         PARAM_SEEDS: " ".join(map(str, seeds)), PARAM_HELD_OUT_SHARE: held_out_share,
                                         PARAM_BLOCK_BARS: block_bars})
        self.tracker.log_dict(run_id, spec, ARTIFACT_WALK_FORWARD_SPEC)

    def record_results(self, run_id: str, rows: Sequence[FoldRow], agg: Aggregate) -> None:
        """The aggregate over folds, each fold's returns (step = fold number: the mean over seeds, each seed's,
        buy-and-hold's and each rule's), and the table of every fold and seed."""
        self.tracker.log_values(run_id, {METRIC_WALK_FORWARD_PREFIX + k: v for k, v in agg.metrics().items()})
        for number, (ret, hold) in enumerate(zip(agg.fold_returns, agg.fold_buy_and_hold, strict=True), start=1):
            per_seed = {fold_seed_metric(r.seed): r.test_return for r in rows if r.fold == number}
            rules = {fold_rule_metric(rule): returns[number - 1]
                     for rule, returns in agg.fold_baselines.items() if rule != "buy_and_hold"}
            self.tracker.log_values(run_id, {METRIC_FOLD_TEST_RETURN: ret, METRIC_FOLD_BUY_AND_HOLD: hold, **rules,
                                             **per_seed}, step=number)
        self.tracker.log_table_csv(run_id, [r.as_dict() for r in rows], ARTIFACT_WALK_FORWARD_TABLE)

    def add_plot(self, run_id: str, path: Path) -> None:
        """The walk-forward's plot, drawn to a file named as `plot_file` says."""
        self.tracker.log_artifact(run_id, path, str(PurePosixPath(ARTIFACT_WALK_FORWARD_PLOT).parent))

    plot_file = PurePosixPath(ARTIFACT_WALK_FORWARD_PLOT).name

    def describe(self, run_id: str, markdown: str) -> None:
        """The run's description in the MLflow UI; past MLflow's limit, the whole of it is an artifact the
        shortened description names (many folds make a long table)."""
        if len(markdown) > TAG_VALUE_LIMIT:
            self.tracker.log_text(run_id, markdown, ARTIFACT_WALK_FORWARD_DESCRIPTION)
        self.tracker.set_tags(run_id, {TAG_DESCRIPTION: fit_text(
            markdown, whole_at=f"artifact {ARTIFACT_WALK_FORWARD_DESCRIPTION}, the figures in {ARTIFACT_WALK_FORWARD_TABLE}")})

    def reopen(self, run_id: str) -> None:
        self.runs.reopen_session(run_id)  # the same two writes: RUNNING, status running

    def close(self, run_id: str, *, status: str, run_status: str) -> None:
        """The final status in the same write that releases the lease, then the end."""
        self.tracker.set_tags(run_id, {TAG_STATUS: status, TAG_LEASE_OWNER: ""})
        self.tracker.end_run(run_id, run_status)

    def abandon(self, session_id: str, note: str) -> None:
        """A fold session that never began an attempt (its process died while opening it): ended, with a note;
        the fold starts afresh in a new session."""
        self.tracker.set_tags(session_id, {TAG_STATUS: "failed", TAG_NOTE: note[:5000], TAG_LEASE_OWNER: ""})
        self.tracker.end_run(session_id, "FAILED")
