"""`btc-ai`: the command line. ``main(argv) -> int`` so tests can call it as a function."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from btc_ai.domain.config import KNOWN_KEYS, TrainingConfig, allowed_range, normalize_key
from btc_ai.domain.errors import ConfigValidationError, DataValidationError, UserInputError
from btc_ai.domain.presets import BUCKETS

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_SIGINT, EXIT_SIGTERM = 0, 1, 2, 130, 143

# Original flags of the training script, mapped to config keys (each also takes the dash form).
_CONFIG_FLAGS = {
    "bucket": ("BUCKET", str),
    "hidden_size": ("HIDDEN_SIZE", int),
    "learning_rate": ("LEARNING_RATE", float),
    "es_population": ("ES_POPULATION", int),
    "episodes": ("EPISODES", int),
    "seed": ("SEED", int),
    "min_checkpoint_interval": ("MIN_CHECKPOINT_INTERVAL", int),
    "max_steps_per_episode": ("MAX_STEPS_PER_EPISODE", int),
    "sigma": ("SIGMA", float),
}


class BadInput(UserInputError):
    """A user mistake found by the command line itself: reported as one line with exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (what is wrong and where to look), exit code 2, and no
    abbreviated flags (``--learning_rat`` must not silently mean ``--learning_rate``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _flag(parser: argparse.ArgumentParser, name: str, **kwargs: Any) -> None:
    dashed = name.replace("_", "-")
    names = [f"--{name}"] + ([f"--{dashed}"] if dashed != name else [])
    parser.add_argument(*names, dest=name, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="btc-ai", description="Train a BTC trading policy with ES, tracked in MLflow.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    train = sub.add_parser("train", help="train a policy (a new MLflow session)")
    _flag(train, "data_path", metavar="FILE", help="candles (CSV or Parquet); default: built-in synthetic data")
    _flag(train, "config", metavar="FILE", help="JSON object of config keys (flags win over it)")
    for name, (key, kind) in _CONFIG_FLAGS.items():
        _flag(train, name, type=kind, metavar=key, help=f"{key} ({allowed_range(key)})")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any config key (repeatable)")
    _flag(train, "max_retries", type=int, default=3, metavar="N", help="retries of recoverable errors (default 3)")
    _flag(train, "enable_emergency_checkpoints", action="store_true",
          help="write an emergency checkpoint when an error strikes (the default)")
    _flag(train, "no_emergency_checkpoints", action="store_true", help="do not write emergency checkpoints")
    _flag(train, "checkpoint_dir", default="checkpoints", metavar="DIR", help="local checkpoint folder (default checkpoints/)")
    _flag(train, "tracking_uri", metavar="URI", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or ./mlruns)")
    train.add_argument("--experiment", default="btc-ai", help="MLflow experiment name (default btc-ai)")
    _flag(train, "quiet", action="store_true", help="print only the summary")
    _flag(train, "resume", metavar="REF", help="continue a training instead (same as `btc-ai resume REF`)")
    _flag(train, "allow_data_change", action="store_true", help="with --resume: allow data that differs")

    resume = sub.add_parser("resume", help="continue an interrupted training from its MLflow run ID or model URI")
    resume.add_argument("ref", metavar="REF", help="session or attempt run ID, or models:/<name>/<version|@alias>")
    _flag(resume, "data_path", metavar="FILE", help="the data (default: the file the session recorded)")
    _flag(resume, "episodes", type=int, metavar="N", help="train up to N generations (extends a finished training)")
    _flag(resume, "allow_data_change", action="store_true", help="resume even if the data differs")
    _flag(resume, "max_retries", type=int, default=3, metavar="N", help="retries of recoverable errors (default 3)")
    _flag(resume, "no_emergency_checkpoints", action="store_true", help="do not write emergency checkpoints")
    _flag(resume, "checkpoint_dir", default="checkpoints", metavar="DIR", help="local checkpoint folder")
    _flag(resume, "tracking_uri", metavar="URI", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or ./mlruns)")
    resume.add_argument("--experiment", default="btc-ai", help=argparse.SUPPRESS)
    _flag(resume, "quiet", action="store_true", help="print only the summary")

    report = sub.add_parser("report", help="what happened in a session: attempts, repairs, checkpoints, model")
    report.add_argument("ref", metavar="RUN_ID", help="session or attempt run ID, or models:/<name>/<version>")
    report.add_argument("--json", action="store_true", help="machine-readable output")
    report.add_argument("--plots", action="store_true",
                        help="redraw the fitness history and equity curve PNGs (written to --out, logged on the session)")
    report.add_argument("--out", metavar="DIR", help="folder for --plots (default ./plots/<session run ID>/)")
    _flag(report, "tracking_uri", metavar="URI", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or ./mlruns)")

    chaos = sub.add_parser("chaos", help="run every failure scenario against a scratch store and judge the recovery")
    chaos.add_argument("--scenario", action="append", metavar="NAME", help="run only this scenario (repeatable)")
    chaos.add_argument("--list", action="store_true", help="list the scenarios")

    backup = sub.add_parser(
        "backup", help="archive the local store, artifacts, checkpoints and configs in one verified zip",
        description="Write <dest>/BTC_AI_<YYYY-MM-DD>_v<VERSION>_<DESCRIPTION>.zip: a consistent snapshot of the "
                    "local SQLite tracking database (safe while a training writes), the artifact folders it refers "
                    "to, checkpoints/, configs/ and any --include paths, with a manifest of sha256 hashes and "
                    "sessions. An existing archive is never overwritten. With --verify ZIP: check an archive's "
                    "manifest and every hash instead. Exit codes: 0 done (or archive intact); 2 bad input, "
                    "including an archive that is damaged, altered or not a btc-ai backup.")
    _flag(backup, "version", metavar="VERSION", help="numbers separated by dots, e.g. 1.4 (a leading v is dropped)")
    _flag(backup, "description", metavar="TEXT", help="1-64 letters, digits, '_' or '-', e.g. post_training_stable")
    _flag(backup, "dest", metavar="DIR", help="folder for the archive (default backups/)")
    _flag(backup, "include", action="append", default=[], metavar="PATH",
          help="also archive this file or folder of the project (repeatable)")
    _flag(backup, "tracking_uri", metavar="URI",
          help="the SQLite store to back up (default $MLFLOW_TRACKING_URI or ./mlruns/mlflow.db)")
    _flag(backup, "verify", metavar="ZIP", help="only check this archive: manifest, entry names and every sha256")

    restore = sub.add_parser(
        "restore", help="verify a backup, then restore it into a new or empty folder",
        description="Check every entry name and hash of ZIP before writing anything, restore it into DIR (which "
                    "must not exist or be empty) and point the database's artifact locations at DIR/mlruns, so "
                    "`cd DIR && btc-ai report|resume ...` works from the restored store alone. Exit codes: 0 "
                    "restored; 2 bad input (a damaged, altered or unsafe archive, or a non-empty DIR).")
    restore.add_argument("archive", metavar="ZIP", help="a btc-ai backup archive")
    _flag(restore, "into", metavar="DIR", required=True, help="the folder to restore into (new or empty)")

    sync = sub.add_parser("sync", help="send tracking writes journaled while the tracking server was unreachable")
    _flag(sync, "tracking_uri", metavar="URI", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or ./mlruns)")

    presets = sub.add_parser("presets", help="list the trading-style buckets and their settings")
    presets.add_argument("--keys", action="store_true", help="list every config key with its allowed range")
    presets.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # MLflow's and alembic's INFO lines (store creation, migrations) are noise on a user's terminal;
    # MLflow sets its level from this variable when it is first imported, which is later
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    for name in ("mlflow", "alembic"):  # and if it was imported already (tests, notebooks)
        logging.getLogger(name).setLevel(logging.WARNING)
    _show_warnings()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            return cmd_train(args)
        if args.command == "presets":
            return cmd_presets(args)
        if args.command == "sync":
            return cmd_sync(args)
        if args.command == "resume":
            return cmd_resume(args)
        if args.command == "chaos":
            return cmd_chaos(args)
        if args.command == "report":
            return cmd_report(args)
        if args.command == "backup":
            return cmd_backup(args)
        if args.command == "restore":
            return cmd_restore(args)
    except UserInputError as exc:
        _error(str(exc))
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_SIGINT
    except BrokenPipeError:  # `btc-ai presets | head`: the reader left, which is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    parser.error(f"unknown command {args.command}")
    return EXIT_BAD_INPUT


def _show_warnings() -> None:
    """btc_ai's own warnings (tracking server lost and back, plots skipped) as `btc-ai: warning: ...` lines."""
    logger = logging.getLogger("btc_ai")
    if not any(getattr(h, "_btc_ai", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("btc-ai: warning: %(message)s"))
        handler._btc_ai = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)
        logger.propagate = False


def _error(message: str) -> None:
    print(f"btc-ai: error: {message}", file=sys.stderr)


def _parse_assignment(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise BadInput(f"--set {text!r} is not KEY=VALUE; write e.g. --set SIGMA=0.05")
    key, value = text.split("=", 1)
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Config file, then --set, then the named flags, as given (out-of-range values are repaired later).

    Problems no repair can fix (unknown keys, wrong types, unknown bucket) are reported in one line.
    """
    values: dict[str, Any] = {}
    if args.config:
        try:
            with open(args.config, encoding="utf-8") as fh:
                loaded = json.load(fh)
        except FileNotFoundError:
            raise BadInput(f"config file {args.config} does not exist; check the --config path") from None
        except json.JSONDecodeError as exc:
            raise BadInput(f"config file {args.config} is not valid JSON (line {exc.lineno}, column {exc.colno}: "
                           f"{exc.msg}); fix the file or drop --config") from None
        if not isinstance(loaded, dict):
            raise BadInput(f"config file {args.config} must hold a JSON object of config keys, e.g. {{\"SIGMA\": 0.05}}")
        values.update(loaded)
    for text in args.set:
        key, value = _parse_assignment(text)
        values[key] = value
    for name, (key, _) in _CONFIG_FLAGS.items():
        if getattr(args, name) is not None:
            values[key] = getattr(args, name)
    from btc_ai.recovery.repairs import validate_and_repair

    try:
        config, _ = validate_and_repair(values)
    except ConfigValidationError as exc:
        raise BadInput(f"{exc}; fix these values (see `btc-ai presets --keys`)") from None
    # Flags override the bucket preset by design: what they leave out is not "missing".
    return {**BUCKETS[config.BUCKET].config(), **{normalize_key(k): v for k, v in values.items()}}


def cmd_train(args: argparse.Namespace) -> int:
    if args.resume:
        given = [f"--{name}" for name in [*_CONFIG_FLAGS, "config"] if getattr(args, name) is not None] + \
            (["--set"] if args.set else [])
        if given:
            raise BadInput(f"--resume continues a training with its recorded config; drop {', '.join(given)} "
                           "(to train longer: btc-ai resume REF --episodes N)")
        return _run(args, None, args.resume)
    return _run(args, config_from_args(args), None)


def cmd_resume(args: argparse.Namespace) -> int:
    overrides = {"EPISODES": args.episodes} if args.episodes is not None else {}
    return _run(args, overrides, args.ref)


def _check_data(args: argparse.Namespace) -> None:
    """Refuse a data file that cannot be trained on before anything is created."""
    from btc_ai.domain.data import load_candles

    try:
        _, report = load_candles(args.data_path)
    except FileNotFoundError:
        raise BadInput(f"data file {args.data_path} does not exist; check --data_path") from None
    except IsADirectoryError:
        raise BadInput(f"--data_path {args.data_path} is a folder; give a CSV or Parquet file") from None
    except DataValidationError as exc:
        raise BadInput(f"{args.data_path}: {exc}") from None
    if not args.quiet:
        print(f"data: {report.summary()}")


def _check_tracking_uri(uri: str | None) -> None:
    """An HTTP tracking server must answer before anything starts (a few seconds at most, not MLflow's
    minutes of retries)."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri or not uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=5) as response:
            response.read()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise BadInput(f"cannot reach the tracking server at {uri} ({reason}); start it, or check --tracking-uri / "
                       "MLFLOW_TRACKING_URI") from None


def _training_func() -> Any:
    from btc_ai.training.faults import ENV_VAR, FaultSpec, inject_fault
    from btc_ai.training.loop import train_model

    if not os.environ.get(ENV_VAR):
        return train_model
    try:  # the documented fault-injection hook (tests, `btc-ai chaos`)
        return inject_fault(train_model, FaultSpec.parse(os.environ[ENV_VAR]))
    except ValueError as exc:
        raise BadInput(f"{ENV_VAR}: {exc}") from None


def _run(args: argparse.Namespace, values: dict[str, Any] | None, resume: str | None) -> int:
    """Train (``values``: config keys) or resume (``resume``: a run ID or model URI; ``values``: overrides)."""
    if args.max_retries < 0:
        raise BadInput(f"--max_retries {args.max_retries} must be >= 0")
    if getattr(args, "enable_emergency_checkpoints", False) and args.no_emergency_checkpoints:
        raise BadInput("--enable_emergency_checkpoints and --no-emergency-checkpoints contradict each other; keep one")
    _check_tracking_uri(args.tracking_uri)
    if args.data_path:
        _check_data(args)
    training_func = _training_func()
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
    )
    try:
        with graceful_interrupts(system.stop_event):
            model, metrics, best_reward, elapsed = system.start_training_with_recovery(
                training_func, config=values, df=args.data_path or None, recovery_state=resume)
    except KeyboardInterrupt as exc:
        reporter.close()
        code = exit_code(exc)
        session = system.session_run_id
        _error(f"interrupted ({exc or 'SIGINT'}): the last completed generation is saved"
               + (f"; continue with: btc-ai resume {session}" if session else ""))
        _settle_journal(system)
        return code
    reporter.close()
    _settle_journal(system)
    if metrics.get("already_completed"):
        print(metrics["message"])
        return EXIT_OK
    if model is None:
        if metrics.get("bad_input"):
            raise BadInput(str(metrics.get("message") or metrics["error"]))
        where = f" (session {metrics['session_run_id']}; error_report.md on the failed attempt runs)" \
            if metrics.get("session_run_id") else ""
        _error(f"training failed after {metrics.get('attempts', 0)} attempt(s): {metrics.get('error')}{where}")
        return EXIT_FAILED
    _print_summary(system, metrics, best_reward, elapsed)
    return EXIT_OK


def _settle_journal(system: Any) -> None:
    """After a training: send what waits in the journal if the store is back, else say where it waits."""
    tracker = system.opened_tracker
    if tracker is None or not tracker.offline:
        return
    tracker.close()
    if tracker.reachable():
        tracker.replay()
    left = tracker.pending()
    if left:
        print(f"tracking server unreachable ({tracker.outage or 'no answer'}): {left} writes wait in the journal "
              f"{tracker.journal.folder}; they are sent by the next btc-ai command or `btc-ai sync`", flush=True)


def cmd_sync(args: argparse.Namespace) -> int:
    from btc_ai.tracking.journal import Journal, journal_dir
    from btc_ai.tracking.store import Tracker, resolve_tracking_uri

    uri = resolve_tracking_uri(args.tracking_uri)
    journal = Journal(journal_dir(uri))
    waiting = journal.pending_count()
    if not waiting:
        print(f"nothing to send: the journal for {uri} is empty")
        return EXIT_OK
    try:
        _check_tracking_uri(uri)
    except BadInput as exc:
        _error(f"{exc}; {waiting} writes stay in the journal {journal.folder}")
        return EXIT_FAILED
    tracker = Tracker(uri)  # opening the store replays the journal
    tracker.close()
    left = tracker.pending()
    if left:
        _error(f"{waiting - left} of {waiting} journaled writes sent; {left} still wait in {journal.folder} "
               f"({tracker.outage or 'the store stopped answering, or another btc-ai process is sending them'}); "
               "run `btc-ai sync` again")
        return EXIT_FAILED
    print(f"sent {waiting} journaled writes to {uri}; nothing pending")
    return EXIT_OK


def _print_summary(system: Any, metrics: Mapping[str, Any], best_reward: float, elapsed: float) -> None:
    ret = metrics.get("best/validation_total_return", float("nan"))
    hold = metrics.get("best/validation_buy_and_hold_return", float("nan"))
    trades = metrics.get("best/validation_trades", float("nan"))
    for repair in metrics.get("repairs", []):
        print(f"repair: {repair}")
    print(
        f"done: session {metrics['session_run_id']} | attempts {metrics['attempts']} | "
        f"generations {metrics['generations']} | best validation reward {best_reward:+.4f} "
        f"(generation {metrics['best_generation']}) | {elapsed:.1f} s"
    )
    print(f"best policy on the validation span: return {ret:+.2%} ({trades:.0f} trades) vs buy-and-hold {hold:+.2%} "
          "and flat +0.00%")
    version = metrics["model_version"]
    registered = f"registered as version {version}" if version != "pending" else \
        "registration journaled (tracking server unreachable)"
    print(f"model: {registered}; final params sha256 {metrics['final_params_sha256'][:16]}")
    print(f"open the UI: make ui  (or: mlflow ui --backend-store-uri {system.tracker.tracking_uri})")


PROGRESS_EVERY_ENV = "BTC_AI_PROGRESS_EVERY"  # plain progress: a line every N generations (tests set 1)


def _hms(seconds: float) -> str:
    import math

    if not math.isfinite(seconds):
        return "-:--:--"
    total = round(max(seconds, 0.0))
    return f"{total // 3600}:{total // 60 % 60:02d}:{total % 60:02d}"


class ConsoleReporter:
    """Progress on the terminal: a live bar (generation, fitness, validation return, ETA) on a TTY; where output
    is not a terminal (CI, logs), one plain line every N generations (about 25 lines a run, N from
    $BTC_AI_PROGRESS_EVERY if set), always the first generation of each attempt and the last one."""

    def attempt_started(self, attempt: int, run_id: str, repair: Any) -> None:
        self._last_tick = None  # set-up, backoff and repair are not generation time
        if attempt > 1:
            self._say(f"attempt {attempt} (run {run_id}) after repair {repair.summary() if repair else 'none'}")
            self._first_of_attempt = True

    def attempt_failed(self, attempt: int, report: Mapping[str, Any]) -> None:
        error = report["error"]
        self._say(f"attempt {attempt} failed at generation {report['generation_reached']}: {error['type']}: "
                  f"{error['message']} -> {report['decision']}")

    def _say(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(text)
        else:
            print(text, flush=True)

    def __init__(self, *, quiet: bool = False) -> None:
        self.total = 0
        self.quiet = quiet
        self._progress: Any = None
        self._task: Any = None
        self._last_val = float("nan")
        self.every = 1
        self._first_of_attempt = True
        self._last_tick: float | None = None
        self._seconds = 0.0  # generation time seen by this process, for the ETA
        self._generations = 0

    def session_started(self, run_id: str, config: TrainingConfig) -> None:
        self.total = config.EPISODES
        every = os.environ.get(PROGRESS_EVERY_ENV, "").strip()
        self.every = int(every) if every.isdigit() and int(every) > 0 else max(1, self.total // 25)
        print(f"session run {run_id} (bucket {config.BUCKET}, {config.EPISODES} generations, "
              f"population {config.ES_POPULATION}, hidden {config.HIDDEN_SIZE})", flush=True)
        if not self.quiet and sys.stdout.isatty():
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(TextColumn("gen {task.completed}/{task.total}"), BarColumn(),
                                      TextColumn("{task.fields[info]}"), TimeRemainingColumn())
            self._progress.start()
            self._task = self._progress.add_task("train", total=self.total, info="")

    def _eta(self, generation: int, metrics: Mapping[str, float]) -> float:
        """Seconds left: the average wall time per generation so far (the first generation of an attempt
        counts its own measured time, not the set-up before it) times the generations left."""
        import time

        now = time.monotonic()
        if self._last_tick is None:
            self._seconds += float(metrics.get("perf/seconds_per_generation", 0.0))
        else:
            self._seconds += now - self._last_tick
        self._last_tick = now
        self._generations += 1
        return self._seconds / self._generations * max(self.total - generation, 0)

    def generation_done(self, generation: int, metrics: Mapping[str, float]) -> None:
        if "validation/total_return" in metrics:
            self._last_val = metrics["validation/total_return"]
        eta = self._eta(generation, metrics)
        info = (f"fitness {metrics['fitness/mean']:+.4f} (max {metrics['fitness/max']:+.4f}) "
                f"val {self._last_val:+.2%} {metrics['perf/seconds_per_generation']:.3f} s/gen")
        first, self._first_of_attempt = self._first_of_attempt, False
        if self._progress is not None:
            if first and generation > 1:  # a resume or retry: the bar's speed counts from here, not from 0
                self._progress.reset(self._task, completed=generation - 1, info=info)
            self._progress.update(self._task, completed=generation, info=info)
        elif not self.quiet and (first or generation % self.every == 0 or generation >= self.total):
            print(f"gen {generation}/{self.total} {info} ETA {_hms(eta)}", flush=True)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def cmd_report(args: argparse.Namespace) -> int:
    _check_tracking_uri(args.tracking_uri)
    from btc_ai.desk.session_report import render_summary, session_summary
    from btc_ai.domain.errors import ResumeError
    from btc_ai.tracking.store import Tracker

    tracker = Tracker(args.tracking_uri)
    try:
        summary = session_summary(tracker, args.ref)
    except ResumeError as exc:
        raise BadInput(str(exc)) from None
    if args.plots:
        from btc_ai.desk.session_plots import write_session_plots

        session_id = summary["session_run_id"]
        plots = write_session_plots(tracker, session_id, args.out or os.path.join("plots", session_id))
        summary["plots"] = [str(path.resolve()) for path in plots.paths]
        summary["equity_plot_skipped"] = plots.equity_skipped
    print(json.dumps(summary, indent=2, default=str) if args.json else render_summary(summary))
    if args.plots and not args.json:
        for path in summary["plots"]:
            print(f"plot: {path} (also logged as plots/{os.path.basename(path)} on the session run)")
        if summary["equity_plot_skipped"]:
            print(f"equity curve not drawn: {summary['equity_plot_skipped']}")
    return EXIT_OK


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def cmd_backup(args: argparse.Namespace) -> int:
    from btc_ai.desk.backup import BackupError, create_backup, verify_backup
    from btc_ai.recovery.signals import exit_code, graceful_interrupts

    try:
        if args.verify:
            given = [f"--{n}" for n in ("version", "description", "dest") if getattr(args, n) is not None]
            given += ["--include"] if args.include else []
            if given:
                raise BadInput(f"--verify checks an existing archive; drop {', '.join(given)}")
            checked = verify_backup(args.verify)
            print(f"OK: {checked.path} | {checked.files} files, {_size(checked.payload_bytes)}, "
                  f"{len(checked.sessions)} sessions, every sha256 matches its manifest")
            return EXIT_OK
        if args.version is None or args.description is None:
            raise BadInput("backup needs --version and --description, e.g. btc-ai backup --version 1.4 "
                           "--description post_training_stable (or --verify ZIP)")
        uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        with graceful_interrupts():
            result = create_backup(args.version, args.description, dest=args.dest or "backups", tracking_uri=uri,
                                   include=args.include)
    except BackupError as exc:
        raise BadInput(str(exc)) from None
    except KeyboardInterrupt as exc:
        _error("interrupted: no archive was written")
        return exit_code(exc)
    for warning in result.warnings:
        print(f"btc-ai: warning: {warning}", file=sys.stderr)
    print(f"backup: {result.path}")
    print(f"  {result.files} files ({_size(result.payload_bytes)}, archive {_size(result.archive_bytes)}), "
          f"{len(result.sessions)} sessions, {result.seconds:.1f} s")
    print(f"  check it: btc-ai backup --verify {result.path}")
    print(f"  restore it: btc-ai restore {result.path} --into DIR")
    return EXIT_OK


def cmd_restore(args: argparse.Namespace) -> int:
    from btc_ai.desk.backup import BackupError, restore_backup
    from btc_ai.recovery.signals import exit_code, graceful_interrupts

    try:
        with graceful_interrupts():
            result = restore_backup(args.archive, args.into)
    except BackupError as exc:
        raise BadInput(str(exc)) from None
    except KeyboardInterrupt as exc:
        _error(f"interrupted: nothing was restored into {args.into}")
        return exit_code(exc)
    print(f"restored {result.files} files and {len(result.sessions)} sessions into {result.path} "
          f"(artifact locations moved from {result.original_store} to {result.path / 'mlruns'}: "
          f"{result.rewritten} entries)")
    for session in result.sessions[-5:]:
        print(f"  session {session['run_id']} {session.get('name') or ''} ({session.get('status') or session.get('run_status')})")
    example = result.sessions[-1]["run_id"] if result.sessions else "<RUN_ID>"
    print(f"use it: cd {result.path} && btc-ai report {example}   (with MLFLOW_TRACKING_URI unset)")
    print(f"    or: MLFLOW_TRACKING_URI={result.tracking_uri} btc-ai report {example}")
    return EXIT_OK


def cmd_chaos(args: argparse.Namespace) -> int:
    from btc_ai.desk.chaos import run_chaos, scenarios

    if args.list:
        print("\n".join(scenarios()))
        return EXIT_OK
    try:
        return run_chaos(args.scenario)
    except KeyError as exc:
        raise BadInput(str(exc.args[0])) from None


def cmd_presets(args: argparse.Namespace) -> int:
    if args.keys:
        fields = TrainingConfig.model_fields
        if args.json:
            print(json.dumps({k: {"allowed": allowed_range(k), "description": fields[k].description} for k in KNOWN_KEYS},
                             indent=2))
        else:
            for key in KNOWN_KEYS:
                print(f"{key:<24} {allowed_range(key):<32} {fields[key].description}")
        return EXIT_OK
    if args.json:
        print(json.dumps({name: b.config() for name, b in BUCKETS.items()}, indent=2))
        return EXIT_OK
    keys = ["TIMEFRAME", "MAX_STEPS_PER_EPISODE", "LOOKBACK", "FEE_BPS", "HOLDING_COST_BPS", "DRAWDOWN_PENALTY",
            "EPISODES_PER_EVAL"]
    print(f"{'bucket':<10} " + " ".join(f"{normalize_key(k):>21}" for k in keys))
    for name, bucket in BUCKETS.items():
        values = bucket.config()
        print(f"{name:<10} " + " ".join(f"{values[k]!s:>21}" for k in keys))
        print(f"{'':<10} {bucket.description}")
    print("\nany key can be overridden: btc-ai train --bucket Swing --set FEE_BPS=5  (all keys: btc-ai presets --keys)")
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
