"""`btc-ai chaos`: every failure scenario against a scratch store, and a verdict on the recovery."""

from __future__ import annotations

import argparse
from typing import Any

from btc_ai.cli.common import EXIT_OK


def add_parser(sub: Any) -> None:
    chaos = sub.add_parser("chaos", help="run every failure scenario against a scratch store and judge the recovery")
    chaos.add_argument("--scenario", action="append", metavar="NAME", help="run only this scenario (repeatable)")
    chaos.add_argument("--list", action="store_true", help="list the scenarios")


def run(args: argparse.Namespace) -> int:
    # the desk loads torch and mlflow: imported when the command runs, not for --help
    from btc_ai.desk.chaos_suite import run_chaos, scenarios

    if args.list:
        print("\n".join(scenarios()))
        return EXIT_OK
    return run_chaos(args.scenario)  # an unknown scenario name is a UserInputError
