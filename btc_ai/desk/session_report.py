"""`btc-ai report`: what happened in a session, read from the tracking server alone."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from btc_ai.domain.baselines import RULES, baseline_lines, timeframe_windows
from btc_ai.domain.collapse import collapse_line
from btc_ai.domain.metric_names import (
    FIGURE_NULL_PERCENTILE,
    METRIC_BEST_VALIDATION_PREFIX,
    METRIC_TEST_PREFIX,
    baseline_metric,
    figures_under,
)
from btc_ai.domain.trade_stats import STATISTICS, legacy_figure, statistics_lines
from btc_ai.recovery.lease import mark_stale_attempts, session_busy
from btc_ai.tracking.run_model import (
    METRIC_FITNESS_MEAN,
    METRIC_VALIDATION_SCORE,
    RunModel,
    registered_model_name,
)


def session_summary(runs: RunModel, ref: str) -> dict[str, Any]:
    """Attempts, repairs, checkpoints, best reward, model version and how to resume, as plain data.

    Attempts left RUNNING by a process that died are marked as such (FAILED, ``interrupted``) first;
    attempts of a session a live process is training are shown as running.
    """
    session = runs.resolve_session(ref)
    attempts = runs.attempts(session)
    busy = session_busy(session)
    stale = [] if busy else mark_stale_attempts(runs, session, attempts)
    if stale:
        session = runs.session(session.run_id)
        attempts = runs.attempts(session)
    rows = []
    for attempt in attempts:
        steps = [step for step, _ in runs.metric_history(attempt.run_id, METRIC_FITNESS_MEAN)]
        scores = [value for _, value in runs.metric_history(attempt.run_id, METRIC_VALIDATION_SCORE)]
        rows.append({
            "attempt": attempt.number,
            "run_id": attempt.run_id,
            "status": attempt.run_status,
            "outcome": attempt.outcome or ("running" if attempt.running else "?"),
            "error": attempt.error_type,
            "note": attempt.note,
            "generations": [min(steps), max(steps)] if steps else None,  # first and last, as numbers
            "repaired_by": attempt.repaired_by,
            "resumed_from": attempt.resumed_from,  # set on the first attempt of a resume
            "best_validation_score": max(scores) if scores else None,  # of this attempt's own validations
        })
    repair_rows = [{"run_id": r.run_id, "rule": r.rule, "triggered_by": r.triggered_by, "parent": r.parent_id,
                    "changes": dict(r.changes), "reason": r.reason} for r in runs.repairs(session)]
    checkpoints = [{"artifact": c.artifact_path, "run_id": c.run_id, "generation": c.generation,
                    "verified": c.committed} for c in runs.checkpoints(attempts)]
    return {
        "session_run_id": session.run_id,
        "status": session.status,
        "run_status": session.run_status,
        "bucket": session.bucket,
        "busy": busy,
        "stale_marked": stale,
        "attempts": rows,
        "repairs": repair_rows,
        "checkpoints": checkpoints,
        "best_reward": session.best_reward,
        "stop_reason": session.stop_reason,
        **_figures(runs, session.run_id, session.test_span, session.params.get("TIMEFRAME")),
        "final_params_sha256": session.final_params_sha256,
        "model_name": registered_model_name(session.bucket) if session.bucket else None,
        "model_version": session.model_version,
        "resume": None if session.completed else f"btc-ai resume {session.run_id}",
        "extend": f"btc-ai resume {session.run_id} --generations N" if session.completed else None,
    }


_FIGURES = ("total_return", "gross_return", "buy_and_hold_return", "sharpe", "max_drawdown", "position_changes",
            "turnover")


def _figures(runs: RunModel, session_id: str, test_span: str | None, timeframe: str | None) -> dict[str, Any]:
    """The best policy's figures: on the validation span (used for selection) and on the test span (out of
    sample), as the session recorded them, the rule baselines' beside them, and whether it collapsed to flat."""
    metrics = runs.latest_metrics(session_id)
    validation = _found(metrics, METRIC_BEST_VALIDATION_PREFIX, _FIGURES)
    test = _found(metrics, METRIC_TEST_PREFIX, (*_FIGURES, FIGURE_NULL_PERCENTILE))
    statistics = _found(metrics, METRIC_TEST_PREFIX, STATISTICS)
    windows = timeframe_windows(timeframe).describe() if timeframe else None
    return {"validation": validation or None, "test": {"span": test_span, **test} if test else None,
            "test_statistics": statistics if len(statistics) == len(STATISTICS) else None,
            "baselines": {rule: figures_under(metrics, baseline_metric(rule, ""))
                          for rule in RULES} | {"windows": windows},
            "baseline_lines": baseline_lines(metrics, windows), "collapse": collapse_line(metrics)}


