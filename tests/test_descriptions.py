"""Descriptions within MLflow's 8,000-character limit for a tag value (a run's description is one): long
ones keep their beginning and end, say what was left out and where the whole is (a walk-forward's whole
description is an artifact), and MLflow's own log lines (its WARNING that it cut a tag) stay off the
console. Real SQLite stores under tmp_path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli_env, store_uri

from btc_ai.domain.text_fit import TAG_VALUE_LIMIT, fit_text


def _long_markdown(folds: int = 200) -> str:
    """A walk-forward-like description: a fold table, then a results block ending with the aggregate."""
    spans = [f"| {k} | 2021-06-01 00:00 .. 2021-06-0{k % 9 + 1} 00:00 UTC | ... | 0.2500 |" for k in range(1, folds + 1)]
    results = [f"{k:>4} {1:>6}  2021-06-01 00:00 .. 2021-06-02 00:00 UTC   +0.10%" for k in range(1, folds + 1)]
    return "\n".join(["**Walk-forward.** how the folds are built", "", "| fold | train | test | TEST_FRACTION |",
                      "|---|---|---|---|", *spans, "", "```", *results, f"over {folds} fold(s): mean test return +0.10%",
                      "```"])


def test_fit_text_keeps_short_text_and_fits_long_text_with_its_end() -> None:
    assert fit_text("short\ntext") == "short\ntext"
    text = _long_markdown()
    fitted = fit_text(text, whole_at="artifact x.md")
    assert len(text) > 3 * TAG_VALUE_LIMIT and len(fitted) <= TAG_VALUE_LIMIT
    assert fitted.startswith("**Walk-forward.**") and fitted.endswith("mean test return +0.10%\n```")
    assert "line(s) left out" in fitted and "artifact x.md" in fitted
    assert sum(line.startswith("```") for line in fitted.splitlines()) % 2 == 0  # no code block left open
    assert len(fit_text("x" * 20_000)) <= TAG_VALUE_LIMIT


def test_a_long_walk_forward_description_fits_and_its_whole_is_an_artifact(here: Path) -> None:
    from btc_ai.tracking.run_model import KIND_WALK_FORWARD, TAG_DESCRIPTION, RunModel, WalkForwardRuns
    from btc_ai.tracking.tracker import Tracker

    tracker = Tracker(store_uri(here))
    run_id = tracker.create_run(KIND_WALK_FORWARD, name="many folds")
    markdown = _long_markdown()
    WalkForwardRuns(RunModel(tracker)).describe(run_id, markdown)
    stored = tracker.client.get_run(run_id).data.tags[TAG_DESCRIPTION]
    assert len(stored) <= TAG_VALUE_LIMIT and "walk_forward_description.md" in stored
    assert "mean test return +0.10%" in stored, "the aggregate at the end of the description was cut off"
    whole = tracker.client.download_artifacts(run_id, "walk_forward_description.md", str(here))
    assert Path(whole).read_text(encoding="utf-8") == markdown


def test_a_long_session_description_fits_and_names_the_report(here: Path) -> None:
    from btc_ai.tracking.run_model import KIND_SESSION, TAG_DESCRIPTION, RunModel
    from btc_ai.tracking.tracker import Tracker

    tracker = Tracker(store_uri(here))
    session = tracker.create_run(KIND_SESSION, name="many attempts")
    rows = "\n".join(f"| {n} | failed | ConnectionError: the server went away {'.' * 80} |" for n in range(1, 200))
    description = f"**Failed** after 199 attempt(s).\n\n| attempt | outcome | error |\n|---|---|---|\n{rows}\n\nend"
    RunModel(tracker).close_session(session, status="failed", run_status="FAILED", summary=None, step=0,
                                    description=description)
    stored = tracker.client.get_run(session).data.tags[TAG_DESCRIPTION]
    assert len(stored) <= TAG_VALUE_LIMIT and f"btc-ai report {session}" in stored and stored.endswith("end")


@pytest.mark.slow  # a fresh Python that imports mlflow and builds a store
def test_mlflow_log_lines_stay_off_the_console(tmp_path: Path) -> None:
    """In a process of its own, as a user's console sees it: the logging `btc-ai` sets up, then a tag MLflow
    cuts (and would warn about)."""
    code = ("import sys; from btc_ai.cli import main; from btc_ai.tracking.tracker import Tracker; "
            "main(['presets']); tracker = Tracker(sys.argv[1]); run_id = tracker.create_run('session'); "
            f"tracker.set_tags(run_id, {{'a.long.tag': 'x' * {TAG_VALUE_LIMIT + 100}}})")
    done = subprocess.run([sys.executable, "-c", code, store_uri(tmp_path)], env=cli_env(tmp_path), cwd=tmp_path,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=120)
    assert done.returncode == 0 and "mlflow" not in done.stderr and "truncated" not in done.stderr, done.stderr
