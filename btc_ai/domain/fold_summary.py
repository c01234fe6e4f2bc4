"""What a walk-forward says: the test-span figures of every fold and seed, their aggregate over folds, the
table and the picture. Plain numbers in, plain numbers (and a matplotlib Figure) out.

The aggregate is over folds: each fold's test return is the mean over its seeds, so a fold counts once
however many seeds trained on it. The t-statistic is that per-fold mean over its standard error
(sample standard deviation / sqrt(K)); it needs two folds that differ, else it is NaN.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from btc_ai.domain.baselines import RULE_NAMES
from btc_ai.domain.metric_names import (
    METRIC_TEST_BARS,
    METRIC_TEST_BUY_AND_HOLD_RETURN,
    METRIC_TEST_GROSS_RETURN,
    METRIC_TEST_NULL_PERCENTILE,
    METRIC_TEST_POSITION_CHANGES,
    METRIC_TEST_SHARPE,
    METRIC_TEST_TOTAL_RETURN,
    SPAN_TEST,
    baseline_metric,
    span_metric,
)
from btc_ai.domain.trade_stats import legacy_figure

# the trading statistics a row carries from its session's test span (docs/trades.md), as test_<figure>
ROW_STATISTICS = ("round_trips", "win_rate", "profit_factor", "expectancy", "exposure", "cagr", "calmar",
                  "max_drawdown", "max_drawdown_days")
# one row per fold and seed: the column names of the table (CSV) and what each holds
COLUMNS = ("fold", "seed", "session_run_id", "train_span", "test_span", "test_bars", "test_return", "gross_return",
           "buy_and_hold_return", "sharpe", "null_percentile", "position_changes", "stop_reason", "final_params_sha256",
           "buy_and_hold_sharpe", "sma_crossover_return", "sma_crossover_sharpe", "momentum_return", "momentum_sharpe",
           *(f"test_{k}" for k in ROW_STATISTICS))
# the rule baselines a row carries (flat is 0 and Sharpe 0 by definition), each as <rule>_return and <rule>_sharpe
ROW_RULES = ("buy_and_hold", "sma_crossover", "momentum")


@dataclass(frozen=True)
class FoldRow:
    """The out-of-sample figures of one fold's session for one seed."""

    fold: int
    seed: int
    session_run_id: str
    train_span: str
    test_span: str
    test_bars: int
    test_return: float
    gross_return: float
    buy_and_hold_return: float
    sharpe: float
    null_percentile: float
    position_changes: float  # bars where the position changed (what was called "trades" before round trips)
    stop_reason: str
    final_params_sha256: str
    buy_and_hold_sharpe: float = float("nan")
    sma_crossover_return: float = float("nan")
    sma_crossover_sharpe: float = float("nan")
    momentum_return: float = float("nan")
    momentum_sharpe: float = float("nan")
    statistics: Mapping[str, float] = field(default_factory=dict)  # ROW_STATISTICS of the test span (none: older)

    def stat(self, name: str) -> float:
        return float(self.statistics.get(name, float("nan")))

    def as_dict(self) -> dict[str, Any]:
        return {name: self.stat(name[5:]) if name.startswith("test_") and name[5:] in ROW_STATISTICS
                else getattr(self, name) for name in COLUMNS}


@dataclass(frozen=True)
class Aggregate:
    """The walk-forward's verdict, over folds (each fold: the mean over its seeds)."""

    folds: int
    sessions: int
    mean_test_return: float
    median_test_return: float
    t_statistic: float
    share_above_flat: float
    share_above_buy_and_hold: float
    mean_null_percentile: float
    mean_buy_and_hold_return: float
    mean_gross_return: float
    fold_returns: tuple[float, ...]  # per fold, the mean over seeds
    fold_buy_and_hold: tuple[float, ...]
    mean_sharpe: float = float("nan")
    flat_sessions: int = 0  # sessions whose policy made no trade on its test span
    # per rule: mean test return and Sharpe over folds (same spans, same costs); the best rule by mean Sharpe
    baselines: dict[str, tuple[float, float]] = field(default_factory=dict)
    fold_baselines: dict[str, tuple[float, ...]] = field(default_factory=dict)
    best_baseline: str = ""

    def metrics(self) -> dict[str, float]:
        """The scalar figures by name (non-finite ones left out: MLflow stores no NaN usefully)."""
        values = {"mean_test_return": self.mean_test_return, "median_test_return": self.median_test_return,
                  "t_statistic": self.t_statistic, "share_above_flat": self.share_above_flat,
                  "share_above_buy_and_hold": self.share_above_buy_and_hold,
                  "mean_null_percentile": self.mean_null_percentile,
                  "mean_buy_and_hold_return": self.mean_buy_and_hold_return,
                  "mean_gross_return": self.mean_gross_return, "folds": float(self.folds),
                  "sessions": float(self.sessions), "mean_sharpe": self.mean_sharpe,
                  "flat_sessions": float(self.flat_sessions)}
        for rule, (ret, sharpe) in self.baselines.items():
            values[baseline_metric(rule, "mean_test_return")], values[baseline_metric(rule, "mean_sharpe")] = ret, sharpe
        return {k: float(v) for k, v in values.items() if math.isfinite(v)}


