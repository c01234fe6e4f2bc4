"""`btc-ai` as a user runs it, against a store under tmp_path: in-process through ``main(argv)``, and in a
subprocess where only a real process proves it (the entry point end to end with its exit code, a terminal).

Bad input (one line, exit 2, nothing created) is covered in-process by test_bad_input.py."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess

import pytest
from conftest import TINY, btc_ai_cmd, cli_env, store_uri, tiny_flags, write_binance_csv
from mlflow import MlflowClient


def _run(tmp_path, *args, timeout=240):
    return subprocess.run(btc_ai_cmd(*args), cwd=tmp_path, env=cli_env(tmp_path), capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
def test_train_end_to_end_records_a_finished_session_and_registers_the_model(tmp_path, candles) -> None:
    data = write_binance_csv(tmp_path / "candles.csv", candles)
    result = _run(tmp_path, "train", "--data_path", str(data), "--bucket", "Scalping", "--learning_rate", "0.03",
                  "--max_retries", "1", "--enable_emergency_checkpoints", *tiny_flags())
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("session run ") for line in lines)
    assert sum(line.startswith("gen ") for line in lines) == TINY["EPISODES"]  # not a TTY: a line per generation

    client = MlflowClient(tracking_uri=cli_env(tmp_path)["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("btc-ai")
    runs = client.search_runs([experiment.experiment_id])
    sessions = [r for r in runs if r.data.tags.get("btc_ai.kind") == "session"]
    attempts = [r for r in runs if r.data.tags.get("btc_ai.kind") == "attempt"]
    assert len(sessions) == 1 and len(attempts) == 1
    session, attempt = sessions[0], attempts[0]
    assert session.info.status == "FINISHED" and attempt.info.status == "FINISHED"
    assert session.data.tags["btc_ai.status"] == "completed"
    assert len(session.data.tags["btc_ai.final_params_sha256"]) == 64
    assert attempt.data.tags["mlflow.parentRunId"] == session.info.run_id
    assert attempt.data.tags["btc_ai.outcome"] == "success"
    assert session.data.params["LEARNING_RATE"] == "0.03"
    history = client.get_metric_history(attempt.info.run_id, "fitness/mean")
    assert sorted(m.step for m in history) == list(range(1, TINY["EPISODES"] + 1))
    artifacts = {a.path for a in client.list_artifacts(attempt.info.run_id, "checkpoints")}
    assert artifacts == {"checkpoints/gen-000002.pt", "checkpoints/gen-000004.pt", "checkpoints/gen-000006.pt"}
    assert "performance_history.csv" in {a.path for a in client.list_artifacts(session.info.run_id)}
    version = max(client.search_model_versions("name = 'btc-ai-scalping'"), key=lambda v: int(v.version))
    assert version.run_id == session.info.run_id


def test_presets_lists_every_bucket(run_main) -> None:
    code, out, _ = run_main("presets", "--json")
    assert code == 0
    presets = json.loads(out)
    assert set(presets) == {"Scalping", "Intraday", "Swing", "Position"}
    assert all(p["BUCKET"] == name for name, p in presets.items())


@pytest.mark.slow
def test_fault_injected_through_the_environment_is_recovered_end_to_end(here, run_main, monkeypatch) -> None:
    monkeypatch.setenv("BTC_AI_FAULT", "NaN@3")
    code, out, err = run_main("train", *tiny_flags(), "--learning_rate", "0.05")
    assert code == 0, err
    assert "attempt 1 failed in generation 3 (generation 2 was the last completed): NaNError" in out
    assert "retry from generation 2 after repair 'halve_learning_rate_and_sigma_on_nan'" in out
    assert "after repair halve_learning_rate_and_sigma_on_nan: LEARNING_RATE 0.05 -> 0.025" in out
    assert "attempts 2" in out
    client = MlflowClient(tracking_uri=store_uri(here))
    runs = client.search_runs([client.get_experiment_by_name("btc-ai").experiment_id])
    kinds = sorted(r.data.tags["btc_ai.kind"] for r in runs)
    assert kinds == ["attempt", "attempt", "repair", "session"]
    assert all(r.info.status in {"FINISHED", "FAILED"} for r in runs)  # nothing left RUNNING


@pytest.mark.slow
def test_unrecoverable_fault_exits_1_with_the_reason(run_main, monkeypatch) -> None:
    monkeypatch.setenv("BTC_AI_FAULT", "PermissionError@2")
    code, _, err = run_main("train", *tiny_flags())
    assert code == 1
    assert "Traceback" not in err
    assert "training failed after 1 attempt(s): PermissionError" in err


# a 50-generation training with the default progress output (no per-generation override)
PROGRESS_FLAGS = tiny_flags(EPISODES=50, EVAL_INTERVAL=10)


@pytest.mark.slow
def test_progress_off_a_terminal_is_a_line_every_few_generations_with_eta(run_main, monkeypatch) -> None:
    monkeypatch.delenv("BTC_AI_PROGRESS_EVERY")
    code, out, err = run_main("train", *PROGRESS_FLAGS)
    assert code == 0, err
    lines = [line for line in out.splitlines() if line.startswith("gen ")]
    assert 2 <= len(lines) <= 30, lines  # not one per generation
    assert lines[0].startswith("gen 1/50 ") and lines[-1].startswith("gen 50/50 ")  # the first and the last
    # "val -" until the first validation, then its return
    assert all(re.search(r"fitness [-+]\d\.\d{4} .* val (-|[-+]\S+%) .* ETA \d+:\d\d:\d\d$", line) for line in lines), lines
    assert lines[-1].endswith("ETA 0:00:00")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("script") is None, reason="no `script` (util-linux) to fake a terminal")
def test_progress_on_a_terminal_is_a_live_bar_with_fitness_validation_and_eta(tmp_path) -> None:
    env = {k: v for k, v in cli_env(tmp_path).items() if k != "BTC_AI_PROGRESS_EVERY"}
    env["COLUMNS"] = "200"
    # under a pseudo-terminal: `script -qec CMD /dev/null`
    cmd = ["script", "-qec", shlex.join(btc_ai_cmd("train", *PROGRESS_FLAGS)), "/dev/null"]
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", result.stdout)  # without the terminal control sequences
    assert "gen 50/50" in screen and "ETA" not in screen  # the bar, not the plain lines
    final = [part for part in re.split(r"[\r\n]+", screen) if part.startswith("gen 50/50")][-1]
    assert re.search(r"fitness [-+]\d\.\d{4} .* val [-+]?\S+% .* s/gen\s+\d+:\d\d:\d\d", final), final
