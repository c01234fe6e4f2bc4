"""`btc-ai search`: bad input refused in one line; the held-out block cut before every trial (changing it
changes no trial's inputs, and no trial's score); a study that prunes, survives a failing trial and scores the
chosen configuration once on the held-out block, all nested under one search run; run by two worker processes
on one SQLite study, and killed by SIGKILL and resumed, it draws the same trials and makes the same choice."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
from conftest import TINY, btc_ai_cmd, cli_env, store_uri, write_binance_csv
from mlflow import MlflowClient

from btc_ai.desk.search_inputs import prepare
from btc_ai.domain.held_out import held_out_block
from btc_ai.domain.search_space import parse_space

SPACE = "LEARNING_RATE: {low: 0.003, high: 0.1, log: true}\nHIDDEN_SIZE: {choices: [8, 16]}\n"


def _files(folder: Path, candles: pd.DataFrame) -> None:
    write_binance_csv(folder / "c.csv", candles)
    (folder / "space.yaml").write_text(SPACE)
    (folder / "tiny.json").write_text(json.dumps(TINY))


@pytest.mark.parametrize(("space", "flags", "words"), [
    ("FOO: {low: 1, high: 2}\n", [], "unknown config key FOO"),
    ("LEARNING_RATE: {low: 0, high: 0.1, log: true}\n", [], "a log range needs low > 0"),
    ("SEED: {low: 1, high: 9}\n", [], "SEED cannot be searched"),
    ("LEARNING_RATE: {low: 0.01, high: 3}\n", [], "LEARNING_RATE=3 is outside the allowed range"),
    ("LEARNING_RATE: [0.01\n", [], "is not valid YAML"),
    (SPACE, ["--trials", "0"], "--trials 0 must be >= 1"),
    (SPACE, ["--holdout", "0.9"], "--holdout 0.9"),
    (SPACE, ["--set", "TEST_FRACTION=0.2"], "drop it"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_created(here, run_main, candles, space, flags, words) -> None:
    _files(here, candles)
    (here / "space.yaml").write_text(space)
    args = ["search", "c.csv", "--space", "space.yaml", "--config", "tiny.json", *flags]
    if "--trials" not in flags:
        args += ["--trials", "2"]
    code, out, err = run_main(*args)
    assert code == 2 and out == "", err
    assert len(err.strip().splitlines()) == 1 and words in err, err
    assert not (here / "mlruns").exists()


def test_the_held_out_block_is_cut_before_every_trials_data(tmp_path, candles) -> None:
    write_binance_csv(tmp_path / "a.csv", candles)
    changed = candles.copy()
    dims = parse_space({"LEARNING_RATE": {"low": 0.01, "high": 0.1}})
    kwargs = {"trials": 2, "folds": 2, "seeds": None, "seed": 0, "prune_after": 1, "held_out_share": 0.2,
              "storage": "sqlite:///unused.db"}
    a = prepare(tmp_path / "a.csv", TINY, dims, **kwargs)
    held = held_out_block(a.candles, a.config, 0.2)
    changed.loc[changed.index >= held.cut, ["open", "high", "low", "close"]] *= 1.5  # another held-out block
    write_binance_csv(tmp_path / "b.csv", changed)
    b = prepare(tmp_path / "b.csv", TINY, dims, **kwargs)
    assert a.fingerprint != b.fingerprint and a.held == b.held
    assert a.study.index[-1] < held.cut and a.study.equals(b.study)
    wa, wb = a.trial_inputs({"LEARNING_RATE": 0.05}), b.trial_inputs({"LEARNING_RATE": 0.05})
    assert wa.fingerprint == wb.fingerprint and wa.candles.equals(wb.candles) and wa.plan == wb.plan
    assert wa.candles.index[-1] < held.cut


def _runs(folder: Path) -> list:
    client = MlflowClient(store_uri(folder))
    exp = client.get_experiment_by_name("btc-ai")
    return client.search_runs([exp.experiment_id], order_by=["attribute.start_time ASC"])


def _study(folder: Path, search_id: str) -> optuna.Study:
    return optuna.load_study(study_name=search_id, storage=f"sqlite:///{folder / 'mlruns' / 'optuna.db'}")


@pytest.mark.slow
def test_a_study_prunes_survives_a_failed_trial_and_scores_its_choice_once_on_the_held_out_block(
        here, run_main, candles, monkeypatch) -> None:
    _files(here, candles)
    monkeypatch.setenv("BTC_AI_FAULT", "OSError@2")  # once per process: the first trial's first session fails
    code, out, err = run_main("search", "c.csv", "--trials", "3", "--folds", "2", "--space", "space.yaml",
                              "--config", "tiny.json", "--prune-after", "1", "--quiet")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("search run ")
    search_id = lines[0].split()[2].rstrip(":")
    assert any(line.startswith("trial 1/3 failed: ") and "OSError" in line for line in lines)
    assert any(line.startswith("trial 2/3 complete: walk-forward Sharpe ") for line in lines)
    assert any(line.startswith("trial 3/3 pruned: pruned after fold 1") for line in lines)

    runs = _runs(here)
    search = next(r for r in runs if r.info.run_id == search_id)
    assert search.data.tags["btc_ai.kind"] == "search" and search.info.status == "FINISHED"
    trials = {int(r.data.tags["btc_ai.trial"]): r for r in runs if "btc_ai.trial" in r.data.tags}
    assert sorted(trials) == [0, 1, 2]
    assert [trials[n].data.tags["btc_ai.trial_state"] for n in range(3)] == ["failed", "complete", "pruned"]
    for wf in trials.values():
        assert wf.data.tags["btc_ai.kind"] == "walk_forward" and wf.data.tags["mlflow.parentRunId"] == search_id
        assert {"LEARNING_RATE", "HIDDEN_SIZE"} <= set(wf.data.params)
    sessions = [r for r in runs if r.data.tags.get("btc_ai.kind") == "session"]
    per_trial = {n: [s for s in sessions if s.data.tags.get("mlflow.parentRunId") == wf.info.run_id]
                 for n, wf in trials.items()}
    assert len(per_trial[1]) == 2 and len(per_trial[2]) == 1  # the pruned trial never began fold 2
    assert "fold/test_return" in trials[1].data.metrics

    (held,) = [s for s in sessions if s.data.tags.get("mlflow.parentRunId") == search_id]
    assert held.data.tags["btc_ai.held_out_trial"] == "1"
    assert held.data.params["LEARNING_RATE"] == trials[1].data.params["LEARNING_RATE"]
    m = search.data.metrics
    assert m["search/held_out_sharpe"] == held.data.metrics["test/sharpe"]
    assert m["search/best_trial"] == 1 and m["search/trials"] == 3 and m["search/pruned"] == 1
    assert 0 <= m["search/deflated_sharpe"] <= 1
    assert m["search/best/walk_forward/mean_sharpe"] == trials[1].data.metrics["walk_forward/mean_sharpe"]
    assert "deflated Sharpe ratio" in out and "verdict: the chosen configuration is" in out
    versions = MlflowClient(store_uri(here)).search_model_versions("name = 'btc-ai-scalping'")
    assert held.info.run_id in {v.run_id for v in versions}  # registered like any session
    artifacts = {a.path for a in MlflowClient(store_uri(here)).list_artifacts(search_id, "plots")}
    assert "plots/search_history.png" in artifacts

    study = _study(here, search_id)
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED]
    assert "OSError" in study.trials[0].user_attrs["error"]
    assert study.trials[1].value == pytest.approx(m["search/best_walk_forward_sharpe"])


def _cli(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(btc_ai_cmd(*args), cwd=folder, env=cli_env(folder), capture_output=True, text=True,
                          timeout=900)


def _outcome(folder: Path) -> tuple[list, str]:
    """Each trial's (params, value), and the final parameters of the held-out session (a trial two workers drew
    past the budget at the same moment is no trial: the report leaves it out too)."""
    (search,) = [r for r in _runs(folder) if r.data.tags.get("btc_ai.kind") == "search"]
    (held,) = [r for r in _runs(folder) if "btc_ai.held_out_trial" in r.data.tags]
    trials = [(t.params, t.value, t.state.name) for t in _study(folder, search.info.run_id).trials
              if not t.user_attrs.get("surplus")]
    return trials, held.data.tags["btc_ai.final_params_sha256"]


STUDY = ["search", "c.csv", "--trials", "3", "--folds", "1", "--space", "space.yaml", "--config", "tiny.json",
         "--prune-after", "9", "--seed", "4"]


@pytest.mark.slow
def test_two_workers_and_a_killed_and_resumed_study_draw_the_same_trials_and_the_held_out_block_moves_none(
        tmp_path, candles) -> None:
    """One study run by two worker processes on one SQLite study, the same study killed by SIGKILL in its
    second trial and resumed in one process: the same trials, values and choice (and the held-out block, which
    differs between the two, moves no trial)."""
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    for folder in (whole, killed):
        folder.mkdir()
        _files(folder, candles)
    # the killed study runs on data whose held-out block differs: no trial may notice
    cut = held_out_block(candles, prepare(whole / "c.csv", TINY, parse_space({"SIGMA": {"low": 0.01, "high": 0.1}}),
                                          trials=1, folds=1, seeds=None, seed=0, prune_after=1, held_out_share=0.2,
                                          storage="sqlite:///x.db").config, 0.2).cut
    other = candles.copy()
    other.loc[other.index >= cut, ["open", "high", "low", "close"]] *= 0.7
    write_binance_csv(killed / "c.csv", other)

    # two workers draw what one process draws here: each of the 3 trials is one of TPE's 5 random start-up
    # trials, drawn from (seed, its number) alone, and nothing is pruned (--prune-after 9)
    parallel = subprocess.Popen(btc_ai_cmd(*STUDY, "--parallel", "2", "--quiet"), cwd=whole, env=cli_env(whole),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, err = parallel.communicate(timeout=900)
    assert parallel.returncode == 0, err
    (search,) = [r for r in _runs(whole) if r.data.tags.get("btc_ai.kind") == "search"]
    assert search.info.status == "FINISHED"
    trials = [t for t in _study(whole, search.info.run_id).trials if not t.user_attrs.get("surplus")]
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    owners = {t.user_attrs["owner"].rpartition(":")[2] for t in trials}
    assert all(o.isdigit() for o in owners) and str(parallel.pid) not in owners  # each run by a worker process
    walk_forwards = [r for r in _runs(whole) if r.data.tags.get("btc_ai.kind") == "walk_forward"]
    assert sorted(int(r.data.tags["btc_ai.trial"]) for r in walk_forwards) == [0, 1, 2]
    assert all(r.data.tags["mlflow.parentRunId"] == search.info.run_id for r in walk_forwards)
    expected_trials, expected_sha = _outcome(whole)

    proc = subprocess.Popen(btc_ai_cmd(*STUDY), cwd=killed, env=cli_env(killed), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    in_trial_2 = False
    for line in proc.stdout:  # a real SIGKILL in the middle of trial 2's training
        in_trial_2 = in_trial_2 or line.startswith("trial 2/3 starting")
        if in_trial_2 and line.startswith("gen 3/"):
            proc.send_signal(signal.SIGKILL)
            break
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    (search,) = [r for r in _runs(killed) if r.data.tags.get("btc_ai.kind") == "search"]
    resumed = _cli(killed, "resume", search.info.run_id)
    assert resumed.returncode == 0, resumed.stderr
    assert "trial 1/3" not in resumed.stdout  # finished trials are not rerun
    assert "trial 2/3 continuing" in resumed.stdout
    walk_forwards = [r for r in _runs(killed) if r.data.tags.get("btc_ai.kind") == "walk_forward"]
    assert sorted(int(r.data.tags["btc_ai.trial"]) for r in walk_forwards) == [0, 1, 2]  # trial 2's continued
    trials, sha = _outcome(killed)
    assert trials == expected_trials and sha == expected_sha
    whole_m = next(r for r in _runs(whole) if r.data.tags.get("btc_ai.kind") == "search").data.metrics
    killed_m = next(r for r in _runs(killed) if r.data.tags.get("btc_ai.kind") == "search").data.metrics
    assert killed_m["search/best_trial"] == whole_m["search/best_trial"]
    assert killed_m["search/held_out_return"] != whole_m["search/held_out_return"]  # the block itself did change


def _workers(folder: Path) -> list[int]:
    """PIDs of the `btc-ai search --worker` processes working in ``folder``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if entry.name.isdigit() and b"--worker" in argv and Path(os.readlink(entry / "cwd")) == folder:
                found.append(int(entry.name))
        except OSError:  # gone, or not ours to read
            continue
    return sorted(found)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed (pip install -e '.[cluster]')")