def aggregate(rows: Sequence[FoldRow]) -> Aggregate:
    """The aggregate of ``rows`` (every fold with at least one row)."""
    folds = sorted({r.fold for r in rows})
    returns = np.array([np.mean([r.test_return for r in rows if r.fold == f]) for f in folds], dtype=float)
    hold = np.array([np.mean([r.buy_and_hold_return for r in rows if r.fold == f]) for f in folds], dtype=float)
    gross = np.array([np.mean([r.gross_return for r in rows if r.fold == f]) for f in folds], dtype=float)
    k = len(folds)
    nan = float("nan")

    def per_fold(column: str) -> np.ndarray:
        return np.array([np.nanmean([getattr(r, column) for r in rows if r.fold == f]) for f in folds], dtype=float)

    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a fold whose sessions predate the baselines: NaN
        rules = {rule: (per_fold(f"{rule}_return"), per_fold(f"{rule}_sharpe")) for rule in ROW_RULES}
        sharpe = per_fold("sharpe")
    baselines = {rule: (float(np.mean(ret)), float(np.mean(sh))) for rule, (ret, sh) in rules.items()
                 if k and np.isfinite(sh).all()}
    if baselines:
        baselines = {**baselines, "flat": (0.0, 0.0)}
    best = max(baselines, key=lambda r: baselines[r][1]) if baselines else ""
    spread = float(np.std(returns, ddof=1)) if k > 1 else float("nan")
    t_stat = float(returns.mean() / (spread / math.sqrt(k))) if k > 1 and spread > 0 else float("nan")
    return Aggregate(
        folds=k, sessions=len(rows),
        mean_test_return=float(returns.mean()) if k else nan,
        median_test_return=float(np.median(returns)) if k else nan,
        t_statistic=t_stat,
        share_above_flat=float((returns > 0).mean()) if k else nan,
        share_above_buy_and_hold=float((returns > hold).mean()) if k else nan,
        mean_null_percentile=float(np.mean([r.null_percentile for r in rows])) if rows else nan,
        mean_buy_and_hold_return=float(hold.mean()) if k else nan,
        mean_gross_return=float(gross.mean()) if k else nan,
        fold_returns=tuple(float(x) for x in returns), fold_buy_and_hold=tuple(float(x) for x in hold),
        mean_sharpe=float(sharpe.mean()) if k else nan, flat_sessions=sum(r.position_changes == 0 for r in rows),
        baselines=baselines, best_baseline=best,
        fold_baselines={rule: tuple(float(x) for x in rules[rule][0]) for rule in baselines if rule in rules})


def _pct(x: float) -> str:
    return f"{x:+.2%}" if math.isfinite(x) else "n/a"


def _count(x: float) -> str:
    return f"{x:.0f}" if math.isfinite(x) else "n/a"


def _share(x: float) -> str:
    return f"{x:.1%}" if math.isfinite(x) else "n/a"


def table_lines(rows: Sequence[FoldRow], agg: Aggregate) -> list[str]:
    """The table as printed: one line per fold and seed, then the aggregate."""
    head = (f"{'fold':>4} {'seed':>6}  {'test span (out of sample)':<38} {'return':>8} {'gross':>8} "
            f"{'buy&hold':>8} {'flat':>6} {'SMA':>8} {'mom.':>8} {'Sharpe':>7} {'B&H Sh.':>7} {'SMA Sh.':>7} "
            f"{'mom. Sh.':>8} {'null pct':>8} {'pos.chg':>7} {'trips':>5} {'win %':>6} {'max DD':>7}")
    lines = [head, "-" * len(head)]
    for r in sorted(rows, key=lambda r: (r.fold, r.seed)):
        lines.append(f"{r.fold:>4} {r.seed:>6}  {r.test_span:<38} {_pct(r.test_return):>8} {_pct(r.gross_return):>8} "
                     f"{_pct(r.buy_and_hold_return):>8} {'+0.00%':>6} {_pct(r.sma_crossover_return):>8} "
                     f"{_pct(r.momentum_return):>8} {r.sharpe:>+7.2f} {r.buy_and_hold_sharpe:>+7.2f} "
                     f"{r.sma_crossover_sharpe:>+7.2f} {r.momentum_sharpe:>+8.2f} {r.null_percentile:>8.0f} "
                     f"{r.position_changes:>7.0f} {_count(r.stat('round_trips')):>5} {_share(r.stat('win_rate')):>6} "
                     f"{_share(r.stat('max_drawdown')):>7}")
    t = f"{agg.t_statistic:+.2f}" if math.isfinite(agg.t_statistic) else "n/a (needs 2 folds that differ)"
    lines += [
        "-" * len(head),
        f"over {agg.folds} fold(s) ({agg.sessions} session(s); a fold's return is the mean over its seeds, net of costs):",
        f"  mean test return {_pct(agg.mean_test_return)}, median {_pct(agg.median_test_return)}, t-statistic {t}",
        f"  above flat (0.00%) in {round(agg.share_above_flat * agg.folds)}/{agg.folds} folds, above buy-and-hold in "
        f"{round(agg.share_above_buy_and_hold * agg.folds)}/{agg.folds}; buy-and-hold mean {_pct(agg.mean_buy_and_hold_return)}",
        f"  gross (before costs) mean {_pct(agg.mean_gross_return)}; timing null check: mean percentile "
        f"{agg.mean_null_percentile:.0f} (50 = no timing skill)",
        f"  mean Sharpe {agg.mean_sharpe:+.2f}; sessions whose policy never trades on its test span: "
        f"{agg.flat_sessions}/{agg.sessions}",
    ]
    if agg.baselines:
        rules = ", ".join(f"{RULE_NAMES[rule]} {_pct(ret)} (Sharpe {sharpe:+.2f})"
                          for rule, (ret, sharpe) in agg.baselines.items())
        verdict = "above" if agg.mean_sharpe > agg.baselines[agg.best_baseline][1] else "NOT above"
        lines += [f"  rule baselines, same spans and costs (mean over folds): {rules}",
                  f"  the policy's mean Sharpe is {verdict} the best rule's ({RULE_NAMES[agg.best_baseline]})"]
    return lines


