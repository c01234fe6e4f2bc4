"""`btc-ai report`: what happened in a session (attempts, repairs, checkpoints, model), optionally redrawn plots."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from btc_ai.cli.common import EXIT_OK, TRACKING_URI_HELP, check_tracking_uri, flag
from btc_ai.domain.errors import ResumeError


def add_parser(sub: Any) -> None:
    report = sub.add_parser(
        "report", help="what happened in a session: attempts, repairs, checkpoints, model",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="A session's attempts (outcome, error, generations, best reward), its repairs with the values before "
                    "and after, the checkpoints on the store, why it stopped, the best policy's validation and "
                    "out-of-sample figures, the registered model, and the command to resume or extend it — read from "
                    "the tracking store alone. Attempts left running by a process that died are marked as such. For a "
                    "walk-forward run: its out-of-sample table over every fold and seed, and what is left to run.",
        epilog="examples:\n"
               "  btc-ai report 3f2c...e9\n"
               "  btc-ai report models:/btc-ai-scalping@champion --json\n"
               "  btc-ai report 3f2c...e9 --plots --out plots/       # redraw the PNGs into a folder\n\n"
               "exit codes: 0 done, 2 bad input (an unknown run or model, no store)")
    report.add_argument("ref", metavar="RUN_ID",
                        help="session, attempt or walk-forward run ID, or models:/<name>/<version>")
    report.add_argument("--json", action="store_true", help="machine-readable output")
    report.add_argument("--plots", action="store_true",
                        help="redraw the fitness history and equity curve PNGs into --out (on the session run too with --log)")
    report.add_argument("--out", metavar="DIR", help="folder for --plots (default ./plots/<session run ID>/)")
    report.add_argument("--log", action="store_true",
                        help="with --plots: also log the PNGs on the session run, replacing its plots/ artifacts")
    flag(report, "tracking_uri", metavar="URI", help=TRACKING_URI_HELP)


def _walk_forward(runs: Any, args: argparse.Namespace) -> bool:
    """Print the walk-forward run ``args.ref`` (its out-of-sample table); False when it is none."""
    # loaded when the command runs, so `btc-ai --help` stays fast
    from btc_ai.desk.walk_forward_report import render_walk_forward, walk_forward_summary

    summary = walk_forward_summary(runs, args.ref)
    if summary is None:
        return False
    print(json.dumps(summary, indent=2, default=str) if args.json else render_walk_forward(summary))
    return True


def run(args: argparse.Namespace) -> int:
    check_tracking_uri(args.tracking_uri, must_exist=True, write=args.plots and args.log)  # nothing created to find nothing in
    # loaded when the command runs, so `btc-ai --help` stays fast
    from btc_ai.desk.session_report import render_summary, session_summary
    from btc_ai.tracking.run_model.local import open_run_model

    runs = open_run_model(args.tracking_uri)  # a local store is read with sqlite3: no seconds of mlflow imports
    try:
        summary = session_summary(runs, args.ref)  # an unknown reference is a ResumeError: one line, exit 2
    except ResumeError:
        if args.plots or not _walk_forward(runs, args):
            raise
        return EXIT_OK
    if args.plots:
        from btc_ai.recovery.session_plots import write_session_plots

        session_id = summary["session_run_id"]
        plots = write_session_plots(runs, session_id, args.out or os.path.join("plots", session_id), log=args.log)
        summary["plots"] = [str(path.resolve()) for path in plots.paths]
        summary["equity_plot_skipped"] = plots.equity_skipped
    print(json.dumps(summary, indent=2, default=str) if args.json else render_summary(summary))
    if args.plots and not args.json:
        for path in summary["plots"]:
            logged = f" (also logged as plots/{os.path.basename(path)} on the session run)" if args.log else ""
            print(f"plot: {path}{logged}")
        if summary["equity_plot_skipped"]:
            print(f"equity curve not drawn: {summary['equity_plot_skipped']}")
    return EXIT_OK
