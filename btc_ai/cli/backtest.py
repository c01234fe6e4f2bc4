"""`btc-ai backtest`: a trained policy on a data file, net and gross of costs, against buy-and-hold and flat."""

from __future__ import annotations

import argparse
import json
from typing import Any

from btc_ai.cli.common import (
    DATA_HELP,
    EXIT_OK,
    OUTLIER_HELP,
    TRACKING_URI_HELP,
    apply_outlier_flag,
    check_tracking_uri,
    data_source,
    flag,
)


def add_parser(sub: Any) -> None:
    backtest = sub.add_parser(
        "backtest", help="score a model on candles: returns net and gross of costs vs buy-and-hold and flat",
        description="Trade MODEL_REF (a models:/ URI, a session run ID, or a checkpoint file) over DATA with the cost "
                    "model it was trained with (or --fee-bps/--slippage-bps), from flat to flat, and report total "
                    "return, Sharpe, Sortino, max drawdown, position changes, turnover and exposure, and a table "
                    "of trading statistics (round trips, win rate, profit factor, expectancy, CAGR, Calmar, drawdown "
                    "duration; docs/trades.md) against buy-and-hold and the rule baselines over the same span, and the null check: the percentile of its return among time-shifted "
                    "copies of its own positions (about 50 means no timing skill). Logged as a run of kind backtest "
                    "unless --no-track. Exit codes: 0 done; 2 bad input.")
    backtest.add_argument("ref", metavar="MODEL_REF", help="models:/<name>/<version|@alias>, session run ID, or checkpoint")
    backtest.add_argument("data", nargs="+", metavar="DATA", help=f"{DATA_HELP} (any layout btc-ai train reads)")
    flag(backtest, "outlier_bars", metavar="CHOICE", help=OUTLIER_HELP)
    backtest.add_argument("--from", dest="start", metavar="T", help="first bar to trade (timestamp; default: the start)")
    backtest.add_argument("--to", dest="end", metavar="T", help="the bar the span ends at (default: the end)")
    flag(backtest, "date_format", metavar="FORMAT", help="how DATA's text dates read when the file cannot tell: "
         "day-first, month-first, iso or a strftime pattern")
    flag(backtest, "fee_bps", type=float, metavar="X", help="fee per side in bps (default: the model's)")
    flag(backtest, "slippage_bps", type=float, metavar="X", help="slippage per side in bps (default: the model's)")
    backtest.add_argument("--json", action="store_true", help="machine-readable output")
    flag(backtest, "plot", metavar="FILE", help="also write the equity curve as a PNG")
    flag(backtest, "no_track", action="store_true", help="a dry look: log nothing to the tracking store")
    flag(backtest, "tracking_uri", metavar="URI", help=TRACKING_URI_HELP)


def run(args: argparse.Namespace) -> int:
    check_tracking_uri(args.tracking_uri)
    apply_outlier_flag(args)
    # loaded when the command runs, so `btc-ai --help` stays fast (these load pandas and torch)
    from btc_ai.desk.backtest import backtest
    from btc_ai.domain.baselines import RULE_NAMES
    from btc_ai.domain.trade_stats import statistics_table

    done = backtest(args.ref, data_source(args.data, "DATA"), start=args.start, end=args.end, fee_bps=args.fee_bps,
                    slippage_bps=args.slippage_bps, tracking_uri=args.tracking_uri, track=not args.no_track,
                    plot=args.plot, date_format=args.date_format)
    result = done.result
    if args.json:
        print(json.dumps({"model": done.model, "run_id": done.run_id, **result.as_dict()}, indent=2))
        return EXIT_OK
    p, h = result.figures, result.buy_and_hold
    print(f"backtest of {done.model} on {result.start:%Y-%m-%d %H:%M} .. {result.end:%Y-%m-%d %H:%M} UTC "
          f"({result.bars} bars, {result.cost_bps:g} bps per unit traded)")
    print(f"  policy:       return {p['total_return']:+.2%} net ({p['gross_return']:+.2%} gross), Sharpe "
          f"{p['sharpe']:+.2f}, Sortino {p['sortino']:+.2f}, max drawdown {p['max_drawdown']:.2%}, "
          f"{p['position_changes']:.0f} position changes, turnover {p['turnover']:.0f}, long {p['long_share']:.0%} / short "
          f"{p['short_share']:.0%} of bars")
    print(f"  buy-and-hold: return {h['total_return']:+.2%} net, Sharpe {h['sharpe']:+.2f}, max drawdown "
          f"{h['max_drawdown']:.2%};  flat: +0.00%")
    for rule, figures in result.baselines.items():
        if rule not in ("buy_and_hold", "flat"):
            print(f"  {RULE_NAMES[rule] + ':':<13} return {figures['total_return']:+.2%} net, Sharpe "
                  f"{figures['sharpe']:+.2f}, max drawdown {figures['max_drawdown']:.2%}, {figures['position_changes']:.0f} position "
                  "changes (long or flat)")
    print(f"  rule windows: {result.windows}; every rule pays the policy's costs")
    columns = {"policy": p, **{RULE_NAMES[rule]: figures for rule, figures in result.baselines.items()
                               if rule != "flat"}}
    print("  statistics (round trips and the equity curve, net of costs):")
    for line in statistics_table(columns):
        print(f"    {line}")
    if result.trades is not None and result.trades["closed_at_end"].any():
        print("  the policy's last trade was still open at the span's end: closed there at the last close")
    print(f"  null check:   {result.null_percentile:.0f}th percentile among time-shifted copies of its own positions "
          "(about 50: no timing skill)")
    if done.run_id:
        print(f"  tracked as backtest run {done.run_id}")
    if args.plot:
        print(f"  plot: {args.plot} (trades.csv and equity.csv beside it)")
    return EXIT_OK
