"""`btc-ai chaos` end to end: every scenario behaves as the recovery system promises."""

from __future__ import annotations

import subprocess

import pytest
from conftest import btc_ai_cmd, cli_env


@pytest.mark.slow
def test_every_chaos_scenario_passes(tmp_path) -> None:
    result = subprocess.run(btc_ai_cmd("chaos"), cwd=tmp_path, env=cli_env(tmp_path), capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    rows = [line for line in lines[1:-1] if line.strip()]
    assert len(rows) >= 25  # every classification row plus NaN, stall, signals, corruption, server down
    assert all(line.rstrip().endswith("PASS") or "PASS  (" in line for line in rows)
    assert lines[-1] == f"{len(rows)} passed, 0 failed"
    assert not (tmp_path / "mlruns").exists()  # scratch stores only


def test_unknown_scenario_is_bad_input(run_main) -> None:
    code, _, err = run_main("chaos", "--scenario", "meteor")
    assert code == 2 and "unknown scenario meteor" in err
