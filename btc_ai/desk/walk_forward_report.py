"""`btc-ai report <walk-forward run>`: a walk-forward's out-of-sample table, read back from the store.

The same rows and aggregate the walk-forward printed when it ended (each fold session's ``test/...``
figures), with the sessions that have not finished listed and the command that continues them.
"""

from __future__ import annotations

import math
from typing import Any

from btc_ai.domain.errors import ResumeError
from btc_ai.domain.fold_summary import FoldRow, aggregate, row_from_metrics, table_lines
from btc_ai.domain.metric_names import METRIC_TEST_TOTAL_RETURN
from btc_ai.tracking.run_model import RunModel, WalkForwardRuns


def walk_forward_summary(runs: RunModel, run_id: str) -> dict[str, Any] | None:
    """The walk-forward run ``run_id`` as plain data; None when it is no walk-forward run."""
    wf_runs = WalkForwardRuns(runs)
    try:
        record = wf_runs.record(run_id.strip())
    except ResumeError:
        return None
    try:
        plan = {int(f["fold"]): f for f in wf_runs.spec(record.run_id).get("plan", [])}
    except ResumeError:  # no spec artifact: the table still stands, without the train spans
        plan = {}
    rows: list[FoldRow] = []
    unfinished = []
    for (fold, seed), found in sorted(wf_runs.fold_sessions(record).items()):
        out = wf_runs.outcome(found.run_id)
        if METRIC_TEST_TOTAL_RETURN not in out.metrics:
            unfinished.append({"fold": fold, "seed": seed, "session_run_id": found.run_id,
                               "status": out.status or found.session.run_status})
            continue
        rows.append(row_from_metrics(fold, seed, found.run_id, str(plan.get(fold, {}).get("train", "")), out.metrics,
                                     {"test_span": out.test_span, "stop_reason": out.stop_reason,
                                      "final_params_sha256": out.final_params_sha256}))
    agg = aggregate(rows)
    return {
        "walk_forward_run_id": record.run_id,
        "status": record.status or record.run_status.lower(),
        "bucket": record.bucket,
        "data_source": record.data_source,
        "data_fingerprint": record.data_fingerprint,
        "folds": record.folds,
        "seeds": list(record.seeds),
        "sessions_expected": record.folds * len(record.seeds),
        "rows": [_finite(row.as_dict()) for row in rows],
        "unfinished": unfinished,
        "aggregate": agg.metrics() if rows else {},
        "table": table_lines(rows, agg) if rows else [],
        "resume_command": None if record.completed else f"btc-ai resume {record.run_id}",
    }


def _finite(values: dict[str, Any]) -> dict[str, Any]:
    """NaN (a figure the session did not record) as None, so --json stays valid JSON."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in values.items()}


def render_walk_forward(summary: dict[str, Any]) -> str:
    seeds = " ".join(map(str, summary["seeds"]))
    lines = [f"walk-forward run {summary['walk_forward_run_id']}: {summary['status']}, {summary['bucket']}, "
             f"{summary['folds']} fold(s) x seeds {seeds} on {summary['data_source']}",
             f"sessions done: {len(summary['rows'])} of {summary['sessions_expected']}; every figure below is out of "
             "sample (each fold's test block), net of costs"]
    lines += summary["table"] or ["no fold session has finished yet"]
    for s in summary["unfinished"]:
        lines.append(f"fold {s['fold']} seed {s['seed']}: session {s['session_run_id']} {s['status']}")
    if summary["resume_command"]:
        lines.append(f"continue it: {summary['resume_command']}")
    return "\n".join(lines)
