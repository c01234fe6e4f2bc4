"""`btc-ai promote`: move a model alias (the champion) by hand, recording who and why."""

from __future__ import annotations

import argparse
from typing import Any

from btc_ai.cli.common import EXIT_OK, TRACKING_URI_HELP, check_tracking_uri, flag


def add_parser(sub: Any) -> None:
    promote = sub.add_parser(
        "promote", help="point an alias (default champion) at a model version; --force for one the gate rejected",
        description="Move ALIAS to MODEL_REF. New versions become the champion only by passing the promotion gate "
                    "on their test span (net return above flat and Sharpe above every rule baseline's); a version that "
                    "failed it moves only with --force and --reason, recorded on the version. Exit codes: 0 moved; "
                    "2 bad input (unknown version, a rejected version without --force).")
    promote.add_argument("ref", metavar="MODEL_REF", help="models:/<name>/<version> (or @<alias>, /latest)")
    flag(promote, "alias", default="champion", metavar="ALIAS", help="the alias to move (default champion)")
    flag(promote, "force", action="store_true", help="move it although the promotion gate rejected the version")
    flag(promote, "reason", metavar="TEXT", help="why (needed with --force; recorded on the version)")
    flag(promote, "tracking_uri", metavar="URI", help=TRACKING_URI_HELP)


def run(args: argparse.Namespace) -> int:
    check_tracking_uri(args.tracking_uri, must_exist=True)  # no store is created to find no model in
    # loaded when the command runs, so `btc-ai --help` stays fast
    from btc_ai.desk.promote import promote
    from btc_ai.tracking.run_model import RunModel
    from btc_ai.tracking.tracker import Tracker

    done = promote(RunModel(Tracker(args.tracking_uri)), args.ref, alias=args.alias, force=args.force,
                   reason=args.reason)
    print(f"models:/{done.version.name}@{done.alias} -> {done.version.uri} ({done.note})")
    return EXIT_OK
