"""Models you can trust: versions whose files never change, no version when the best policy did not change,
the promotion gate and `promote --force`, a pyfunc model that takes candles (in a fresh process and through
`mlflow models predict`), and `btc-ai backtest` against hand-computed and the training's own figures."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import TINY, tiny_flags

from btc_ai.domain.backtest import backtest_positions
from btc_ai.domain.market import MarketData
from btc_ai.domain.promotion import promotion_verdict
from btc_ai.domain.trade_stats import STATISTICS

pytestmark = pytest.mark.xdist_group("models")  # one test process trains the module's model, once

CONFIG = {**TINY, "LEARNING_RATE": 0.05, "BUCKET": "Scalping"}


def _versions(uri: str, name: str = "btc-ai-scalping") -> list:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    return sorted(client.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version))


def _files_of(uri: str, version) -> dict[str, str]:
    """sha256 of every file behind a version (its logged model's folder on disk)."""
    from mlflow import MlflowClient

    model = MlflowClient(tracking_uri=uri).get_logged_model(version.source.removeprefix("models:/"))
    root = Path(model.artifact_location.removeprefix("file://"))
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.mark.slow
def test_versions_never_change_and_an_unchanged_best_policy_registers_nothing(here, run_main, candles) -> None:
    data = here / "candles.csv"
    candles.reset_index().to_csv(data, index=False)
    uri = os.environ["MLFLOW_TRACKING_URI"]
    code, out, err = run_main("train", "--data_path", str(data), *tiny_flags(EPISODES=4, LEARNING_RATE=0.05))
    assert code == 0, err
    session = out.split("session run ")[1].split()[0]
    (first,) = _versions(uri)
    before = {first.version: _files_of(uri, first)}
    for episodes in ("6", "8"):
        code, out, err = run_main("resume", session, "--episodes", episodes)
        assert code == 0, err
    versions = _versions(uri)
    assert next(v.version for v in versions) == first.version
    sources = [v.source for v in versions]
    assert len(set(sources)) == len(sources)  # no two versions share storage
    assert _files_of(uri, versions[0]) == before[first.version]  # the first version's bytes, as they were
    for version in versions:
        tags = version.tags
        assert tags["session_run_id"] == session
        assert version.source == f"models:/{tags['btc_ai.model_id']}"
        assert {"btc_ai.attempt_run_id", "btc_ai.best_generation", "btc_ai.timeframe", "btc_ai.data_fingerprint",
                "btc_ai.config_sha256", "btc_ai.promotion", "metric.test/total_return",
                "metric.best/validation_total_return"} <= set(tags)
        assert "Out of sample" in version.description and version.description.count("%") >= 3
    # a resume that ends with the same best policy (nothing left to train: the run was only closed as
    # interrupted after its registration) registers no new version, and says so
    from btc_ai.recovery import session as session_module

    def interrupted_plots(self, model) -> None:
        raise KeyboardInterrupt

    original = session_module.Session._log_plots
    session_module.Session._log_plots = interrupted_plots
    try:
        code, out, err = run_main("resume", session, "--episodes", "9")
    finally:
        session_module.Session._log_plots = original
    assert code == 130
    count = len(_versions(uri))  # with the version of generation 9, if its best policy was new
    code, out, err = run_main("resume", session)
    assert code == 0, err
    assert "best policy unchanged" in out and "no new version" in out
    assert len(_versions(uri)) == count


def test_the_gate_needs_a_net_gain_and_a_better_sharpe_than_buy_and_hold() -> None:
    good = {"test/total_return": 0.02, "test/sharpe": 1.5, "test/buy_and_hold_sharpe": 0.4}
    assert promotion_verdict(good)[0]
    assert not promotion_verdict({**good, "test/total_return": -0.001})[0]  # a loss after costs
    passed, why = promotion_verdict({**good, "test/buy_and_hold_sharpe": 2.0})  # gains less per unit of risk
    assert not passed and "buy-and-hold" in why
    assert not promotion_verdict({})[0]  # no test span: nothing out of sample to judge by


def _register(uri: str, tmp_path: Path, champion: bool, seed: int) -> str:
    from btc_ai.domain.config import TrainingConfig
    from btc_ai.domain.policy import PolicyNet
    from btc_ai.domain.policy_files import PolicyCard
    from btc_ai.tracking.registry import log_model_version
    from btc_ai.tracking.tracker import Tracker
    from btc_ai.training.loop import params_sha256

    tracker = Tracker(uri)
    config = TrainingConfig.from_dict(CONFIG)
    card = PolicyCard.of(config)
    net = PolicyNet(card.spec, card.feature_names).load_flat(card.spec.init_params(seed))
    card = PolicyCard.of(config, params_sha256(net.flat_params()))
    run = tracker.create_run("session", name="gate")
    registration = log_model_version(tracker, run, net, card, name="btc-ai-scalping", tags={}, description="d",
                                     champion=champion, verdict="built to pass" if champion else "built to fail",
                                     previous={})
    return registration.version


def test_the_champion_moves_only_for_a_version_that_passes_and_promote_force_records_why(here, run_main) -> None:
    from mlflow import MlflowClient

    uri = os.environ["MLFLOW_TRACKING_URI"]
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    passing = _register(uri, here, True, 1)
    assert str(client.get_model_version_by_alias("btc-ai-scalping", "champion").version) == passing
    failing = _register(uri, here, False, 2)
    assert str(client.get_model_version_by_alias("btc-ai-scalping", "champion").version) == passing  # stays
    assert client.get_model_version("btc-ai-scalping", failing).tags["btc_ai.promotion"] == "rejected: built to fail"
    code, _, err = run_main("promote", f"models:/btc-ai-scalping/{failing}")
    assert code == 2 and "did not pass the promotion gate" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_main("promote", f"models:/btc-ai-scalping/{failing}", "--force")
    assert code == 2 and "--reason" in err
    code, _out, err = run_main("promote", "models:/btc-ai-scalping/latest", "--force", "--reason", "a drill")
    assert code == 0, err
    assert str(client.get_model_version_by_alias("btc-ai-scalping", "champion").version) == failing
    note = client.get_model_version("btc-ai-scalping", failing).tags["btc_ai.promoted_by"]
    assert "forced: a drill" in note and "@" in note


def test_a_backtest_matches_a_hand_computed_three_bar_example() -> None:
    index = pd.date_range("2024-01-01", periods=3, freq="5min", tz="UTC")
    returns = np.log(np.array([1.01, 0.98, 1.03])).astype(np.float32)
    span = MarketData(np.zeros((3, 1), np.float32), returns, np.array([100, 101, 98.98, 101.9494]), index, 105_120.0)
    positions = np.array([1.0, 0.0, -1.0], dtype=np.float32)
    cost = 0.0005
    result = backtest_positions(positions, span, cost, 0.0)
    expected = 1.01 * (1 - cost) * (1 - cost) * (1 / 1.03) * (1 - cost) * (1 - cost) - 1  # open, close, open, close
    assert result.figures["total_return"] == pytest.approx(expected, rel=1e-5)
    assert result.figures["gross_return"] == pytest.approx(1.01 / 1.03 - 1, rel=1e-5)
    assert result.figures["position_changes"] == 4 and result.figures["turnover"] == 4
    assert result.figures["long_share"] == pytest.approx(1 / 3) and result.figures["short_share"] == pytest.approx(1 / 3)
    assert result.buy_and_hold["total_return"] == pytest.approx(1.01 * 0.98 * 1.03 * (1 - cost) ** 2 - 1, rel=1e-5)
    assert math.isclose(result.equity[-1] - 1, result.figures["total_return"], rel_tol=1e-9)


@pytest.fixture(scope="module")
def registered(tmp_path_factory, candles) -> tuple[Path, str, dict]:
    """A store with one session trained in-process, its data as a CSV, and the training's metrics."""
    from btc_ai.recovery import TrainingRecoverySystem

    root = tmp_path_factory.mktemp("models")
    data = root / "candles.csv"
    candles.reset_index().to_csv(data, index=False)
    uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    system = TrainingRecoverySystem(checkpoint_dir=root / "ck", tracking_uri=uri, sleep=lambda s: None)
    model, metrics, _, _ = system.start_training_with_recovery(config=dict(CONFIG), df=str(data))
    assert model is not None, metrics
    return root, uri, metrics


@pytest.mark.slow
def test_backtest_of_the_validation_and_test_spans_equals_the_trainings_own_figures(registered, candles) -> None:
    from btc_ai import backtest
    from btc_ai.domain.config import TrainingConfig
    from btc_ai.training.loop import market_split

    _root, uri, metrics = registered
    split = market_split(candles, TrainingConfig.from_dict(CONFIG))
    step = candles.index[1] - candles.index[0]
    for span, prefix in ((split.validation, "best/validation_"), (split.test, "test/")):
        done = backtest(f"models:/btc-ai-scalping/{metrics['model_version']}", candles, start=span.index[0],
                        end=span.index[-1] + step, tracking_uri=uri)
        for key in ("total_return", "gross_return", "sharpe", "max_drawdown", "position_changes", "turnover"):
            assert done.result.figures[key] == pytest.approx(metrics[prefix + key], rel=1e-9, abs=1e-12), key
    for key in STATISTICS:  # the round trips' and the curve's statistics: the session's test-span figures
        assert done.result.figures[key] == pytest.approx(metrics[f"test/{key}"], rel=1e-9, abs=1e-12), key
    assert done.result.null_percentile == pytest.approx(metrics["test/null_percentile"])


@pytest.mark.slow
def test_backtest_command_tracks_a_run_and_refuses_bad_input(registered, here, run_main, monkeypatch) -> None:
    root, uri, _metrics = registered
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    data = root / "candles.csv"
    code, out, err = run_main("backtest", "models:/btc-ai-scalping/latest", str(data), "--json", "--plot",
                              str(here / "bt.png"))
    assert code == 0, err
    report = json.loads(out)
    assert report["run_id"] and report["bars"] > 1000 and set(report["policy"]) >= {"sortino", "long_share"}
    assert set(report["policy"]) >= set(STATISTICS) and "position_changes" in report["policy"]
    assert (here / "bt.png").read_bytes()[:4] == b"\x89PNG"
    trades = pd.read_csv(here / "trades.csv")  # beside the plot, and logged beside it under plots/
    assert len(trades) == report["policy"]["round_trips"]
    assert trades["net_pnl"].sum() == pytest.approx(report["policy"]["total_return"], rel=1e-9, abs=1e-12)
    assert len(pd.read_csv(here / "equity.csv")) == report["bars"] + 1
    from mlflow import MlflowClient

    logged = {a.path for a in MlflowClient(tracking_uri=uri).list_artifacts(report["run_id"], "plots")}
    assert {"plots/trades.csv", "plots/equity.csv"} <= logged
    code, out, err = run_main("backtest", "models:/btc-ai-scalping/latest", str(data), "--no-track")
    assert code == 0 and "round trips" in out and "profit factor" in out and "Calmar" in out, err
    assert "nan" not in out.lower() and "inf" not in out.lower().replace("info", "")
    short = here / "short.csv"
    pd.read_csv(data).head(30).to_csv(short, index=False)
    hourly = here / "hourly.csv"
    frame = pd.read_csv(data)
    frame.iloc[::12].to_csv(hourly, index=False)  # 1-hour candles: a 5-minute model cannot trade them
    for args, needle in ((("models:/btc-ai-scalping/99", str(data)), "model version btc-ai-scalping/99 does not exist"),
                         (("models:/btc-ai-scalping/latest", str(short)), "bars"),
                         (("models:/btc-ai-scalping/latest", str(hourly)), "timeframe")):
        code, _, err = run_main("backtest", *args)
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


@pytest.mark.slow
def test_the_model_lists_its_requirements_and_leaves_mlflows_package_map_as_it_was(registered) -> None:
    """Saving the model gives MLflow's requirement check a map of our few packages only (the full map costs
    0.5-2.6 s to build); the model still lists every requirement, and the process keeps no partial map."""
    import mlflow
    from mlflow.utils import requirements_utils

    root, _uri, _metrics = registered
    (requirements,) = {p.read_text() for p in root.rglob("requirements.txt")}
    assert requirements.split() == [f"mlflow=={mlflow.__version__}", "btc_ai", "torch", "pandas", "safetensors"]
    packages = requirements_utils._MODULES_TO_PACKAGES
    assert packages is None or "numpy" in packages  # unbuilt, or MLflow's own full map: never ours


@pytest.mark.slow
def test_the_registered_model_takes_candles_in_a_fresh_process_and_through_mlflow_models_predict(registered,
                                                                                                 candles) -> None:
    root, uri, _metrics = registered
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}, "MLFLOW_TRACKING_URI": uri}
    index_layout = root / "index.parquet"
    candles.head(3000).to_parquet(index_layout)  # timestamps as the index
    column_layout = root / "column.csv"
    candles.head(3000).reset_index().to_csv(column_layout, index=False)  # a timestamp column, as text
    code = (
        "import sys, pandas as pd, mlflow.pyfunc\n"
        "model = mlflow.pyfunc.load_model('models:/btc-ai-scalping/latest')\n"
        f"a = model.predict(pd.read_parquet({str(index_layout)!r}))\n"
        f"b = model.predict(pd.read_csv({str(column_layout)!r}))\n"
        "assert list(a.columns) == ['timestamp', 'position', 'p_short', 'p_flat', 'p_long', 'ready'], a.columns\n"
        "assert (a.position.values == b.position.values).all() and set(a.position) <= {-1, 0, 1}\n"
        "assert ((a[['p_short', 'p_flat', 'p_long']].sum(axis=1) - 1).abs() < 1e-6).all()\n"
        "print('btc_ai' in sys.modules and 'loaded', int(a.ready.sum()))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    out_file = root / "predictions.json"
    cli = subprocess.run([str(Path(sys.executable).parent / "mlflow"), "models", "predict", "-m",
                          "models:/btc-ai-scalping/latest", "-i", str(column_layout), "-t", "csv", "--env-manager",
                          "local", "-o", str(out_file)], env=env, capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stderr[-2000:]
    predictions = json.loads(out_file.read_text())["predictions"]
    assert len(predictions) == 3000 and {"position", "p_long", "ready"} <= set(predictions[0])


@pytest.mark.slow
def test_a_restored_backup_serves_every_version_with_the_same_bytes(registered, tmp_path) -> None:
    """Backup and restore copy a version's files byte for byte; the restored registry points at them, and the
    model loads and predicts from the restored store alone."""
    from btc_ai.desk.backup import create_backup, restore_backup

    root, uri, _ = registered
    before = {v.version: _files_of(uri, v) for v in _versions(uri)}
    archive = create_backup("1", "versions", dest=tmp_path / "backups", root=root, tracking_uri=uri)
    restored = restore_backup(archive.path, tmp_path / "restored")
    after = {v.version: _files_of(restored.tracking_uri, v) for v in _versions(restored.tracking_uri)}
    assert after == before and before
    code = ("import pandas as pd, mlflow.pyfunc\n"
            f"frame = pd.read_csv({str(root / 'candles.csv')!r}).head(2000)\n"
            "print(int(mlflow.pyfunc.load_model('models:/btc-ai-scalping/latest').predict(frame).ready.sum()))\n")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
           "MLFLOW_TRACKING_URI": restored.tracking_uri}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
