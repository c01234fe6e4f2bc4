"""Error reports: everything a person needs to understand a failed attempt, as JSON and Markdown."""

from __future__ import annotations

import datetime as dt
import os
import platform
import socket
import sys
import traceback
from collections.abc import Mapping
from importlib import metadata
from typing import Any

import numpy
import torch

from btc_ai.recovery.classify import Classification
from btc_ai.tracking.credentials import redact


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _memory_gib() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def build_error_report(
    exc: BaseException,
    *,
    classification: Classification,
    attempt: int,
    generation_reached: int,
    last_metrics: Mapping[str, float],
    config: Mapping[str, Any],
    data_summary: Mapping[str, Any],
    repair: str | None,
    decision: str,
    session_run_id: str | None = None,
    attempt_run_id: str | None = None,
) -> dict[str, Any]:
    """A JSON-serialisable report of one failed attempt.

    ``repair`` is the repair chosen (None if none); ``decision`` says in words whether a retry follows
    and why (or why not). Its prose (the error, traceback, stacks, reasons, the command line) has secrets
    masked; its data (run IDs, config, metrics, data summary) is as it is.
    """
    return {
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "session_run_id": session_run_id,
        "attempt_run_id": attempt_run_id,
        "attempt": attempt,
        "error": {
            "type": type(exc).__name__,
            "module": type(exc).__module__,
            "message": redact(str(exc)),
            "key": getattr(exc, "key", None),
            "traceback": redact("".join(traceback.format_exception(exc))),
            "thread_stacks": redact(getattr(exc, "stacks", None) or "") or None,  # every thread, for a stalled generation
        },
        "classification": {
            "recoverable": classification.recoverable,
            "matched": classification.matched,
            "why": redact(classification.reason),
        },
        "repair": repair,
        "decision": redact(decision),
        "generation_reached": generation_reached,
        "last_metrics": dict(last_metrics),
        "config": dict(config),
        "data": dict(data_summary),
        "versions": {
            "python": platform.python_version(),
            "btc_ai": _version("btc_ai"),
            "torch": torch.__version__,
            "mlflow": _version("mlflow"),
            "numpy": numpy.__version__,
            "tenacity": _version("tenacity"),
        },
        "machine": {
            "platform": platform.platform(),
            "hostname": socket.gethostname(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "memory_gib": _memory_gib(),
            "pid": os.getpid(),
            "argv": [redact(arg) for arg in sys.argv],
        },
    }


def render_markdown(report: Mapping[str, Any]) -> str:
    """The same report for people."""
    error, cls = report["error"], report["classification"]
    lines = [
        f"# Attempt {report['attempt']} failed: {error['type']}",
        "",
        f"**{error['type']}**: {error['message']}",
        "",
        f"- classification: {'recoverable' if cls['recoverable'] else 'unrecoverable'} "
        f"(matched `{cls['matched']}`: {cls['why']})",
        f"- repair: {report['repair'] or 'none'}",
        f"- decision: {report['decision']}",
        f"- generation reached: {report['generation_reached']}",
        f"- session run: `{report['session_run_id']}`, attempt run: `{report['attempt_run_id']}`",
        "",
        "## Traceback",
        "",
        "```",
        error["traceback"].rstrip(),
        "```",
        "",
        *(["## Every thread's stack when the generation stalled", "", "```", error["thread_stacks"].rstrip(), "```", ""]
          if error.get("thread_stacks") else []),
        "## Last metrics",
        "",
    ]
    lines += [f"- `{k}`: {v:.6g}" for k, v in sorted(report["last_metrics"].items())] or ["(none)"]
    lines += ["", "## Effective config", "", "| key | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in report["config"].items()]
    lines += ["", "## Data", ""]
    lines += [f"- {k}: {v}" for k, v in report["data"].items()]
    lines += ["", "## Versions and machine", ""]
    lines += [f"- {k}: {v}" for k, v in {**report["versions"], **report["machine"]}.items()]
    return "\n".join(lines) + "\n"  # its prose was masked in the report: the data shown is exact
