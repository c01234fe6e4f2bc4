"""Walk-forward: folds in time order whose test blocks do not overlap and that no fold trains on; the table equal
to the fold sessions' own metrics on the store; killed mid-fold (a real SIGKILL) and resumed, it ends as an
uninterrupted run does; bad input is one line, exit 2, and nothing created."""

from __future__ import annotations

import csv
import itertools
import json
import math
import signal
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from conftest import TINY, btc_ai_cmd, cli_env, run_cli, store_uri, tiny_flags, write_binance_csv
from mlflow import MlflowClient

from btc_ai.domain.config import TrainingConfig
from btc_ai.domain.data import load_candles, resample_candles
from btc_ai.domain.features import warmup_bars
from btc_ai.domain.fold_summary import FoldRow, aggregate
from btc_ai.domain.folds import fold_candles, plan_folds
from btc_ai.training.loop import market_split

# -- the folds (no training) ----------------------------------------------------------------------------


@pytest.mark.parametrize(("bucket", "k"), [("Scalping", 1), ("Scalping", 3), ("Scalping", 6), ("Intraday", 2)])
def test_folds_are_in_time_order_their_test_blocks_disjoint_and_unseen_by_their_training(candles, bucket, k) -> None:
    data = load_candles(candles)[0]
    config = TrainingConfig.from_dict({"BUCKET": bucket})
    plan = plan_folds(data, config, k)
    folds = plan.folds
    assert [f.number for f in folds] == list(range(1, k + 1))
    bars = resample_candles(data, config.TIMEFRAME)
    assert folds[-1].until is None and folds[-1].test.end == bars.index[-2]  # the last block ends with the data
    assert len({f.test.bars for f in folds}) == 1  # equal blocks
    step = bars.index[1] - bars.index[0]
    purge = warmup_bars(config.LOOKBACK)
    for before, after in itertools.pairwise(folds):
        assert before.test.end < after.test.start  # in time order, not overlapping
        assert after.test.start == before.until  # consecutive: the next block starts where this fold's data ends
        assert before.train.start == after.train.start and before.bars < after.bars  # expanding windows
    for fold in folds:
        assert 0 < fold.test_fraction <= 0.4 and config.VALIDATION_FRACTION + fold.test_fraction <= 0.8
        session_data = fold_candles(data, fold)
        # the session's own split of its slice, as the trainer makes it, holds out exactly this fold's block
        split = market_split(resample_candles(session_data, config.TIMEFRAME), config.replace(TEST_FRACTION=fold.test_fraction))
        assert (split.test.index[0], split.test.index[-1], len(split.test)) == (fold.test.start, fold.test.end, fold.test.bars)
        # training and selection end before the fold's own block, apart by the feature warm-up; later blocks are
        # not even in the session's data
        assert split.train.index[-1] < split.validation.index[0] and split.validation.index[-1] < fold.test.start
        assert fold.test.start - split.validation.index[-1] > purge * step
        later = [f.test.start for f in folds if f.number > fold.number]
        assert all(session_data.index[-1] < start for start in later)
    assert f"{k} equal" in plan.construction and "test block" in plan.construction


def test_the_aggregate_is_over_folds_each_the_mean_over_its_seeds() -> None:
    def row(fold: int, seed: int, ret: float, hold: float, null: float) -> FoldRow:
        return FoldRow(fold, seed, f"s{fold}{seed}", "", f"span {fold}", 10, ret, ret + 0.01, hold, 0.0, null, 3, "", "")

    rows = [row(1, 1, 0.02, 0.05, 40), row(1, 2, 0.04, 0.05, 60), row(2, 1, -0.01, -0.03, 50), row(2, 2, -0.03, -0.03, 50),
            row(3, 1, 0.06, 0.01, 70), row(3, 2, 0.06, 0.01, 30)]
    agg = aggregate(rows)
    fold_means = [0.03, -0.02, 0.06]
    assert agg.fold_returns == pytest.approx(fold_means)
    assert agg.mean_test_return == pytest.approx(sum(fold_means) / 3)
    assert agg.median_test_return == pytest.approx(0.03)
    sd = pd.Series(fold_means).std(ddof=1)
    assert agg.t_statistic == pytest.approx((sum(fold_means) / 3) / (sd / math.sqrt(3)))
    assert agg.share_above_flat == pytest.approx(2 / 3) and agg.share_above_buy_and_hold == pytest.approx(2 / 3)
    assert agg.mean_null_percentile == pytest.approx(50.0) and agg.sessions == 6 and agg.folds == 3
    one = aggregate(rows[:2])
    assert math.isnan(one.t_statistic) and "t_statistic" not in one.metrics()  # one fold: no t-statistic