def _found(metrics: Mapping[str, Any], prefix: str, figures: tuple[str, ...]) -> dict[str, Any]:
    """The ``figures`` recorded under ``prefix`` (a position-change count under its name before the rename too)."""
    found = {k: legacy_figure(metrics, f"{prefix}{k}") for k in figures}
    return {k: v for k, v in found.items() if v is not None}


def _figure_line(label: str, figures: dict[str, Any]) -> str:
    line = f"{label}: return {figures['total_return']:+.2%}"
    if "gross_return" in figures:
        line += f" ({figures['gross_return']:+.2%} before costs)"
    if "position_changes" in figures:
        line += f", {figures['position_changes']:.0f} position changes"
    if "buy_and_hold_return" in figures:
        line += f"; buy-and-hold {figures['buy_and_hold_return']:+.2%}, flat +0.00%"
    if "null_percentile" in figures:
        line += f"; timing null check {figures['null_percentile']:.0f}th percentile (50 = luck)"
    return line


def render_summary(summary: dict[str, Any]) -> str:
    """The summary for a terminal."""
    out = [f"session {summary['session_run_id']} ({summary['bucket']}): {summary['status']} "
           f"[{summary['run_status']}]" + (f", being trained by {summary['busy']}" if summary["busy"] else "")]
    for note in summary["stale_marked"]:
        out.append(f"  marked now: {note}")
    out.append("attempts:")
    for a in summary["attempts"]:
        span = "-" if a["generations"] is None else f"{a['generations'][0]}-{a['generations'][1]}"
        line = f"  #{a['attempt']} {a['run_id']} {a['outcome']:<19} generations {span}"
        if a["best_validation_score"] is not None:
            line += f"  best score {a['best_validation_score']:+.4f}"
        if a["resumed_from"]:
            line += f"  (resumed from {a['resumed_from'].split('@')[0]})"
        if a["error"]:
            line += f"  error {a['error']}"
        if a["note"]:
            line += f"  ({a['note']})"
        out.append(line)
    out.append("repairs:" if summary["repairs"] else "repairs: none")
    for r in summary["repairs"]:
        changes = "; ".join(f"{k} {before} -> {after}" for k, (before, after) in r["changes"].items()) or "no config change"
        out.append(f"  {r['rule']} (after {r['triggered_by']}): {changes}")
    verified = [c for c in summary["checkpoints"] if c["verified"]]
    newest = max(verified, key=lambda c: c["generation"]) if verified else None
    out.append(f"checkpoints: {len(summary['checkpoints'])} on the store"
               + (f", newest verified {newest['artifact']} (generation {newest['generation']})" if newest else ""))
    best = summary["best_reward"]
    out.append(f"best validation reward: {best:+.4f}" if best is not None else "best validation reward: -")
    if summary.get("stop_reason"):
        out.append(f"stopped: {summary['stop_reason']}")
    if summary.get("validation"):
        out.append(_figure_line("validation span (used for selection)", summary["validation"]))
    if summary.get("test"):
        out.append(_figure_line(f"test span {summary['test']['span'] or ''} (out of sample)", summary["test"]))
        out += [f"  {line}" for line in statistics_lines(summary.get("test_statistics") or {}) if line]
    elif summary["status"] == "completed":
        out.append("test span: none held out (TEST_FRACTION=0): no out-of-sample figure")
    out += summary.get("baseline_lines") or []
    if summary.get("collapse"):
        out.append(summary["collapse"])
    if summary["model_version"]:
        out.append(f"registered model: {registered_model_name(summary['bucket'] or '')} version {summary['model_version']}, "
                   f"final params sha256 {summary['final_params_sha256']}")
    if summary["resume"]:
        out.append(f"to continue: {summary['resume']}")
    if summary.get("extend"):
        out.append(f"to train it longer: {summary['extend']}")
    return "\n".join(out)
