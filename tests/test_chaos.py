"""`btc-ai chaos` end to end: every scenario behaves as the recovery system promises."""

from __future__ import annotations

import re
import subprocess

import pytest
from conftest import btc_ai_cmd, cli_env, run_cli

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


def _expected(folder) -> list[tuple[str, re.Pattern[str], bool]]:
    """Every scenario `btc-ai chaos --list` names, in its order, with the row it must print and whether it is
    skipped here: each classification row (a recoverable error: repaired once, retried, completed; an
    unrecoverable one: one attempt, no repair, failed), then NaN, stall, signals, corruption, the servers."""
    names = run_cli(folder, "chaos", "--list").stdout.split()
    rows = [_row(cls.__name__, "recoverable", 2, ONE_RULE, "completed") for cls in RECOVERABLE]
    rows += [_row(cls.__name__, "unrecoverable", 1, "-", "failed") for cls in UNRECOVERABLE
             if cls is not KeyboardInterrupt]
    rows += [_row("NaN", "recoverable", 2, "halve_learning_rate_and_sigma_on_nan", "completed"),
             _row("stall", "recoverable", 2, "retry_from_last_good_state", "completed")]
    rows += [_row(*row) for row in END_TO_END]
    missing_postgres = postgres_missing()
    if missing_postgres:  # skipped with the reason, never counted as passed
        rows += [re.compile(re.escape(f"{name:<26} {kind:<26} {0:>8} {'-':<38} {'not run':<22} {0.0:>6.1f}s  "
                                      f"SKIP  ({missing_postgres})") + "$") for name, kind, *_ in TEAM]
    else:
        rows += [_row(*row) for row in TEAM]
    assert len(names) == len(rows), names  # a scenario added to the command is added here
    return [(name, row, bool(missing_postgres) and name.startswith("team-")) for name, row in zip(names, rows, strict=True)]


# the scenarios in two runs of about 80 s each (the test processes take one each), together every one
FIRST_HALF = 25  # the in-process rows, SIGTERM, SIGKILL + resume, SIGKILL mid-commit + resume


@pytest.mark.slow
@pytest.mark.parametrize("half", ["first", "second"])
def test_every_chaos_scenario_passes(tmp_path, half: str) -> None:
    expected = _expected(tmp_path)
    expected = expected[:FIRST_HALF] if half == "first" else expected[FIRST_HALF:]
    names = [arg for name, _, _ in expected for arg in ("--scenario", name)]
    result = subprocess.run(btc_ai_cmd("chaos", *names), cwd=tmp_path, env=cli_env(tmp_path), capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    rows = [line for line in lines[1:-1] if line.strip()]
    wrong = [f"{pattern.pattern}\n  got {row!r}" for (_, pattern, _), row in zip(expected, rows, strict=False)
             if not pattern.match(row)]
    assert len(rows) == len(expected) and not wrong, "\n".join(wrong) + "\n" + result.stdout
    skipped = sum(skip for _, _, skip in expected)
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