# -- bad input: one line, exit 2, nothing created -------------------------------------------------------


def _one_line_exit_2(code: int, err: str, word: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert word.lower() in lines[0].lower(), lines[0]


@pytest.mark.parametrize(("case", "word"), [
    ("missing", "does not exist"), ("folder", "holds no candle files"), ("short", "too few"), ("zero", "at least 1 fold"),
    ("negative", "at least 1 fold"), ("test_fraction", "TEST_FRACTION"), ("seeds", "repeats"), ("seed_range", "seed"),
    ("config", "invalid config")])
def test_bad_input_is_one_line_exit_2_and_nothing_created(here, run_main, candles, case, word) -> None:
    csv_path = write_binance_csv(here / "c.csv", candles)
    short = write_binance_csv(here / "short.csv", candles.iloc[:400])
    (here / "empty").mkdir()
    args = {
        "missing": [str(here / "nope.csv"), "--folds", "2"],
        "folder": [str(here / "empty"), "--folds", "2"],  # a folder is many files (test_data_files.py): none here
        "short": [str(short), "--folds", "4"],
        "zero": [str(csv_path), "--folds", "0"],
        "negative": [str(csv_path), "--folds", "-3"],
        "test_fraction": [str(csv_path), "--folds", "2", "--set", "TEST_FRACTION=0.1"],
        "seeds": [str(csv_path), "--folds", "2", "--seeds", "1", "1"],
        "seed_range": [str(csv_path), "--folds", "2", "--seeds", "-1"],
        "config": [str(csv_path), "--folds", "2", "--set", "ES_POPULATON=8"],
    }[case]
    code, _, err = run_main("walk-forward", *args, *tiny_flags())
    _one_line_exit_2(code, err, word)
    assert not (here / "mlruns").exists() and not (here / "checkpoints").exists()


# -- whole walk-forwards (they train) ----------------------------------------------------------------------


def _client(folder: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=store_uri(folder))


def _walk_forwards(folder: Path) -> list:
    client = _client(folder)
    experiment = client.get_experiment_by_name("btc-ai")
    return client.search_runs([experiment.experiment_id], "tags.`btc_ai.kind` = 'walk_forward'")


def _fold_sessions(folder: Path, parent: str) -> dict[tuple[int, int], object]:
    client = _client(folder)
    runs = client.search_runs([client.get_run(parent).info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent}'")
    return {(int(r.data.tags["btc_ai.fold"]), int(r.data.tags["btc_ai.seed"])): r for r in runs
            if r.data.tags["btc_ai.kind"] == "session"}


def _table(folder: Path, run_id: str) -> list[dict[str, str]]:
    path = _client(folder).download_artifacts(run_id, "walk_forward_results.csv", str(folder))
    with open(path, encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_the_table_holds_the_fold_sessions_own_test_figures(here, run_main, candles) -> None:
    data = write_binance_csv(here / "c.csv", candles)
    code, out, err = run_main("walk-forward", str(data), "--folds", "3", "--seeds", "5", "6", "--quiet", *tiny_flags())
    assert code == 0, err
    (parent,) = _walk_forwards(here)
    assert parent.info.status == "FINISHED" and parent.data.tags["btc_ai.status"] == "completed"
    assert parent.data.tags["btc_ai.folds"] == "3" and parent.data.tags["btc_ai.seeds"] == "5 6"
    assert "equal, disjoint, consecutive test blocks" in parent.data.tags["mlflow.note.content"]
    sessions = _fold_sessions(here, parent.info.run_id)
    assert sorted(sessions) == [(f, s) for f in (1, 2, 3) for s in (5, 6)]
    plan = plan_folds(load_candles(data)[0], TrainingConfig.from_dict(TINY), 3)
    rows = _table(here, parent.info.run_id)
    assert len(rows) == 6
    for row in rows:
        session = sessions[(int(row["fold"]), int(row["seed"]))]
        m = session.data.metrics
        assert session.data.tags["btc_ai.status"] == "completed" and row["session_run_id"] == session.info.run_id
        assert float(session.data.params["SEED"]) == int(row["seed"])
        assert float(row["test_return"]) == m["test/total_return"]
        assert float(row["buy_and_hold_return"]) == m["test/buy_and_hold_return"]
        assert float(row["null_percentile"]) == m["test/null_percentile"]
        assert float(row["gross_return"]) == m["test/gross_return"]
        for rule in ("sma_crossover", "momentum"):  # the rule baselines of the same test span, same costs
            assert float(row[f"{rule}_return"]) == m[f"baseline/{rule}/total_return"]
            assert float(row[f"{rule}_sharpe"]) == m[f"baseline/{rule}/sharpe"]
        assert float(row["buy_and_hold_sharpe"]) == m["baseline/buy_and_hold/sharpe"] == m["test/buy_and_hold_sharpe"]
        assert row["final_params_sha256"] == session.data.tags["btc_ai.final_params_sha256"]
        fold = plan.folds[int(row["fold"]) - 1]
        assert row["test_span"] == session.data.tags["btc_ai.test_span"] == fold.test.label()
        assert float(session.data.params["TEST_FRACTION"]) == fold.test_fraction
    folds = {f: [float(r["test_return"]) for r in rows if int(r["fold"]) == f] for f in (1, 2, 3)}
    means = [sum(v) / len(v) for v in folds.values()]
    metrics = parent.data.metrics
    assert metrics["walk_forward/mean_test_return"] == pytest.approx(sum(means) / 3, rel=1e-12)
    assert metrics["walk_forward/median_test_return"] == pytest.approx(sorted(means)[1], rel=1e-12)
    assert metrics["walk_forward/share_above_flat"] == pytest.approx(sum(x > 0 for x in means) / 3)
    history = _client(here).get_metric_history(parent.info.run_id, "fold/test_return")
    assert [h.step for h in sorted(history, key=lambda h: h.step)] == [1, 2, 3]
    assert [h.value for h in sorted(history, key=lambda h: h.step)] == pytest.approx(means, rel=1e-12)
    artifacts = {a.path for a in _client(here).list_artifacts(parent.info.run_id, "plots")}
    assert "plots/walk_forward.png" in artifacts
    assert f"mean test return {metrics['walk_forward/mean_test_return']:+.2%}" in out  # the printed table
    sma = [sum(float(r["sma_crossover_return"]) for r in rows if int(r["fold"]) == f) / 2 for f in (1, 2, 3)]
    assert metrics["walk_forward/baseline/sma_crossover/mean_test_return"] == pytest.approx(sum(sma) / 3, rel=1e-12)
    assert "rule baselines, same spans and costs (mean over folds): buy-and-hold" in out and "SMA crossover" in out
    assert "SMA 288/2016 bars of 5min" in parent.data.tags["mlflow.note.content"]

    # `btc-ai report <walk-forward>` reads the same table back from the store, and --json its figures
    code, shown, err = run_main("report", parent.info.run_id)
    assert code == 0, err
    table = out[out.index("fold   seed"):out.index("(50 = no timing skill)")]
    assert table in shown and "completed" in shown.splitlines()[0] and "sessions done: 6 of 6" in shown
    code, shown, err = run_main("report", parent.info.run_id, "--json")
    summary = json.loads(shown)
    assert code == 0 and summary["resume_command"] is None and not summary["unfinished"]
    assert summary["aggregate"]["mean_test_return"] == metrics["walk_forward/mean_test_return"]
    assert {(r["fold"], r["seed"]): r["test_return"] for r in summary["rows"]} == \
        {(int(r["fold"]), int(r["seed"])): float(r["test_return"]) for r in rows}


# ~20-40 ms per generation: slow enough to kill mid-fold, fast enough for the suite
KILL_CONFIG = {"EPISODES": 40, "HIDDEN_SIZE": 48, "ES_POPULATION": 16, "MAX_STEPS_PER_EPISODE": 128,
               "EPISODES_PER_EVAL": 4, "EVAL_INTERVAL": 4, "MIN_CHECKPOINT_INTERVAL": 3, "CHECKPOINT_MIN_SECONDS": 0,
               "NOISE_TABLE_SIZE": 262144}


def _cli(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return run_cli(folder, *args)  # in this process: only the walk-forward the test kills needs its own


def _outcome(folder: Path) -> tuple[dict, dict]:
    (parent,) = _walk_forwards(folder)
    shas = {key: run.data.tags.get("btc_ai.final_params_sha256")
            for key, run in _fold_sessions(folder, parent.info.run_id).items()}
    aggregate_metrics = {k: v for k, v in parent.data.metrics.items() if k.startswith("walk_forward/")}
    return shas, aggregate_metrics


@pytest.mark.slow
def test_killed_mid_fold_and_resumed_it_ends_as_an_uninterrupted_walk_forward(tmp_path, candles) -> None:
    args = ["--folds", "3", *tiny_flags(**KILL_CONFIG)]
    whole = tmp_path / "whole"
    killed = tmp_path / "killed"
    for folder in (whole, killed):
        folder.mkdir()
        write_binance_csv(folder / "c.csv", candles)
    done = _cli(whole, "walk-forward", "c.csv", *args)
    assert done.returncode == 0, done.stderr
    expected_shas, expected_aggregate = _outcome(whole)
    assert len(expected_shas) == 3 and all(expected_shas.values()) and expected_aggregate

    # a real SIGKILL once the second fold's session has trained a few generations
    proc = subprocess.Popen(btc_ai_cmd("walk-forward", "c.csv", *args), cwd=killed, env=cli_env(killed),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    in_fold_2 = False
    for line in proc.stdout:
        in_fold_2 = in_fold_2 or line.startswith("fold 2/3")
        if in_fold_2 and line.startswith("gen 5/"):
            proc.send_signal(signal.SIGKILL)
            break
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    (parent,) = _walk_forwards(killed)
    assert parent.info.status == "RUNNING"  # a killed process cannot close its runs
    sessions = _fold_sessions(killed, parent.info.run_id)
    assert sorted(sessions) == [(1, 42), (2, 42)]  # fold 3 not begun
    assert sessions[(1, 42)].data.tags["btc_ai.status"] == "completed"
    assert sessions[(2, 42)].info.status == "RUNNING"  # killed mid-fold

    shown = _cli(killed, "report", parent.info.run_id)  # what is done, what is not, and how to go on
    assert shown.returncode == 0, shown.stderr
    assert "sessions done: 1 of 3" in shown.stdout and f"continue it: btc-ai resume {parent.info.run_id}" in shown.stdout
    assert f"fold 2 seed 42: session {sessions[(2, 42)].info.run_id}" in shown.stdout

    resumed = _cli(killed, "resume", parent.info.run_id)
    assert resumed.returncode == 0, resumed.stderr
    assert "fold 1 seed 42: done earlier" in resumed.stdout
    assert f"continuing session {sessions[(2, 42)].info.run_id}" in resumed.stdout
    assert _outcome(killed) == (expected_shas, expected_aggregate)
    (parent,) = _walk_forwards(killed)
    assert parent.info.status == "FINISHED" and parent.data.tags["btc_ai.status"] == "completed"

    # a fold session's ID leads to its walk-forward too; done, it says so and shows the table again
    again = _cli(killed, "resume", sessions[(2, 42)].info.run_id)
    assert again.returncode == 0, again.stderr
    assert "already completed" in again.stdout and "mean test return" in again.stdout
