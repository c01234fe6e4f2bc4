"""`btc-ai report`: what happened in a session, read from the tracking server alone."""

from __future__ import annotations

from typing import Any

from btc_ai.recovery.state import (
    attempt_runs,
    checkpoint_refs,
    mark_stale_attempts,
    resolve_session,
    session_busy,
)
from btc_ai.tracking.store import TAG_PARENT, Tracker


def session_summary(tracker: Tracker, ref: str) -> dict[str, Any]:
    """Attempts, repairs, checkpoints, best reward, model version and how to resume, as plain data.

    Attempts left RUNNING by a process that died are marked as such (FAILED, ``interrupted``) first;
    attempts of a session a live process is training are shown as running.
    """
    session = resolve_session(tracker, ref)
    session_id = session.info.run_id
    attempts = attempt_runs(tracker, session_id)
    busy = session_busy(session)
    stale = [] if busy else mark_stale_attempts(tracker, session, attempts)
    if stale:
        session = tracker.client.get_run(session_id)
        attempts = attempt_runs(tracker, session_id)
    client = tracker.client
    repairs = client.search_runs([session.info.experiment_id], f"tags.`btc_ai.session` = '{session_id}'")
    tags = session.data.tags
    rows = []
    for run in attempts:
        t = run.data.tags
        history = client.get_metric_history(run.info.run_id, "fitness/mean")
        steps = [m.step for m in history]
        rows.append({
            "attempt": int(t.get("btc_ai.attempt", 0)),
            "run_id": run.info.run_id,
            "status": run.info.status,
            "outcome": t.get("btc_ai.outcome", "running" if run.info.status == "RUNNING" else "?"),
            "error": t.get("btc_ai.error_type") or None,
            "note": t.get("btc_ai.note"),
            "generations": f"{min(steps)}-{max(steps)}" if steps else "-",
            "repaired_by": t.get("btc_ai.repaired_by"),
            "best_reward": run.data.metrics.get("validation/best_reward"),
        })
    repair_rows = []
    for run in sorted(repairs, key=lambda r: r.info.start_time):
        p = run.data.params
        changes = {k[: -len(".before")]: (p[k], p.get(k[: -len(".before")] + ".after"))
                   for k in p if k.endswith(".before")}
        repair_rows.append({"run_id": run.info.run_id, "rule": run.data.tags.get("btc_ai.repair_rule"),
                            "triggered_by": run.data.tags.get("btc_ai.triggered_by"),
                            "parent": run.data.tags.get(TAG_PARENT), "changes": changes,
                            "reason": p.get("reason")})
    checkpoints = [{"artifact": c.artifact_path, "run_id": c.run_id, "generation": c.generation,
                    "verified": c.sha256 is not None} for c in checkpoint_refs(tracker, attempts)]
    return {
        "session_run_id": session_id,
        "status": tags.get("btc_ai.status"),
        "run_status": session.info.status,
        "bucket": tags.get("btc_ai.bucket"),
        "busy": busy,
        "stale_marked": stale,
        "attempts": rows,
        "repairs": repair_rows,
        "checkpoints": checkpoints,
        "best_reward": session.data.metrics.get("best_reward"),
        "final_params_sha256": tags.get("btc_ai.final_params_sha256"),
        "model_version": tags.get("btc_ai.model_version"),
        "resume": None if tags.get("btc_ai.status") == "completed" else f"btc-ai resume {session_id}",
    }


def render_summary(summary: dict[str, Any]) -> str:
    """The summary for a terminal."""
    out = [f"session {summary['session_run_id']} ({summary['bucket']}): {summary['status']} "
           f"[{summary['run_status']}]" + (f", being trained by {summary['busy']}" if summary["busy"] else "")]
    for note in summary["stale_marked"]:
        out.append(f"  marked now: {note}")
    out.append("attempts:")
    for a in summary["attempts"]:
        line = f"  #{a['attempt']} {a['run_id']} {a['outcome']:<19} generations {a['generations']}"
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
    if summary["model_version"]:
        out.append(f"registered model: btc-ai-{(summary['bucket'] or '').lower()} version {summary['model_version']}, "
                   f"final params sha256 {summary['final_params_sha256']}")
    if summary["resume"]:
        out.append(f"to continue: {summary['resume']}")
    return "\n".join(out)
