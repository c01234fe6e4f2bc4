"""What runs and versions say about themselves: a model version's tags and description (where it came from,
how it did on the validation span, used for selection, and out of sample), and a session's description
(its attempts, repairs, outcome, figures and how to resume) — markdown the MLflow UI shows."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from btc_ai.domain.baselines import RULES, baseline_lines
from btc_ai.domain.collapse import collapse_line
from btc_ai.domain.config import TrainingConfig
from btc_ai.domain.data import DataReport
from btc_ai.domain.metric_names import (
    FIGURE_NULL_PERCENTILE,
    METRIC_BEST_VALIDATION_BUY_AND_HOLD_RETURN,
    METRIC_BEST_VALIDATION_TOTAL_RETURN,
    METRIC_TEST_BUY_AND_HOLD_RETURN,
    METRIC_TEST_GROSS_RETURN,
    METRIC_TEST_NULL_PERCENTILE,
    METRIC_TEST_SHARPE,
    METRIC_TEST_TOTAL_RETURN,
    SPAN_TEST,
    baseline_metric,
    best_validation_metric,
    span_metric,
)
from btc_ai.recovery.attempts import Attempt
from btc_ai.recovery.repairs import Repair
from btc_ai.tracking.registry import Registration
from btc_ai.tracking.run_model import (
    VERSION_TAG_ATTEMPT,
    VERSION_TAG_BASELINES,
    VERSION_TAG_BUCKET,
    VERSION_TAG_CONFIG,
    VERSION_TAG_DATA,
    VERSION_TAG_DATA_SPAN,
    VERSION_TAG_GENERATION,
    VERSION_TAG_METRIC_PREFIX,
    VERSION_TAG_PARAMS,
    VERSION_TAG_SESSION,
    VERSION_TAG_TEST_SPAN,
    VERSION_TAG_TIMEFRAME,
)

FIGURES = ("total_return", "gross_return", "sharpe", "max_drawdown", "position_changes", "buy_and_hold_return")


def config_sha256(config: TrainingConfig) -> str:
    return hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode()).hexdigest()


def version_tags(session_id: str, report: DataReport | None, attempt_id: str, config: TrainingConfig,
                 metrics: Mapping[str, Any]) -> dict[str, Any]:
    tags: dict[str, Any] = {
        VERSION_TAG_SESSION: session_id, VERSION_TAG_ATTEMPT: attempt_id,
        VERSION_TAG_GENERATION: metrics["best_generation"], VERSION_TAG_BUCKET: config.BUCKET,
        VERSION_TAG_TIMEFRAME: config.TIMEFRAME, VERSION_TAG_PARAMS: metrics["best_params_sha256"],
        VERSION_TAG_CONFIG: config_sha256(config), VERSION_TAG_DATA: metrics.get("data_fingerprint"),
    }
    if report is not None:
        tags[VERSION_TAG_DATA_SPAN] = f"{report.start:%Y-%m-%d %H:%M} .. {report.end:%Y-%m-%d %H:%M} UTC"
    if metrics.get("test_span"):
        tags[VERSION_TAG_TEST_SPAN] = metrics["test_span"]
    if metrics.get("baseline_windows"):
        tags[VERSION_TAG_BASELINES] = metrics["baseline_windows"]
    baselines = (baseline_metric(rule, figure) for rule in RULES for figure in ("total_return", "sharpe"))
    for key in (*map(best_validation_metric, FIGURES), *(span_metric(SPAN_TEST, f) for f in (*FIGURES, FIGURE_NULL_PERCENTILE)),
                *baselines):
        if key in metrics:
            tags[VERSION_TAG_METRIC_PREFIX + key] = f"{metrics[key]:.6g}"
    return {k: v for k, v in tags.items() if v is not None}


def version_description(session_id: str, config: TrainingConfig, metrics: Mapping[str, Any]) -> str:
    """Markdown for the registry page: what the version is and how it did, out of sample first."""
    lines = [f"Best policy of {config.BUCKET} session `{session_id}` (generation {metrics['best_generation']} "
             f"of {metrics['generations']}; {metrics['stop_reason']})."]
    if METRIC_TEST_TOTAL_RETURN in metrics:
        lines.append(f"**Out of sample** (test span {metrics['test_span']}, never used for selection): return "
                     f"{metrics[METRIC_TEST_TOTAL_RETURN]:+.2%} after costs ({metrics[METRIC_TEST_GROSS_RETURN]:+.2%} "
                     f"before), Sharpe {metrics[METRIC_TEST_SHARPE]:+.2f}; buy-and-hold "
                     f"{metrics[METRIC_TEST_BUY_AND_HOLD_RETURN]:+.2%}, flat +0.00%; timing null check "
                     f"{metrics[METRIC_TEST_NULL_PERCENTILE]:.0f}th percentile.")
    else:
        lines.append("**No out-of-sample figures**: the training held out no test span (TEST_FRACTION=0).")
    lines.append(f"Validation span (used for selection): return {metrics[METRIC_BEST_VALIDATION_TOTAL_RETURN]:+.2%}, "
                 f"buy-and-hold {metrics[METRIC_BEST_VALIDATION_BUY_AND_HOLD_RETURN]:+.2%}.")
    lines += _outcome_lines(metrics)
    lines.append(f"Costs: {config.FEE_BPS:g} bps fee + {config.SLIPPAGE_BPS:g} bps slippage per unit traded.")
    return "\n\n".join(lines)


def session_description(session_id: str, attempts: Sequence[Attempt], total_attempts: int, repairs: Sequence[Repair],
                        status: str, metrics: Mapping[str, Any], registration_note: str = "") -> str:
    """The session run's markdown note: outcome first, then ``attempts`` (this command's), repairs, what became of
    a policy a failed session trained to the end (``registration_note``), figures, how to go on."""
    failed = [a for a in attempts if a.outcome != "success"]
    head = {"completed": "Completed", "failed": "**Failed**", "interrupted": "**Interrupted**"}.get(status, status)
    lines = [f"{head} after {total_attempts} attempt(s)"
             + (f", {len(failed)} of them failed in this run of the command" if failed else "") + "."]
    rows = ["| attempt | outcome | error |", "|---|---|---|"]
    rows += [f"| {a.number} | {a.outcome} | {a.error or ''} |" for a in attempts]
    lines.append("\n".join(rows))
    if repairs:
        lines.append("Repairs: " + "; ".join(r.summary() for r in repairs))
    if status != "completed" and registration_note:
        lines.append(registration_note)
    if metrics:
        lines.append(f"Stopped: {metrics.get('stop_reason', '-')}.")
        if METRIC_TEST_TOTAL_RETURN in metrics:
            lines.append(f"Out of sample (test span {metrics.get('test_span', '')}): return "
                         f"{metrics[METRIC_TEST_TOTAL_RETURN]:+.2%} after costs vs buy-and-hold "
                         f"{metrics[METRIC_TEST_BUY_AND_HOLD_RETURN]:+.2%}, flat +0.00%.")
        if METRIC_BEST_VALIDATION_TOTAL_RETURN in metrics:
            lines.append(f"Validation (used for selection): return {metrics[METRIC_BEST_VALIDATION_TOTAL_RETURN]:+.2%}.")
        lines += _outcome_lines(metrics)
    lines.append(f"Continue or extend: `btc-ai resume {session_id}`" + (" --generations N" if status == "completed" else "")
                 + f"; details: `btc-ai report {session_id}`.")
    return "\n\n".join(lines)


def _outcome_lines(metrics: Mapping[str, Any]) -> list[str]:
    """The test span's rule baselines (the validation span's without one) and, first, a collapse to flat."""
    test = [line for line in baseline_lines(metrics) if "test span" in line]
    collapsed = collapse_line(metrics)
    return ([f"**{collapsed[0].upper()}{collapsed[1:]}.**"] if collapsed else []) + (test or baseline_lines(metrics))


def after_failure(registration: Registration | None, unregistered: str) -> str:
    """What became of a policy trained to the end by a session that failed after (its last commit refused):
    its ``registration``, else why it is not registered (``unregistered``; empty when nothing was trained)."""
    if registration is None:
        return unregistered
    version = registration.version or "pending (journaled)"
    return f"The policy trained to the end is registered all the same: version {version} ({registration.path})."
