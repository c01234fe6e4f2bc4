"""The rule baselines beside the policy wherever it is scored (metrics, console, report, version, walk-forward
table, gate), the population's activity per generation, and a collapse to flat said plainly."""

from __future__ import annotations

import os

import pytest
from conftest import tiny_flags

from btc_ai.domain.baselines import RULES
from btc_ai.domain.collapse import collapse_line
from btc_ai.domain.fold_summary import FoldRow, aggregate, row_from_metrics, table_lines
from btc_ai.domain.promotion import promotion_verdict

# costs that drown every trade: the search settles on a policy that never trades (generation 11 today)
COLLAPSING = {"EPISODES": 24, "EVAL_INTERVAL": 1, "FEE_BPS": 100, "SLIPPAGE_BPS": 100, "TURNOVER_PENALTY_BPS": 100}
ACTIVITY = ("population/never_trade_share", "population/exposure", "centre/exposure", "centre/turnover",
            "centre/fitness", "fitness/noise_std", "fitness/signal_to_noise")


def _client():
    from mlflow import MlflowClient

    uri = os.environ["MLFLOW_TRACKING_URI"]
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _session(out: str) -> str:
    return out.split("done: session ")[1].split()[0]


@pytest.mark.slow  # a training, through the command line
def test_a_training_scores_the_rules_beside_its_policy_everywhere(here, run_main) -> None:
    code, out, err = run_main("train", *tiny_flags())
    assert code == 0, err
    client = _client()
    session = client.get_run(_session(out))
    m = session.data.metrics
    for rule in RULES:
        for figure in ("total_return", "sharpe", "max_drawdown", "position_changes", "validation_total_return",
                       "validation_sharpe"):
            assert f"baseline/{rule}/{figure}" in m, (rule, figure)
    assert m["baseline/flat/sharpe"] == 0.0 and m["baseline/flat/total_return"] == 0.0
    assert m["baseline/buy_and_hold/total_return"] == m["test/buy_and_hold_return"]  # one buy-and-hold, same costs
    assert m["best/generation"] >= 0
    windows = "SMA 288/2016 bars of 5min (1 d / 7 d); momentum over 2016 bars"  # Scalping trades 5-minute bars
    assert f"rule baselines, test span, same costs ({windows}): buy-and-hold" in out
    assert "rule baselines, validation span, same costs" in out and "SMA crossover" in out

    (attempt,) = client.search_runs([session.info.experiment_id], "tags.`btc_ai.kind` = 'attempt'")
    for key in ACTIVITY:  # one value per generation
        assert [h.step for h in client.get_metric_history(attempt.info.run_id, key)] == list(range(1, 7)), key

    code, shown, err = run_main("report", session.info.run_id)
    assert code == 0, err
    assert f"rule baselines, test span, same costs ({windows})" in shown and "collapsed" not in shown
    (version,) = client.search_model_versions("name='btc-ai-scalping'")
    assert version.tags["btc_ai.baseline_windows"] == windows
    assert float(version.tags["metric.baseline/sma_crossover/sharpe"]) == pytest.approx(
        m["baseline/sma_crossover/sharpe"], rel=1e-5)
    assert "rule baselines, test span" in version.description
    verdict = version.tags["btc_ai.promotion"]
    assert "flat (0)" in verdict or "best rule baseline" in verdict  # judged against the rules, naming the best


@pytest.mark.slow  # a training, through the command line
def test_a_policy_that_never_trades_is_said_to_have_collapsed_to_flat(here, run_main) -> None:
    code, out, err = run_main("train", *tiny_flags(**COLLAPSING))
    assert code == 0, err
    client = _client()
    session = client.get_run(_session(out))
    (version,) = client.search_model_versions("name='btc-ai-scalping'")
    generation = int(version.tags["btc_ai.best_generation"])
    line = f"collapsed to flat at generation {generation}: the selected policy never trades"
    assert line in out
    assert session.data.metrics["best/validation_position_changes"] == 0 and session.data.metrics["test/position_changes"] == 0
    (attempt,) = client.search_runs([session.info.experiment_id], "tags.`btc_ai.kind` = 'attempt'")
    shares = [h.value for h in client.get_metric_history(attempt.info.run_id, "population/never_trade_share")]
    assert max(shares) > 0.5  # the population went flat with it
    code, shown, err = run_main("report", session.info.run_id)
    assert code == 0 and line in shown, err
    assert line.capitalize().split(":")[0] in session.data.tags["mlflow.note.content"]
    assert line.capitalize().split(":")[0] in version.description


