"""`btc-ai chaos` end to end: every scenario behaves as the recovery system promises."""

from __future__ import annotations

import re
import subprocess

import pytest
from conftest import btc_ai_cmd, cli_env

from btc_ai.recovery.classify import RECOVERABLE, UNRECOVERABLE
from btc_ai.tracking.team_server import postgres_missing


def _row(scenario: str, classification: str, attempts: int, repairs: str, outcome: str) -> re.Pattern[str]:
    """A row of the chaos table as `run_chaos` prints it (``repairs`` a pattern), with its time, passed."""
    return re.compile(re.escape(f"{scenario:<26} {classification:<26} {attempts:>8} ") + repairs + r"\s+"
                      + re.escape(outcome) + r"\s+\d+\.\ds  PASS$")


ONE_RULE = r"[a-z_]+"  # exactly one repair, by its rule's name
# what each end-to-end scenario must report: (scenario, classification, attempts, repairs, outcome)
END_TO_END = [("sigterm", "interrupt (never retried)", 2, "-", "exit 143, resumed"),
              ("sigkill+resume", "process died", 2, "-", "bit-identical"),
              ("sigkill mid-commit+resume", "process died", 2, "-", "bit-identical, once"),
              ("corrupted checkpoint", "checkpoint skipped", 2, "-", "resumed from the previous one"),
              ("tracking server down at start", "bad input", 0, "-", "exit 2"),
              ("tracking server lost", "outage (journaled)", 1, "-", "all metrics, once")]
TEAM = [("team server lost", "outage (journaled)", 1, "-", "all metrics, once"),
        ("team database lost", "outage (journaled)", 1, "-", "all metrics, once"),
        ("team login refused", "bad input", 0, "-", "exit 2")]


@pytest.mark.slow
def test_every_chaos_scenario_passes(tmp_path) -> None:
    result = subprocess.run(btc_ai_cmd("chaos"), cwd=tmp_path, env=cli_env(tmp_path), capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    rows = [line for line in lines[1:-1] if line.strip()]
    # every classification row (a recoverable error: repaired once, retried, completed; an unrecoverable one:
    # one attempt, no repair, failed), then NaN, stall, signals, corruption, the servers, in that order
    expected = [_row(cls.__name__, "recoverable", 2, ONE_RULE, "completed") for cls in RECOVERABLE]
    expected += [_row(cls.__name__, "unrecoverable", 1, "-", "failed") for cls in UNRECOVERABLE
                 if cls is not KeyboardInterrupt]
    expected += [_row("NaN", "recoverable", 2, "halve_learning_rate_and_sigma_on_nan", "completed"),
                 _row("stall", "recoverable", 2, "retry_from_last_good_state", "completed")]
    expected += [_row(*row) for row in END_TO_END]
    missing_postgres = postgres_missing()
    if missing_postgres:  # skipped with the reason, never counted as passed
        expected += [re.compile(re.escape(f"{name:<26} {kind:<26} {0:>8} {'-':<38} {'not run':<22} {0.0:>6.1f}s  "
                                          f"SKIP  ({missing_postgres})") + "$") for name, kind, *_ in TEAM]
    else:
        expected += [_row(*row) for row in TEAM]
    wrong = [f"{pattern.pattern}\n  got {row!r}" for pattern, row in zip(expected, rows, strict=False)
             if not pattern.match(row)]
    assert len(rows) == len(expected) and not wrong, "\n".join(wrong) + "\n" + result.stdout
    skipped = len(TEAM) if missing_postgres else 0
    assert lines[-1] == f"{len(rows) - skipped} passed, 0 failed" + (f", {skipped} skipped" if skipped else "")
    assert not (tmp_path / "mlruns").exists()  # scratch stores only


@pytest.mark.slow
def test_a_chaos_scenario_that_cannot_run_here_is_skipped_with_its_reason_not_passed(tmp_path, monkeypatch) -> None:
    from btc_ai.desk import chaos_team
    from btc_ai.desk.chaos_suite import run_chaos

    monkeypatch.setattr(chaos_team, "postgres_missing", lambda: "PostgreSQL is not installed (initdb not found)")
    lines: list[str] = []
    code = run_chaos(["team-login-refused", "tracking-server-down"], out=lines.append)
    assert code == 0
    assert "SKIP  (PostgreSQL is not installed (initdb not found))" in lines[1]
    assert lines[2].rstrip().endswith("PASS") and lines[-1] == "1 passed, 0 failed, 1 skipped"


def test_unknown_scenario_is_bad_input(run_main) -> None:
    code, _, err = run_main("chaos", "--scenario", "meteor")
    assert code == 2 and "unknown scenario meteor" in err
