"""`btc-ai sync`: send the tracking writes journaled while the tracking server was unreachable."""

from __future__ import annotations

import argparse
from typing import Any

from btc_ai.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    TRACKING_URI_HELP,
    TrackingServerUnreachable,
    check_tracking_uri,
    error,
    flag,
)
from btc_ai.tracking.credentials import display_uri


def add_parser(sub: Any) -> None:
    sync = sub.add_parser("sync", help="send tracking writes journaled while the tracking server was unreachable")
    flag(sync, "tracking_uri", metavar="URI", help=TRACKING_URI_HELP)


def run(args: argparse.Namespace) -> int:
    # the journal and the store checks load mlflow and sqlalchemy: only when the command runs
    from btc_ai.tracking.journal import Journal
    from btc_ai.tracking.paths import journal_dir, resolve_tracking_uri
    from btc_ai.tracking.stores import check_uri, uri_source

    uri = resolve_tracking_uri(args.tracking_uri)
    check_uri(uri, uri_source(args.tracking_uri))  # a misspelt or file-store URI: one line, exit 2
    shown = display_uri(uri)  # a database URI keeps its password for SQLAlchemy: never on the console
    journal = Journal(journal_dir(uri))
    waiting = journal.pending_count()
    if not waiting:
        print(f"nothing to send: the journal for {shown} is empty")
        return EXIT_OK
    try:
        check_tracking_uri(uri)
    except TrackingServerUnreachable as exc:  # not the user's mistake here: the writes wait, exit 1
        error(f"{exc}; {waiting} writes stay in the journal {journal.folder}")
        return EXIT_FAILED
    from btc_ai.tracking.tracker import Tracker

    tracker = Tracker(uri)  # opening the store replays the journal
    tracker.close()
    if tracker.pending():  # another process sharing the journal was sending it: wait for it, send the rest
        tracker.replay(wait=True)
    left = tracker.pending()
    if left:
        error(f"{waiting - left} of {waiting} journaled writes sent; {left} still wait in {journal.folder} "
              f"({tracker.outage or 'the store stopped answering, or another btc-ai process is sending them'}); "
              "run `btc-ai sync` again")
        return EXIT_FAILED
    print(f"sent {waiting} journaled writes to {shown}; nothing pending")
    return EXIT_OK
