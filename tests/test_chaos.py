"""`btc-ai chaos` end to end: every scenario behaves as the recovery system promises."""

from __future__ import annotations

import subprocess

import pytest
from conftest import btc_ai_cmd, cli_env

from btc_ai.tracking.team_server import postgres_missing


@pytest.mark.slow
def test_every_chaos_scenario_passes(tmp_path) -> None:
    result = subprocess.run(btc_ai_cmd("chaos"), cwd=tmp_path, env=cli_env(tmp_path), capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    rows = [line for line in lines[1:-1] if line.strip()]
    assert len(rows) >= 30  # every classification row plus NaN, stall, signals, corruption, the servers
    team = [line for line in rows if line.startswith("team ")]
    assert [line.split("  ")[0] for line in team] == ["team server lost", "team database lost", "team login refused"]
    if postgres_missing():  # skipped with the reason, never counted as passed
        assert all(line.rstrip().endswith(")") and "  SKIP  (PostgreSQL" in line for line in team)
        assert lines[-1] == f"{len(rows) - 3} passed, 0 failed, 3 skipped"
    else:
        assert lines[-1] == f"{len(rows)} passed, 0 failed"
    assert all(line.rstrip().endswith("PASS") or "PASS  (" in line for line in rows if line not in team or
               not postgres_missing())
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
