"""What sessions, attempts and backtests hold besides their lifecycle tags (config, reports, figures, plots),
written through `RunModel` (this class is its base): one typed method a thing recorded, the names from `names`.

The floors above never name a tag, param, metric or artifact: they hand over values, these methods say where
they go (tests/test_one_writer.py keeps it so).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from btc_ai.tracking.run_model.names import (
    ARTIFACT_BACKTEST,
    ARTIFACT_DATA_REPORT,
    ARTIFACT_ERROR_JSON,
    ARTIFACT_ERROR_MD,
    ARTIFACT_HISTORY,
    ARTIFACT_PLOTS,
    ARTIFACT_REQUESTED_CONFIG,
    KIND_BACKTEST,
    METRIC_ATTEMPTS,
    METRIC_BARS,
    METRIC_BEST_GENERATION,
    METRIC_BEST_REWARD,
    METRIC_BUY_AND_HOLD_PREFIX,
    METRIC_COST_BPS,
    METRIC_ELAPSED_TIME,
    METRIC_FAILED_ATTEMPTS,
    METRIC_NULL_PERCENTILE,
    METRIC_POLICY_PREFIX,
    METRIC_REPAIRS,
    PARAM_AFTER,
    PARAM_BEFORE,
    PARAM_DATA_ACTION,
    PARAM_REASON,
    PARAM_RULE,
    SESSION_FIGURE_PREFIXES,
    TAG_BACKTEST_SPAN,
    TAG_DATA_FINGERPRINT,
    TAG_DATA_SOURCE,
    TAG_MODEL_URI,
    baseline_metric,
)

if TYPE_CHECKING:
    from btc_ai.domain.backtest import BacktestResult
    from btc_ai.tracking.tracker import Tracker


@dataclass(frozen=True)
class SessionSummary:
    """A session's summary metrics, written when it closes."""

    attempts: int
    failed_attempts: int
    elapsed_time: float
    repairs: int
    best_reward: float | None = None  # None: no validation scored yet

    def metrics(self) -> dict[str, float]:
        values = {METRIC_ATTEMPTS: self.attempts, METRIC_FAILED_ATTEMPTS: self.failed_attempts,
                  METRIC_ELAPSED_TIME: self.elapsed_time, METRIC_REPAIRS: self.repairs}
        if self.best_reward is not None:
            values[METRIC_BEST_REWARD] = self.best_reward
        return values


def repair_params(rule: str, reason: str, changes: Mapping[str, tuple[Any, Any]],
                  data_actions: Sequence[str]) -> dict[str, Any]:
    """A repair run's params: the rule, the reason, each changed key before and after, each data action."""
    params: dict[str, Any] = {PARAM_REASON: reason, PARAM_RULE: rule}
    for key, (before, after) in changes.items():
        params[key + PARAM_BEFORE] = before
        params[key + PARAM_AFTER] = after
    for number, action in enumerate(data_actions, 1):
        params[f"{PARAM_DATA_ACTION}{number}"] = action
    return params


class RunOutputs:
    """The typed writes of what runs hold (see the module's docstring)."""

    tracker: Tracker

    def record_config(self, run_id: str, effective: Mapping[str, Any], requested: Mapping[str, Any]) -> None:
        """A session's config: what trains as params, what was asked for beside it as an artifact."""
        self.tracker.log_params(run_id, effective)
        self.tracker.log_dict(run_id, requested, ARTIFACT_REQUESTED_CONFIG)

    def record_attempt_config(self, run_id: str, effective: Mapping[str, Any]) -> None:
        """The config an attempt trains with (after the repairs before it), as params."""
        self.tracker.log_params(run_id, effective)

    def record_data_report(self, run_id: str, source: str, report: Mapping[str, Any]) -> None:
        """The data as read from its source, with what the loader repaired."""
        self.tracker.log_dict(run_id, {"source": source, "report": report}, ARTIFACT_DATA_REPORT)

    def record_error_report(self, run_id: str, report: Mapping[str, Any], markdown: str) -> None:
        """A failed attempt's error report, as JSON and as the markdown a person reads."""
        self.tracker.log_dict(run_id, report, ARTIFACT_ERROR_JSON)
        self.tracker.log_text(run_id, markdown, ARTIFACT_ERROR_MD)

    def record_history(self, session_id: str, rows: list[Mapping[str, Any]]) -> None:
        """Every generation's metrics of every attempt, one CSV row per generation."""
        self.tracker.log_table_csv(session_id, rows, ARTIFACT_HISTORY)

    def record_best_policy(self, session_id: str, metrics: Mapping[str, Any], *, generation: int, step: int) -> None:
        """The best policy's figures (validation, test, baselines) of the training's metrics, and its generation."""
        values = {k: v for k, v in metrics.items() if k.startswith(SESSION_FIGURE_PREFIXES)}
        self.tracker.log_values(session_id, {**values, METRIC_BEST_GENERATION: float(generation)}, step=step)

    def add_plot(self, run_id: str, path: str | Path) -> None:
        """A picture, or the table behind one (trades.csv, equity.csv), under the run's plots/, by its file name."""
        self.tracker.log_artifact(run_id, path, ARTIFACT_PLOTS)

    def open_backtest(self, result: BacktestResult, *, model_uri: str, data_source: str, fingerprint: str) -> str:
        """A backtest run of ``model_uri`` over ``result``'s span."""
        return self.tracker.create_run(KIND_BACKTEST, name=f"backtest-{result.start:%Y%m%d}-{result.end:%Y%m%d}", tags={
            TAG_MODEL_URI: model_uri, TAG_DATA_FINGERPRINT: fingerprint, TAG_DATA_SOURCE: data_source,
            TAG_BACKTEST_SPAN: f"{result.start:%Y-%m-%d %H:%M} .. {result.end:%Y-%m-%d %H:%M} UTC"})

    def record_backtest(self, run_id: str, result: BacktestResult) -> None:
        """A backtest's figures: the policy's, buy-and-hold's and each rule's as metrics, all of them as JSON."""
        values = {f"{METRIC_POLICY_PREFIX}{k}": v for k, v in result.figures.items()}
        values.update({f"{METRIC_BUY_AND_HOLD_PREFIX}{k}": v for k, v in result.buy_and_hold.items()})
        values.update({baseline_metric(rule, k): v for rule, figures in result.baselines.items() for k, v in figures.items()})
        values.update({METRIC_NULL_PERCENTILE: result.null_percentile, METRIC_BARS: float(result.bars),
                       METRIC_COST_BPS: result.cost_bps})
        self.tracker.log_values(run_id, values)
        self.tracker.log_dict(run_id, result.as_dict(), ARTIFACT_BACKTEST)

    def finish(self, run_id: str) -> None:
        """A run that has all it will hold (a backtest): FINISHED."""
        self.tracker.end_run(run_id, "FINISHED")
