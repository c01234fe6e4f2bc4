"""`btc-ai walk-forward DATA --folds K [--seeds S ...]`: K expanding-window folds, one training session per fold
and seed under one walk-forward run, scored out of sample; and `btc-ai resume <walk-forward run>`."""

from __future__ import annotations

import argparse
from typing import Any

from btc_ai.cli.common import (
    DATA_HELP,
    EXIT_FAILED,
    EXIT_OK,
    TRACKING_URI_HELP,
    add_variable_flags,
    apply_variable_flags,
    check_tracking_uri,
    data_source,
    error,
    flag,
)
from btc_ai.cli.config_flags import add_config_flags, config_from_args, given_keys
from btc_ai.cli.run_support import names_a_run, settle_journal, training_func
from btc_ai.domain.errors import UserInputError


def add_parser(sub: Any) -> None:
    wf = sub.add_parser("walk-forward", help="K expanding-window folds in time order, a training session each, "
                                             "scored on data none of them selected on")
    wf.add_argument("data", nargs="*", metavar="DATA", help=f"{DATA_HELP}; default: built-in synthetic data")
    add_variable_flags(wf)
    wf.add_argument("--folds", type=int, required=True, metavar="K", help="number of folds (test blocks), >= 1")
    wf.add_argument("--seeds", type=int, nargs="+", metavar="S", help="a session per fold and seed (default: SEED)")
    add_config_flags(wf, skip=("seed",))  # --seeds instead
    flag(wf, "max_retries", type=int, default=3, metavar="N", help="retries of recoverable errors per session (default 3)")
    flag(wf, "no_emergency_checkpoints", action="store_true", help="do not write emergency checkpoints")
    flag(wf, "checkpoint_dir", default="checkpoints", metavar="DIR", help="local checkpoint folder (default checkpoints/)")
    flag(wf, "tracking_uri", metavar="URI", help=TRACKING_URI_HELP)
    wf.add_argument("--experiment", default="btc-ai", help="MLflow experiment name (default btc-ai)")
    flag(wf, "quiet", action="store_true", help="print only the fold lines and the table")
    wf.set_defaults(seed=None)


def run(args: argparse.Namespace) -> int:
    if args.max_retries < 0:
        raise UserInputError(f"--max_retries {args.max_retries} must be >= 0")
    if args.folds < 1:
        raise UserInputError(f"--folds {args.folds}: a walk-forward needs at least 1 fold")
    config = config_from_args(args)  # validated once, here; the folds' sessions take it as it is
    if "TEST_FRACTION" in given_keys(args):
        raise UserInputError("a walk-forward sets TEST_FRACTION for each fold (its test span is the fold's test "
                             "block); drop TEST_FRACTION from --set / --config")
    check_tracking_uri(args.tracking_uri)
    apply_variable_flags(args)
    from btc_ai.desk.walk_forward import prepare  # the desk loads torch and mlflow: not for --help

    inputs = prepare(data_source(args.data, "DATA"), config, args.folds, args.seeds)
    return _drive(args, lambda wf: wf.start(inputs))


def _find(args: argparse.Namespace, ref: str) -> tuple[Any, Any]:
    """(tracker, the walk-forward behind ``ref`` or None) on the store of ``args``."""
    from btc_ai.tracking.run_model import RunModel, WalkForwardRuns  # mlflow: not for --help
    from btc_ai.tracking.tracker import Tracker

    tracker = Tracker(args.tracking_uri, args.experiment)
    return tracker, WalkForwardRuns(RunModel(tracker)).find(ref)


def is_walk_forward(args: argparse.Namespace, ref: str) -> bool:
    """Whether ``ref`` is a walk-forward run (or one of its sessions) on the (existing) store of ``args``."""
    if not names_a_run(args, ref):
        return False
    tracker, found = _find(args, ref)
    tracker.close()
    return found is not None


def resume_walk_forward(args: argparse.Namespace, ref: str, overrides: dict[str, Any] | None) -> int | None:
    """`btc-ai resume REF` where REF is a walk-forward run (or one of its sessions): continue the walk-forward.
    None when REF is no walk-forward's: the caller resumes it as a session."""
    if not names_a_run(args, ref):
        return None
    tracker, found = _find(args, ref)
    if found is None:
        tracker.close()  # the session resume opens its own
        return None
    if overrides:
        raise UserInputError(f"walk-forward {found.run_id} continues with the config it recorded for every fold; "
                             "drop --generations")
    if getattr(args, "allow_data_change", False):
        raise UserInputError(f"walk-forward {found.run_id} continues on the data it started on; drop --allow-data-change")
    if ref.strip() != found.run_id:
        print(f"{ref.strip()} is a session of walk-forward {found.run_id}: continuing the walk-forward", flush=True)
    return _drive(args, lambda wf: wf.resume(found, args.data_path or None), tracker=tracker)


class _Console:
    """The walk-forward's own lines: which fold and seed trains now, over which spans."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def started(self, run_id: str, inputs: Any, resumed: bool) -> None:
        verb = "continuing" if resumed else "walk-forward"
        print(f"{verb} run {run_id}: {len(inputs.plan.folds)} fold(s) x {len(inputs.seeds)} seed(s) on "
              f"{inputs.source}", flush=True)
        if not self.quiet:
            print(inputs.plan.construction, flush=True)

    def fold_started(self, fold: Any, seed: int, folds: int, resumed_session: str | None) -> None:
        how = f"continuing session {resumed_session}" if resumed_session else "new session"
        print(f"fold {fold.number}/{folds} seed {seed} ({how}): train {fold.train.label()} | validation "
              f"{fold.validation.label()} | test {fold.test.label()}", flush=True)

    def fold_skipped(self, fold: Any, seed: int, session_id: str) -> None:
        print(f"fold {fold.number} seed {seed}: done earlier (session {session_id})", flush=True)


def _drive(args: argparse.Namespace, go: Any, tracker: Any = None) -> int:
    """The walk-forward through the recovery system; its result as output and an exit code."""
    # the desk and recovery floors load torch and mlflow: imported when a walk-forward starts, not for --help
    from btc_ai.cli.progress import ConsoleReporter
    from btc_ai.desk.walk_forward import WalkForward
    from btc_ai.recovery import TrainingRecoverySystem
    from btc_ai.recovery.signals import exit_code, graceful_interrupts

    system = TrainingRecoverySystem(checkpoint_dir=args.checkpoint_dir, max_retries=args.max_retries,
                                    enable_emergency_checkpoints=not args.no_emergency_checkpoints, tracker=tracker,
                                    tracking_uri=args.tracking_uri, experiment=args.experiment)
    walk = WalkForward(system, _Console(args.quiet), training_func=training_func(),
                       session_reporter=lambda: ConsoleReporter(quiet=args.quiet))
    try:
        with graceful_interrupts(system.stop_event):
            result = go(walk)
    except KeyboardInterrupt as exc:
        where = f"; continue with: btc-ai resume {walk.run_id}" if walk.run_id else ""
        error(f"interrupted ({exc or 'SIGINT'}): the last completed generation of the current fold is saved{where}")
        return exit_code(exc)
    finally:
        settle_journal(system)
    if result.outcome == "failed":
        error(f"walk-forward {result.run_id} failed at {result.error}; after fixing the cause: "
              f"btc-ai resume {result.run_id}")
        return EXIT_FAILED
    if result.outcome == "already_completed":
        print(f"walk-forward {result.run_id} already completed; its results:")
    print("\n".join(result.table()))
    print(f"walk-forward run {result.run_id}: table, metrics and plot logged (open the UI: make ui)")
    return EXIT_OK
