"""`btc-ai`: the parser, the dispatch to one module per command group, and the one place where errors
become exit codes. ``main(argv) -> int`` so tests can call it as a function."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from btc_ai import __version__
from btc_ai.cli import (
    backtest,
    backup,
    chaos,
    data,
    presets,
    promote,
    report,
    search,
    sync,
    train,
    walk_forward,
)
from btc_ai.cli.common import EXIT_BAD_INPUT, EXIT_OK, Parser, error, undo_outlier_flag
from btc_ai.domain.errors import UserInputError
from btc_ai.tracking.credentials import RedactingFilter, redact_logs
from btc_ai.tracking.sqlite_wal import close_sqlite_stores, forget_sqlite_stores

# command -> (adds its subparser, runs it); each module imports what a command needs only when it runs.
# The order is the order of `btc-ai --help`.
COMMANDS: dict[str, tuple[Callable[[Any], None], Callable[[argparse.Namespace], int]]] = {
    "train": (train.add_train_parser, train.run_train),
    "resume": (train.add_resume_parser, train.run_resume),
    "report": (report.add_parser, report.run),
    "walk-forward": (walk_forward.add_parser, walk_forward.run),
    "search": (search.add_parser, search.run),
    "backtest": (backtest.add_parser, backtest.run),
    "promote": (promote.add_parser, promote.run),
    "chaos": (chaos.add_parser, chaos.run),
    "backup": (backup.add_backup_parser, backup.run_backup),
    "restore": (backup.add_restore_parser, backup.run_restore),
    "sync": (sync.add_parser, sync.run),
    "data": (data.add_parser, data.run),
    "presets": (presets.add_parser, presets.run),
}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="btc-ai", description="Train a BTC trading policy with ES, tracked in MLflow.")
    parser.add_argument("--version", action="version", version=f"btc-ai {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for add_parser, _ in COMMANDS.values():
        add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # MLflow's and alembic's log lines (store creation, migrations, a tag it cut) are not the user's: what
    # matters reaches them as btc-ai's own lines; MLflow sets its level from this variable when it is first
    # imported, which is later
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")
    # nor are its download progress bars (a model's files fetched for a backtest): they land on stderr, where a
    # refused command must say one line, and show or not depending on how long the download takes
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for name in ("mlflow", "alembic"):  # and if it was imported already (tests, notebooks)
        logging.getLogger(name).setLevel(logging.ERROR)
    redact_logs()  # and again once mlflow, imported later, has its handler (Tracker)
    _show_warnings()
    args = build_parser().parse_args(argv)
    _, run = COMMANDS[args.command]
    forget_sqlite_stores()
    try:
        return run(args)
    except UserInputError as exc:  # every user mistake: one line, exit 2
        error(str(exc))
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as exc:
        from btc_ai.recovery.signals import exit_code  # recovery loads torch: not for every command

        error("interrupted")
        return exit_code(exc)
    except BrokenPipeError:  # `btc-ai presets | head`: the reader left, which is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    finally:  # whatever ended the command (done, refused, failed, Ctrl-C): each local store it used is one
        close_sqlite_stores()  # self-contained file, mlflow.db without a -wal beside it
        undo_outlier_flag()


def console() -> int:
    """The `btc-ai` console script and `python -m btc_ai`: :func:`main`, then a quick end of the process.

    Every write is committed and every file closed when ``main`` returns; what is left is the interpreter's
    tear-down, whose garbage collections walk the millions of objects torch, MLflow and pandas create at
    import (a visible share of a short command's time; see the start-up benchmarks). Frozen, the collector skips
    them; exit handlers still run and the OS frees the memory. Not in ``main``: a test calling it
    in-process would keep every object of the session alive."""
    code = main()
    gc.freeze()
    return code


def _show_warnings() -> None:
    """btc_ai's own warnings (tracking server lost and back, plots skipped) as `btc-ai: warning: ...` lines."""
    logger = logging.getLogger("btc_ai")
    if not any(getattr(h, "_btc_ai", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("btc-ai: warning: %(message)s"))
        handler._btc_ai = True  # type: ignore[attr-defined]
        handler.addFilter(RedactingFilter())
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)
        logger.propagate = False


if __name__ == "__main__":  # pragma: no cover
    sys.exit(console())
