"""`btc-ai`: the command line. ``main(argv) -> int`` so tests can call it as a function."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from .config import KNOWN_KEYS, TrainingConfig, allowed_range, normalize_key
from .errors import ConfigValidationError, DataValidationError
from .presets import BUCKETS

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


class BadInput(Exception):
    """A user mistake: reported as one line with exit code 2."""


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
    _flag(report, "tracking_uri", metavar="URI", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or ./mlruns)")

    chaos = sub.add_parser("chaos", help="run every failure scenario against a scratch store and judge the recovery")
    chaos.add_argument("--scenario", action="append", metavar="NAME", help="run only this scenario (repeatable)")
    chaos.add_argument("--list", action="store_true", help="list the scenarios")

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
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            return cmd_train(args)
        if args.command == "presets":
            return cmd_presets(args)
        if args.command == "resume":
            return cmd_resume(args)
        if args.command == "chaos":
            return cmd_chaos(args)
        if args.command == "report":
            return cmd_report(args)
    except BadInput as exc:
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
    from .recovery.repairs import validate_and_repair

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
    from .data import load_candles

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
    from .faults import ENV_VAR, FaultSpec, inject_fault
    from .training import train_model

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
    from .recovery import TrainingRecoverySystem
    from .recovery.signals import TrainingInterrupted, graceful_interrupts

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
        code = exc.exit_code if isinstance(exc, TrainingInterrupted) else EXIT_SIGINT
        session = system.session_run_id
        _error(f"interrupted ({exc or 'SIGINT'}): the last completed generation is saved"
               + (f"; continue with: btc-ai resume {session}" if session else ""))
        return code
    reporter.close()
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
    print(f"model: registered as version {metrics['model_version']}; final params sha256 {metrics['final_params_sha256'][:16]}")
    print(f"open the UI: make ui  (or: mlflow ui --backend-store-uri {system.tracker.tracking_uri})")


class ConsoleReporter:
    """Progress on the terminal: a live bar on a TTY, one plain line per generation otherwise."""

    def attempt_started(self, attempt: int, run_id: str, repair: Any) -> None:
        if attempt > 1:
            self._say(f"attempt {attempt} (run {run_id}) after repair {repair.summary() if repair else 'none'}")

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

    def session_started(self, run_id: str, config: TrainingConfig) -> None:
        self.total = config.EPISODES
        print(f"session run {run_id} (bucket {config.BUCKET}, {config.EPISODES} generations, "
              f"population {config.ES_POPULATION}, hidden {config.HIDDEN_SIZE})", flush=True)
        if not self.quiet and sys.stdout.isatty():
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(TextColumn("gen {task.completed}/{task.total}"), BarColumn(),
                                      TextColumn("{task.fields[info]}"), TimeRemainingColumn())
            self._progress.start()
            self._task = self._progress.add_task("train", total=self.total, info="")

    def generation_done(self, generation: int, metrics: Mapping[str, float]) -> None:
        if "validation/total_return" in metrics:
            self._last_val = metrics["validation/total_return"]
        info = (f"fitness {metrics['fitness/mean']:+.4f} (max {metrics['fitness/max']:+.4f}) "
                f"val {self._last_val:+.2%} {metrics['perf/seconds_per_generation']:.3f} s/gen")
        if self._progress is not None:
            self._progress.update(self._task, completed=generation, info=info)
        elif not self.quiet:
            print(f"gen {generation}/{self.total} {info}", flush=True)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def cmd_report(args: argparse.Namespace) -> int:
    _check_tracking_uri(args.tracking_uri)
    from .errors import ResumeError
    from .recovery.summary import render_summary, session_summary
    from .tracking import Tracker

    try:
        summary = session_summary(Tracker(args.tracking_uri), args.ref)
    except ResumeError as exc:
        raise BadInput(str(exc)) from None
    print(json.dumps(summary, indent=2, default=str) if args.json else render_summary(summary))
    return EXIT_OK


def cmd_chaos(args: argparse.Namespace) -> int:
    from .chaos import run_chaos, scenarios

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
