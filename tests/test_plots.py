"""Plots as artifacts: the session's fitness history and equity curve PNGs, at the session's end and
redrawn from the store alone by `btc-ai report --plots`."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from conftest import TINY, cli_env, write_binance_csv

from btc_ai.domain.config import TrainingConfig
from btc_ai.domain.plots import plot_equity_curve, plot_fitness_history
from btc_ai.recovery import TrainingRecoverySystem
from btc_ai.recovery.session_plots import fitness_attempts, session_equity
from btc_ai.tracking.run_model import RunModel
from btc_ai.tracking.tracker import Tracker
from btc_ai.training.faults import inject_fault
from btc_ai.training.loop import train_model, validation_equity

pytestmark = pytest.mark.xdist_group("plots")  # one test process runs the module's training, once

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CONFIG = {**TINY, "LEARNING_RATE": 0.05, "BUCKET": "Scalping"}


def assert_png(data: bytes) -> None:
    assert data[:8] == PNG_MAGIC
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1000, 500)  # 10 x 5 inches at 100 dpi
    assert 10_000 < len(data) < 1_000_000


class Trained:
    """One short training on a data file, with one recoverable error (so two attempts and a repair)."""

    def __init__(self, root) -> None:
        from btc_ai.domain.synthetic import synthetic_candles

        self.root = root
        self.data = write_binance_csv(root / "candles.csv", synthetic_candles(n_rows=6048, seed=3))
        self.env = cli_env(root)
        self.tracker = Tracker(self.env["MLFLOW_TRACKING_URI"])
        system = TrainingRecoverySystem(checkpoint_dir=root / "ck", max_retries=2, tracker=self.tracker,
                                        sleep=lambda s: None)
        self.model, self.metrics, _, _ = system.start_training_with_recovery(
            inject_fault(train_model, "ValueError@3:LEARNING_RATE"), dict(CONFIG), str(self.data))
        assert self.model is not None, self.metrics.get("error")
        self.session_id = system.session_run_id

    def session(self):
        return self.tracker.client.get_run(self.session_id)

    def artifact(self, path: str) -> bytes:
        local = self.tracker.client.download_artifacts(self.session_id, path, str(self.root / "dl"))
        with open(local, "rb") as fh:
            return fh.read()

    def report(self, run_main, monkeypatch, *args: str) -> tuple[int, str, str]:
        """`btc-ai report SESSION ARGS` in-process (``run_main``), in the training's folder against its store."""
        monkeypatch.chdir(self.root)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", self.env["MLFLOW_TRACKING_URI"])
        return run_main("report", self.session_id, *args)


