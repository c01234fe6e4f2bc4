"""`btc-ai train` and `btc-ai resume`: config from flags, checks before anything is created, the training
through the recovery system, and the summary."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from btc_ai.cli.cluster import add_cluster_flags, evaluator_overrides, ray_cluster
from btc_ai.cli.common import (
    DATA_HELP,
    EXIT_CODES,
    EXIT_FAILED,
    EXIT_OK,
    TRACKING_URI_HELP,
    add_variable_flags,
    apply_variable_flags,
    check_run_reference,
    check_tracking_uri,
    check_writable,
    data_source,
    error,
    flag,
)
from btc_ai.cli.config_flags import add_config_flag, add_config_flags, config_from_args, given_flags, tilde
from btc_ai.cli.run_support import settle_journal, training_func
from btc_ai.domain.errors import UserInputError
from btc_ai.domain.metric_names import (
    METRIC_BEST_VALIDATION_BUY_AND_HOLD_RETURN,
    METRIC_BEST_VALIDATION_POSITION_CHANGES,
    METRIC_BEST_VALIDATION_TOTAL_RETURN,
    METRIC_TEST_BUY_AND_HOLD_RETURN,
    METRIC_TEST_GROSS_RETURN,
    METRIC_TEST_NULL_PERCENTILE,
    METRIC_TEST_POSITION_CHANGES,
    METRIC_TEST_PREFIX,
    METRIC_TEST_SHARPE,
    METRIC_TEST_TOTAL_RETURN,
    figures_under,
)
from btc_ai.tracking.credentials import display_uri

# how to read a data file's text dates (btc_ai.domain.data.dates, not imported here: the parser stays fast)
_DATE_FORMAT_HELP = ("how the data's text dates read: day-first (08.06.2021 = 8 June), month-first, iso, or a "
                     "strftime pattern like '%%d.%%m.%%Y %%H:%%M' (default: the file decides, or is refused)")


def add_train_parser(sub: Any) -> None:
    train = sub.add_parser(
        "train", help="train a policy (a new MLflow session)", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a trading policy with evolution strategies as a new MLflow session: the config is validated "
                    "(and repaired where it can be, each repair a run), every try is an attempt run, recoverable errors "
                    "are repaired and retried, checkpoints go to the store, and the best policy by validation score is "
                    "scored once on the held-out test span and registered as btc-ai-<bucket>. Without --data_path the "
                    "built-in synthetic candles are used; keys not given come from the bucket's preset "
                    "(btc-ai presets --keys lists them all, with their ranges).",
        epilog="examples:\n"
               "  btc-ai train                                   # the Scalping preset on the built-in data\n"
               "  btc-ai train --data-path btc_5m.csv --bucket Swing --generations 500\n"
               "  btc-ai train --config my.json --set SIGMA=0.05 --set TEST_FRACTION=0.2\n"
               "  btc-ai train --resume <session run ID>          # the same as btc-ai resume\n\n" + EXIT_CODES)
    flag(train, "data_path", nargs="+", action="extend", metavar="PATH", help=f"{DATA_HELP}; default: built-in data")
    add_variable_flags(train)
    flag(train, "date_format", metavar="FORMAT", help=_DATE_FORMAT_HELP)
    add_config_flags(train)
    flag(train, "max_retries", type=int, default=3, metavar="N", help="retries of recoverable errors (default 3)")
    flag(train, "enable_emergency_checkpoints", action="store_true",
         help="accepted from the original training script: emergency checkpoints are written when an error "
              "strikes unless --no-emergency-checkpoints")
    flag(train, "no_emergency_checkpoints", action="store_true", help="do not write emergency checkpoints")
    flag(train, "checkpoint_dir", default="checkpoints", metavar="DIR", help="local checkpoint folder (default checkpoints/)")
    flag(train, "tracking_uri", metavar="URI", help=TRACKING_URI_HELP)
    train.add_argument("--experiment", default="btc-ai", help="MLflow experiment name (default btc-ai)")
    flag(train, "quiet", action="store_true", help="print only the summary")
    flag(train, "resume", metavar="REF", help="continue a training instead (same as `btc-ai resume REF`)")
    flag(train, "allow_data_change", action="store_true", help="with --resume: allow data that differs")
    add_cluster_flags(train)


def add_resume_parser(sub: Any) -> None:
    resume = sub.add_parser(
        "resume", help="continue an interrupted training from its MLflow run ID or model URI",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Continue a session from the tracking store alone (config after repairs, ES state, best policy, "
                    "generation, data fingerprint) as a new attempt of the same session; a finished session is left "
                    "alone unless --generations extends it. Each resume may retry up to --max_retries times.",
        epilog="examples:\n"
               "  btc-ai resume 3f2c...e9                          # a session or attempt run ID (printed at the start)\n"
               "  btc-ai resume models:/btc-ai-scalping@champion   # the session behind a registered model\n"
               "  btc-ai resume 3f2c...e9 --generations 600        # train a finished session longer\n\n" + EXIT_CODES)
    resume.add_argument("ref", metavar="REF", help="session or attempt run ID, or models:/<name>/<version|@alias>")
    # one path a flag (repeat it for several): `resume --data_path X REF` must leave REF to the positional
    flag(resume, "data_path", action="append", metavar="PATH",
         help="the data, as for train; repeat for several paths (default: what the session recorded)")
    add_variable_flags(resume)
    flag(resume, "date_format", metavar="FORMAT", help=_DATE_FORMAT_HELP)
    add_config_flag(resume, "generations", type=int, metavar="N",
                    help="train up to N generations (extends a finished training)")
    flag(resume, "allow_data_change", action="store_true", help="resume even if the data differs")
    flag(resume, "max_retries", type=int, default=3, metavar="N", help="retries of recoverable errors (default 3)")
    flag(resume, "no_emergency_checkpoints", action="store_true", help="do not write emergency checkpoints")
    flag(resume, "checkpoint_dir", default="checkpoints", metavar="DIR", help="local checkpoint folder")
    flag(resume, "tracking_uri", metavar="URI", help=TRACKING_URI_HELP)
    resume.add_argument("--experiment", default="btc-ai", help=argparse.SUPPRESS)
    flag(resume, "quiet", action="store_true", help="print only the summary")
    add_cluster_flags(resume)


def _check_store(args: argparse.Namespace, resume: str | None) -> None:
    """The store first, in milliseconds and creating nothing: a usable URI and local store (one that exists,
    for a resume), a server that answers, a run ID that is there and not deleted."""
    check_tracking_uri(args.tracking_uri, must_exist=resume is not None, experiment=args.experiment)
    check_writable(args.checkpoint_dir, "the checkpoint folder", "--checkpoint-dir")
    if resume is not None:
        try:
            check_run_reference(args.tracking_uri, resume)
        except UserInputError:
            from btc_ai.cli.search import is_search_or_walk_forward

            if not is_search_or_walk_forward(args, resume):  # a search or walk-forward run is no session, but resumes as a whole
                raise


def run_train(args: argparse.Namespace) -> int:
    _check_flags(args, args.resume)
    if args.resume:
        args.resume = _session_of(args.resume, args.quiet)
        given = given_flags(args)
        if given:  # a mistake in the flags themselves: said before the store is looked at
            raise UserInputError(f"--resume continues a training with its recorded config; drop {', '.join(given)} "
                                 "(to train longer: btc-ai resume REF --generations N)")
    _check_store(args, args.resume)
    if args.resume:
        return _run(args, None, evaluator_overrides(args), args.resume)
    return _run(args, config_from_args(args, evaluator_overrides(args)), {}, None)


def run_resume(args: argparse.Namespace) -> int:
    _check_flags(args, args.ref)
    args.ref = _session_of(args.ref, args.quiet)
    _check_store(args, args.ref)
    overrides = {"EPISODES": args.generations} if args.generations is not None else {}
    return _run(args, None, {**overrides, **evaluator_overrides(args)}, args.ref)


def _session_of(ref: str, quiet: bool) -> str:
    """A resume reference; a local checkpoint file (or folder) stands for the session it was written for."""
    if not os.path.exists(ref):
        return ref
    from btc_ai.recovery.inputs import checkpoint_session  # the recovery floor loads torch: only when needed

    session = checkpoint_session(ref)
    if not quiet:
        print(f"{ref} is a checkpoint of session {session}: resuming the session from its newest committed checkpoint")
    return session


def _check_data(args: argparse.Namespace) -> None:
    """Refuse a data file that cannot be trained on before anything is created (its refusals name the file)."""
    from btc_ai.domain.data import load_candles  # pandas: imported when a command runs, not for --help

    try:
        _, report = load_candles(args.data_path, date_format=getattr(args, "date_format", None))
    except FileNotFoundError as exc:
        name = str(exc.filename or args.data_path)
        raise UserInputError(f"data file {name} does not exist{tilde(name)}; check --data_path") from None
    if not args.quiet:
        print(f"data: {report.summary()}")


def _check_flags(args: argparse.Namespace, resume: str | None) -> None:
    """Flag values no later step could make sense of, each refused in one line before anything is created."""
    if not args.experiment.strip():
        raise UserInputError("--experiment is empty; name the MLflow experiment (default btc-ai) or drop the flag")
    args.data_path = data_source(args.data_path)
    apply_variable_flags(args)
    if args.date_format is not None:
        from btc_ai.domain.data.dates import normalize_date_format  # pandas: not for --help

        normalize_date_format(args.date_format)
        if resume is None and args.data_path is None:
            raise UserInputError("--date-format says how --data_path's dates read; without --data_path the "
                                 "built-in data is used: give the file or drop --date-format")
    folder = args.checkpoint_dir
    if not folder.strip():
        raise UserInputError("--checkpoint_dir is empty; name a folder (default checkpoints/)")
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise UserInputError(f"--checkpoint_dir {folder} is a file, not a folder; name a folder (default checkpoints/)")


def _run(args: argparse.Namespace, config: Any, overrides: dict[str, Any], resume: str | None) -> int:
    """Train (``config``: the ValidatedConfig) or resume (``resume``: a run ID or model URI; ``overrides``: the
    config keys to change, e.g. more generations, or the evaluator)."""
    if args.max_retries < 0:
        raise UserInputError(f"--max_retries {args.max_retries} must be >= 0")
    if getattr(args, "enable_emergency_checkpoints", False) and args.no_emergency_checkpoints:
        raise UserInputError("--enable_emergency_checkpoints and --no-emergency-checkpoints contradict each other; "
                             "keep one")
    if args.data_path:
        _check_data(args)
    if resume is not None:  # a search or walk-forward run (or a run in one) continues as a whole
        from btc_ai.cli.search import resume_search_or_walk_forward

        code = resume_search_or_walk_forward(args, resume, overrides)
        if code is not None:
            return code
    return _train_with_recovery(args, training_func(), config, overrides, resume)


def _train_with_recovery(args: argparse.Namespace, train: Any, config: Any, overrides: dict[str, Any],
                         resume: str | None) -> int:
    """The one place that talks to the recovery system: start it, and turn what it returns into output and
    an exit code."""
    # the recovery floor loads torch and mlflow: imported when a training starts, so `btc-ai --help` stays fast
    from btc_ai.cli.progress import ConsoleReporter
    from btc_ai.recovery import TrainingRecoverySystem
    from btc_ai.recovery.signals import exit_code, graceful_interrupts

    reporter = ConsoleReporter(quiet=args.quiet)
    system = TrainingRecoverySystem(
        checkpoint_dir=args.checkpoint_dir,
        max_retries=args.max_retries,
        enable_emergency_checkpoints=not args.no_emergency_checkpoints,
        tracking_uri=args.tracking_uri,
        experiment=args.experiment,
        reporter=reporter,
        allow_data_change=getattr(args, "allow_data_change", False),
        date_format=getattr(args, "date_format", None),
    )
    try:
        with graceful_interrupts(system.stop_event), ray_cluster(args, config.config.to_dict() if config else overrides):
            result = system.train(train, config, df=args.data_path or None, recovery_state=resume,
                                  overrides=overrides if resume else None)
    except KeyboardInterrupt as exc:
        error(_interrupted(exc, system.session_run_id, reporter.last_generation, resume))
        return exit_code(exc)
    finally:  # a mistake in the inputs (UserInputError) goes on to the one mapping in main
        reporter.close()
        settle_journal(system)
    if result.outcome == "already_completed":
        print(result.message)
        return EXIT_OK
    if result.outcome == "failed":
        metrics = result.metrics
        where = f" (session {result.session_run_id}; error_report.md on the failed attempt runs)" \
            if result.session_run_id else ""
        error(f"training failed after {metrics.get('attempts', 0)} attempt(s): {result.error}{where}")
        if metrics.get("model_registration"):
            error(metrics["model_registration"])
        return EXIT_FAILED
    _print_summary(system, result.metrics, result.best_reward, result.elapsed)
    return EXIT_OK


def _interrupted(exc: KeyboardInterrupt, session: str | None, generation: int | None, resume: str | None) -> str:
    """What an interrupt left: a saved generation is claimed only when one completed in this process."""
    what = f"interrupted ({exc or 'SIGINT'})"
    if generation is not None:
        return f"{what}: the last completed generation ({generation}) is saved" + \
            (f"; continue with: btc-ai resume {session}" if session else "")
    if resume is not None and session:
        return f"{what} before a generation completed: the session is as it was; continue with: btc-ai resume {session}"
    return f"{what} before the first generation completed: nothing was trained; run the command again to start"


def _print_summary(system: Any, metrics: Mapping[str, Any], best_reward: float, elapsed: float) -> None:
    # loaded when a summary is printed, so `btc-ai --help` stays fast (they load pandas)
    from btc_ai.domain.baselines import baseline_lines
    from btc_ai.domain.collapse import collapse_line
    from btc_ai.domain.trade_stats import statistics_lines

    ret = metrics.get(METRIC_BEST_VALIDATION_TOTAL_RETURN, float("nan"))
    hold = metrics.get(METRIC_BEST_VALIDATION_BUY_AND_HOLD_RETURN, float("nan"))
    changes = metrics.get(METRIC_BEST_VALIDATION_POSITION_CHANGES, float("nan"))
    print(
        f"done: session {metrics['session_run_id']} | attempts {metrics['attempts']} | "
        f"generations {metrics['generations']} | best validation reward {best_reward:+.4f} "
        f"(generation {metrics['best_generation']}) | {elapsed:.1f} s"
    )
    print(f"stopped: {metrics['stop_reason']}")
    print(f"validation span (used for selection): return {ret:+.2%} ({changes:.0f} position changes) vs buy-and-hold "
          f"{hold:+.2%} and flat +0.00%")
    if METRIC_TEST_TOTAL_RETURN in metrics:
        print(f"test span {metrics['test_span']} (out of sample, never used for selection): return "
              f"{metrics[METRIC_TEST_TOTAL_RETURN]:+.2%} net of costs ({metrics[METRIC_TEST_GROSS_RETURN]:+.2%} before "
              f"costs, {metrics[METRIC_TEST_POSITION_CHANGES]:.0f} position changes, Sharpe "
              f"{metrics[METRIC_TEST_SHARPE]:+.2f}) vs buy-and-hold {metrics[METRIC_TEST_BUY_AND_HOLD_RETURN]:+.2%} and "
              f"flat +0.00%; timing null check: {metrics[METRIC_TEST_NULL_PERCENTILE]:.0f}th percentile of "
              "time-shifted copies (50 = luck)")
        print("\n".join(f"  {line}" for line in statistics_lines(figures_under(metrics, METRIC_TEST_PREFIX))))
    else:
        print("no test span (TEST_FRACTION=0): there is no out-of-sample figure for this training")
    for line in filter(None, (*baseline_lines(metrics), collapse_line(metrics))):
        print(line)
    if metrics.get("gap_rows"):
        print(f"gaps in the data: {metrics['gap_rows']} bars held flat (a return across a gap is not one bar's)")
    version, name = metrics["model_version"], metrics.get("model_name", "")
    if version == "pending":
        registered = "registration journaled (tracking server unreachable)"
    elif not metrics.get("model_new", True):
        registered = f"best policy unchanged: models:/{name}/{version} stays, no new version"
    else:
        registered = f"registered as models:/{name}/{version} ({metrics.get('model_promotion', '')})"
    print(f"model: {registered}; final params sha256 {metrics['final_params_sha256'][:16]}")
    ui = f"mlflow ui --backend-store-uri {display_uri(system.tracker.tracking_uri)}"
    in_repo = Path("Makefile").is_file() and "\nui:" in Path("Makefile").read_text(encoding="utf-8", errors="replace")
    print(f"open the UI: make ui  (or: {ui})" if in_repo else f"open the UI: {ui}")