def test_workers_on_a_ray_cluster_finish_the_study_after_one_is_killed_mid_trial(tmp_path, candles) -> None:
    """`--parallel 2 --ray-address local:2`: the two workers are Ray tasks (processes of the cluster, not of the
    command); one SIGKILLed in its trial's training is started again, its trial is continued, not drawn again,
    and every trial completes."""
    _files(tmp_path, candles)
    two = [*STUDY[:STUDY.index("--trials") + 1], "2", *STUDY[STUDY.index("--trials") + 2:]]  # a trial a worker
    proc = subprocess.Popen(btc_ai_cmd(*two, "--parallel", "2", "--ray-address", "local:2", "--quiet"),
                            cwd=tmp_path, env=cli_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:  # a worker whose training has begun
            workers = _workers(tmp_path)
            if workers and any((tmp_path / "checkpoints").glob("*/*")):
                os.kill(workers[0], signal.SIGKILL)
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"no worker training seen: rc {proc.poll()}")
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out + err
    assert "starting it again (1/3)" in err  # the killed worker's slot
    assert not _workers(tmp_path)  # none left behind
    (search,) = [r for r in _runs(tmp_path) if r.data.tags.get("btc_ai.kind") == "search"]
    assert search.info.status == "FINISHED"
    trials = [t for t in _study(tmp_path, search.info.run_id).trials if not t.user_attrs.get("surplus")]
    assert [t.state.name for t in trials] == ["COMPLETE"] * 2
    assert str(proc.pid) not in {t.user_attrs["owner"].rpartition(":")[2] for t in trials}
    walk_forwards = [r for r in _runs(tmp_path) if r.data.tags.get("btc_ai.kind") == "walk_forward"]
    assert sorted(int(r.data.tags["btc_ai.trial"]) for r in walk_forwards) == [0, 1]  # the killed one continued


@pytest.mark.slow
def test_the_held_out_session_is_the_candidate_the_promotion_gate_judges_and_no_trial_fold_is(
        here, run_main, candles, monkeypatch) -> None:
    """Every session that passes the gate here (it is made to pass): the trial's fold session registers a
    version but moves no alias (an evaluation of the trainer), the held-out session is the candidate and
    becomes @champion, like a plain training."""
    import btc_ai.recovery.session

    monkeypatch.setattr(btc_ai.recovery.session, "promotion_verdict", lambda figures: (True, "passes (made to)"))
    _files(here, candles)
    code, _, err = run_main("search", "c.csv", "--trials", "1", "--folds", "1", "--space", "space.yaml",
                              "--config", "tiny.json", "--quiet")
    assert code == 0, err
    client = MlflowClient(store_uri(here))
    versions = client.search_model_versions("name = 'btc-ai-scalping'")
    held = {v.version for v in versions if "btc_ai.held_out_trial" in client.get_run(v.run_id).data.tags}
    assert len(versions) == 2 and len(held) == 1  # the fold's and the held-out session's
    assert client.get_registered_model("btc-ai-scalping").aliases == {"champion": held.pop()}