@pytest.fixture(scope="module", autouse=True)
def plots_on() -> Iterator[None]:
    """The suite's trainings draw no PNG (conftest: BTC_AI_PLOTS=off); here they do."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BTC_AI_PLOTS", "on")
        yield


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Trained:
    return Trained(tmp_path_factory.mktemp("plots"))


@pytest.mark.slow
def test_the_session_ends_with_both_plots_as_artifacts(trained) -> None:
    session = trained.session()
    assert session.data.tags["btc_ai.status"] == "completed"
    assert "btc_ai.plots_warning" not in session.data.tags
    listed = {a.path for a in trained.tracker.client.list_artifacts(trained.session_id, "plots")}
    assert listed == {"plots/fitness_history.png", "plots/equity_curve.png", "plots/trades.csv", "plots/equity.csv"}
    for path in listed - {"plots/trades.csv", "plots/equity.csv"}:
        assert_png(trained.artifact(path))
    # the round trips beside the plot reconcile with the session's figures, span by span
    trades = pd.read_csv(io.BytesIO(trained.artifact("plots/trades.csv")))
    equity = pd.read_csv(io.BytesIO(trained.artifact("plots/equity.csv")))
    metrics = session.data.metrics
    for span, total in (("validation", metrics["best/validation_total_return"]), ("test", metrics["test/total_return"])):
        assert trades[trades.span == span]["net_pnl"].sum() == pytest.approx(total, rel=1e-9, abs=1e-12)
        assert equity[equity.span == span]["equity"].iloc[-1] - 1 == pytest.approx(total, rel=1e-9, abs=1e-12)
    assert len(trades[trades.span == "test"]) == metrics["test/round_trips"]


@pytest.mark.slow
def test_the_equity_curve_ends_at_the_logged_validation_return(trained) -> None:
    logged = trained.session().data.metrics
    attempts = fitness_attempts(RunModel(trained.tracker), trained.session_id)
    assert [a["outcome"] for a in attempts] == ["recoverable_error", "success"]
    assert attempts[1]["repair"] == "clamp_offending_value" and attempts[0]["error"] == "ValueError"
    assert attempts[0]["steps"] == [1, 2] and attempts[1]["steps"] == [3, 4, 5, 6]
    final = trained.tracker.client.get_run(attempts[1]["run_id"])
    config = TrainingConfig.from_dict(final.data.params)

    # the trained module in memory, and the model read back from the store, give the same record
    for curve in (validation_equity(trained.model, config, trained.data), session_equity(RunModel(trained.tracker),
                                                                                           trained.session_id)):
        assert curve.equity[0] == 1.0 and len(curve.equity) == len(curve.buy_and_hold) == len(curve.index)
        assert len(curve.positions) == len(curve.equity) - 1 and curve.index.is_monotonic_increasing
        assert curve.total_return == pytest.approx(logged["best/validation_total_return"], rel=1e-6, abs=1e-12)
        assert curve.buy_and_hold[-1] - 1 == pytest.approx(logged["best/validation_buy_and_hold_return"], rel=1e-6)
    # the flat parameter vector of the model takes the same path
    flat = validation_equity(trained.model.flat_params(), config, trained.data)
    np.testing.assert_array_equal(flat.equity, curve.equity)


@pytest.mark.slow
def test_report_plots_redraws_both_from_the_store(trained, run_main, monkeypatch) -> None:
    out = trained.root / "report-plots"
    code, stdout, stderr = trained.report(run_main, monkeypatch, "--plots", "--out", str(out), "--log")
    assert code == 0, stderr
    assert "Traceback" not in stderr
    for name in ("fitness_history.png", "equity_curve.png"):
        assert_png((out / name).read_bytes())
        assert f"plot: {out / name}" in stdout
    assert "not drawn" not in stdout
    # logged again on the session (asked for with --log), replacing the ones of the training's end
    assert trained.artifact("plots/equity_curve.png") == (out / "equity_curve.png").read_bytes()


@pytest.mark.slow
def test_report_plots_without_the_data_file_draws_the_fitness_plot_and_says_why(trained, run_main,
                                                                                  monkeypatch) -> None:
    moved = trained.data.rename(trained.data.with_suffix(".moved"))
    try:
        out = trained.root / "no-data"
        code, stdout, stderr = trained.report(run_main, monkeypatch, "--plots", "--out", str(out))
    finally:
        moved.rename(trained.data)
    assert code == 0, stderr
    assert_png((out / "fitness_history.png").read_bytes())
    assert not (out / "equity_curve.png").exists()
    lines = [line for line in stdout.splitlines() if "not drawn" in line]
    assert lines == [f"equity curve not drawn: the data file the session trained on is not here: {trained.data}"]


@pytest.mark.slow
def test_a_plot_that_fails_never_fails_the_training(tmp_path, candles, monkeypatch) -> None:
    import btc_ai.domain.plots

    def broken(*args, **kwargs):
        raise RuntimeError("no canvas today")

    monkeypatch.setattr(btc_ai.domain.plots, "plot_equity_curve", broken)
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}")
    system = TrainingRecoverySystem(checkpoint_dir=tmp_path / "ck", tracker=tracker)
    model, metrics, _, _ = system.start_training_with_recovery(train_model, dict(CONFIG), candles)
    assert model is not None, metrics.get("error")
    session = tracker.client.get_run(system.session_run_id)
    assert session.data.tags["btc_ai.status"] == "completed"
    assert session.data.tags["btc_ai.plots_warning"] == "equity curve skipped: RuntimeError: no canvas today"
    assert {a.path for a in tracker.client.list_artifacts(system.session_run_id, "plots")} == \
        {"plots/fitness_history.png"}

    monkeypatch.setattr(btc_ai.domain.plots, "plot_fitness_history", broken)
    model, metrics, _, _ = system.start_training_with_recovery(train_model, dict(CONFIG), candles)
    session = tracker.client.get_run(system.session_run_id)
    assert model is not None and session.data.tags["btc_ai.status"] == "completed"
    assert session.data.tags["btc_ai.plots_warning"] == "plots skipped: RuntimeError: no canvas today"


@pytest.mark.slow
def test_plots_off_logs_the_trade_tables_says_how_to_draw_them_and_report_draws_them(tmp_path, candles, run_main,
                                                                                     monkeypatch, caplog) -> None:
    """BTC_AI_PLOTS=off: no PNG at the session's end (and no warning), the trade tables all the same, a tag
    naming the switch and the command that draws them; that command draws both from the store."""
    monkeypatch.setenv("BTC_AI_PLOTS", "off")
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}")
    system = TrainingRecoverySystem(checkpoint_dir=tmp_path / "ck", tracker=tracker)
    data = write_binance_csv(tmp_path / "candles.csv", candles)  # a file: report redraws the equity curve from it
    with caplog.at_level("INFO", logger="btc_ai"):
        model, metrics, _, _ = system.start_training_with_recovery(train_model, dict(CONFIG), str(data))
    assert model is not None, metrics.get("error")
    session_id = system.session_run_id
    session = tracker.client.get_run(session_id)
    assert session.data.tags["btc_ai.status"] == "completed"
    assert session.data.tags["btc_ai.plots_warning"] == \
        f"plots not drawn (BTC_AI_PLOTS=off); draw them with: btc-ai report {session_id} --plots"
    assert not [r for r in caplog.records if r.levelname == "WARNING" and "plots" in r.getMessage()]
    assert {a.path for a in tracker.client.list_artifacts(session_id, "plots")} == \
        {"plots/trades.csv", "plots/equity.csv"}
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    code, _, stderr = run_main("report", session_id, "--plots", "--out", str(tmp_path / "drawn"))
    assert code == 0, stderr
    for name in ("fitness_history.png", "equity_curve.png"):
        assert_png((tmp_path / "drawn" / name).read_bytes())


def test_plot_functions_take_plain_data(tmp_path) -> None:
    attempts = [
        {"attempt": 1, "outcome": "interrupted", "steps": np.arange(1, 4), "fitness_mean": np.array([0.1, 0.2, 0.15]),
         "fitness_max": np.array([0.3, 0.4, 0.35])},
        {"attempt": 2, "outcome": "recoverable_error", "steps": [4, 5], "fitness_mean": [0.2, np.nan],
         "resumed_from": "checkpoints/gen-000003.pt@abc", "start_generation": 3},
        {"attempt": 3, "outcome": "success", "steps": [], "fitness_mean": [], "repair": "halve_learning_rate_and_sigma_on_nan",
         "start_generation": 4},
    ]
    assert_png(plot_fitness_history(attempts, tmp_path / "a" / "fitness.png").read_bytes())
    index = pd.date_range("2024-01-01", periods=301, freq="5min", tz="UTC")
    equity = np.exp(np.cumsum(np.r_[0.0, np.random.default_rng(0).normal(0, 1e-3, 300)]))
    assert_png(plot_equity_curve(equity, np.linspace(1, 1.1, 301), index, tmp_path / "equity.png").read_bytes())


@pytest.mark.slow  # a fresh Python that imports the recovery floor (torch, mlflow)
def test_plots_know_no_mlflow_and_a_training_loads_matplotlib_only_at_its_end() -> None:
    def loaded(statement: str) -> set[str]:
        code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
        return set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split())

    assert "matplotlib" not in loaded("import btc_ai.recovery.system")
    drawn = loaded("import btc_ai.domain.plots; btc_ai.domain.plots.fitness_figure([])")
    assert "matplotlib" in drawn and not {"mlflow", "torch"} & {name.split(".")[0] for name in drawn}