def test_collapse_needs_no_trade_on_any_span() -> None:
    flat = {"best/validation_trades": 0.0, "test/trades": 0.0, "best_generation": 7}
    assert collapse_line(flat).startswith("collapsed to flat at generation 7:")
    assert collapse_line({**flat, "test/trades": 2.0}) is None
    assert collapse_line({**flat, "best/validation_trades": 1.0}) is None
    assert collapse_line({}) is None
    assert "validation span)" in collapse_line({"best/validation_trades": 0.0, "best/generation": 3.0})


def test_the_gate_refuses_a_policy_a_rule_beats_and_names_the_rule() -> None:
    test = {"test/total_return": 0.05, "test/sharpe": 1.1, "test/buy_and_hold_sharpe": 0.8,
            **{f"baseline/{rule}/sharpe": s for rule, s in
               (("buy_and_hold", 0.8), ("flat", 0.0), ("sma_crossover", 1.3), ("momentum", 0.9))}}
    passed, why = promotion_verdict(test)
    assert not passed and "best rule baseline" in why and "SMA crossover +1.30" in why
    passed, why = promotion_verdict({**test, "test/sharpe": 1.4})
    assert passed and "SMA crossover +1.30" in why
    passed, why = promotion_verdict({**test, "baseline/momentum/sharpe": 1.5, "test/sharpe": 1.4})
    assert not passed and "momentum +1.50" in why
    # flat's Sharpe is 0: a policy with a positive return but a negative Sharpe loses to it
    losing = {**test, "test/sharpe": -0.1, **{f"baseline/{r}/sharpe": -1.0 for r in RULES if r != "flat"}}
    assert not promotion_verdict(losing)[0] and "flat +0.00" in promotion_verdict(losing)[1]


def test_the_walk_forward_table_and_aggregate_carry_the_rules() -> None:
    def row(fold: int, seed: int, ret: float, sharpe: float, trades: float) -> FoldRow:
        return row_from_metrics(fold, seed, f"s{fold}{seed}", "", {
            "test/total_return": ret, "test/sharpe": sharpe, "test/trades": trades, "test/buy_and_hold_return": 0.1,
            "baseline/buy_and_hold/sharpe": 1.0, "baseline/sma_crossover/total_return": 0.05 * fold,
            "baseline/sma_crossover/sharpe": 1.5, "baseline/momentum/total_return": -0.01,
            "baseline/momentum/sharpe": -0.2}, {"test_span": f"span {fold}"})

    rows = [row(1, 1, 0.02, 0.5, 4), row(1, 2, 0.0, 0.0, 0), row(2, 1, 0.01, 0.3, 6), row(2, 2, 0.03, 0.9, 2)]
    agg = aggregate(rows)
    assert agg.baselines["sma_crossover"] == pytest.approx((0.075, 1.5)) and agg.baselines["flat"] == (0.0, 0.0)
    assert agg.best_baseline == "sma_crossover" and agg.flat_sessions == 1
    assert agg.mean_sharpe == pytest.approx(((0.5 + 0.0) / 2 + (0.3 + 0.9) / 2) / 2)
    assert agg.metrics()["baseline/momentum/mean_sharpe"] == pytest.approx(-0.2)
    text = "\n".join(table_lines(rows, agg))
    assert "SMA crossover +7.50% (Sharpe +1.50)" in text and "NOT above the best rule's (SMA crossover)" in text
    assert "never trades on its test span: 1/4" in text
    old = FoldRow(1, 1, "s", "", "span", 10, 0.01, 0.02, 0.03, 0.4, 50, 3, "", "")  # a session from before the rules
    assert aggregate([old]).baselines == {} and "rule baselines" not in "\n".join(table_lines([old], aggregate([old])))