def walk_forward_figure(rows: Sequence[FoldRow], agg: Aggregate, title: str | None = None) -> Any:
    """Test return per fold (bars: the mean over seeds; dots: each seed) against buy-and-hold (line) and flat (0)."""
    from matplotlib.figure import Figure

    from btc_ai.domain.plots import DPI, FIGSIZE

    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    fig.subplots_adjust(left=0.1, right=0.98, top=0.9, bottom=0.22)
    ax = fig.add_subplot()
    folds = sorted({r.fold for r in rows})
    x = np.arange(len(folds))
    ax.bar(x, np.asarray(agg.fold_returns) * 100, width=0.6, color="C0", alpha=0.7, label="policy (mean over seeds)")
    for k, fold in enumerate(folds):
        seeds = [r.test_return * 100 for r in rows if r.fold == fold]
        ax.plot(np.full(len(seeds), x[k]), seeds, "o", color="C0", markersize=4, markeredgecolor="black",
                label="each seed" if k == 0 else None)
    ax.plot(x, np.asarray(agg.fold_buy_and_hold) * 100, "D-", color="C1", label="buy-and-hold")
    for k, rule in enumerate(r for r in agg.fold_baselines if r not in ("buy_and_hold", "flat")):
        ax.plot(x, np.asarray(agg.fold_baselines[rule]) * 100, "s--", color=f"C{k + 4}", label=RULE_NAMES[rule])
    ax.axhline(0.0, color="grey", linewidth=1, label="flat")
    spans = {r.fold: r.test_span for r in rows}
    ax.set_xticks(x, [f"fold {f}\n{spans[f].replace(' .. ', chr(10))}" for f in folds], fontsize=7)
    ax.set_ylabel("test-span return, net of costs (%)")
    ax.set_title(title or f"walk-forward, out of sample: mean {_pct(agg.mean_test_return)} vs buy-and-hold "
                 f"{_pct(agg.mean_buy_and_hold_return)} over {agg.folds} fold(s)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return fig


def plot_walk_forward(rows: Sequence[FoldRow], agg: Aggregate, path: str | Path, title: str | None = None) -> Path:
    """:func:`walk_forward_figure` saved as a PNG at ``path`` (folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    walk_forward_figure(rows, agg, title).savefig(path)
    return path


def row_from_metrics(fold: int, seed: int, session_run_id: str, train_span: str, metrics: Mapping[str, float],
                     tags: Mapping[str, str | None]) -> FoldRow:
    """A row from a fold session's ``test/...`` metrics and its test span and stop reason."""
    nan = float("nan")
    return FoldRow(fold, seed, session_run_id, train_span, tags.get("test_span") or "",
                   int(metrics.get(METRIC_TEST_BARS, 0)), metrics.get(METRIC_TEST_TOTAL_RETURN, nan),
                   metrics.get(METRIC_TEST_GROSS_RETURN, nan), metrics.get(METRIC_TEST_BUY_AND_HOLD_RETURN, nan),
                   metrics.get(METRIC_TEST_SHARPE, nan), metrics.get(METRIC_TEST_NULL_PERCENTILE, nan),
                   legacy_figure(metrics, METRIC_TEST_POSITION_CHANGES, nan), tags.get("stop_reason") or "",
                   tags.get("final_params_sha256") or "",
                   *(metrics.get(baseline_metric(rule, figure), nan) for rule, figure in (
                       ("buy_and_hold", "sharpe"), ("sma_crossover", "total_return"), ("sma_crossover", "sharpe"),
                       ("momentum", "total_return"), ("momentum", "sharpe"))),
                   statistics={k: metrics[span_metric(SPAN_TEST, k)] for k in ROW_STATISTICS
                               if span_metric(SPAN_TEST, k) in metrics})
