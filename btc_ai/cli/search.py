"""`btc-ai search DATA --trials N [--space FILE] [--folds K --seeds ...] [--parallel P] [--timeout T]`: a
hyperparameter study whose every trial is a walk-forward, the newest block held out and scored once for the
chosen configuration; and `btc-ai resume <search run>`."""

from __future__ import annotations

import argparse
from typing import Any

from btc_ai.cli.common import (
    DATA_HELP,
    EXIT_FAILED,
    EXIT_OK,
    TRACKING_URI_HELP,
    check_tracking_uri,
    data_source,
    error,
    flag,
)
from btc_ai.cli.run_support import names_a_run
from btc_ai.domain.errors import UserInputError
from btc_ai.domain.presets import SEARCH_HELD_OUT_SHARE


def add_parser(sub: Any) -> None:
    s = sub.add_parser("search", help="a hyperparameter study (Optuna TPE), each trial a walk-forward, the best "
                                      "scored once on a held-out block, with the deflated Sharpe and PBO")
    s.add_argument("data", nargs="*", metavar="DATA", help=f"{DATA_HELP}; default: built-in synthetic data")
    s.add_argument("--trials", type=int, metavar="N", help="trials in the study (required)")
    flag(s, "space", metavar="FILE", help="YAML or JSON search space (default: LEARNING_RATE, SIGMA, WEIGHT_DECAY, "
                                          "HIDDEN_SIZE; see docs/search.md)")
    s.add_argument("--folds", type=int, default=4, metavar="K", help="walk-forward folds per trial (default 4)")
    s.add_argument("--seeds", type=int, nargs="+", metavar="S", help="a session per fold and seed (default: SEED)")
    s.add_argument("--seed", type=int, default=0, metavar="S", help="the sampler's seed (default 0): same seed, "
                                                                    "same sequence of trials")
    flag(s, "holdout", type=float, default=SEARCH_HELD_OUT_SHARE, metavar="SHARE",
         help=f"newest share of the bars held out from every trial (default {SEARCH_HELD_OUT_SHARE})")
    flag(s, "prune_after", type=int, default=5, metavar="N",
         help="prune a trial below the median of the complete ones after N complete trials (default 5)")
    s.add_argument("--parallel", type=int, default=1, metavar="P", help="trials at once, as P processes (default 1)")
    flag(s, "ray_address", metavar="ADDRESS",
         help="run the P workers as Ray tasks on this cluster (auto, ray://HOST:PORT or local:N); every node must "
              "reach the tracking store and the study storage (docs/search.md)")
    s.add_argument("--timeout", type=float, metavar="SECONDS", help="start no new trial after this long")
    flag(s, "config", metavar="FILE", help="JSON object of config keys every trial starts from")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any config key (repeatable)")
    flag(s, "study_storage", metavar="URL", help="Optuna storage (default: optuna.db beside a local mlflow.db)")
    flag(s, "max_retries", type=int, default=3, metavar="N", help="retries of recoverable errors per session")
    flag(s, "checkpoint_dir", default="checkpoints", metavar="DIR", help="local checkpoint folder")
    flag(s, "tracking_uri", metavar="URI", help=TRACKING_URI_HELP)
    s.add_argument("--experiment", default="btc-ai", help="MLflow experiment name (default btc-ai)")
    flag(s, "quiet", action="store_true", help="print only the trial lines and the summary")
    s.add_argument("--worker", metavar="RUN_ID", help=argparse.SUPPRESS)  # a worker process of --parallel
    s.set_defaults(seed_flag=None, no_emergency_checkpoints=False)


def run(args: argparse.Namespace) -> int:
    if args.worker:
        return _worker(args)
    if args.trials is None:
        raise UserInputError("--trials N is required: how many configurations the study may try")
    for name, low in (("trials", 1), ("folds", 1), ("parallel", 1), ("prune_after", 0), ("max_retries", 0)):
        if getattr(args, name) < low:
            raise UserInputError(f"--{name.replace('_', '-')} {getattr(args, name)} must be >= {low}")
    if args.timeout is not None and args.timeout <= 0:
        raise UserInputError(f"--timeout {args.timeout} must be > 0 seconds")
    _check_ray_address(args)
    from btc_ai.domain.search_space import read_space

    dims = read_space(args.space)
    values = _config(args)
    check_tracking_uri(args.tracking_uri)
    from btc_ai.desk.search_inputs import prepare, study_storage
    from btc_ai.tracking.paths import resolve_tracking_uri

    storage = study_storage(resolve_tracking_uri(args.tracking_uri), args.study_storage)
    inputs = prepare(data_source(args.data, "DATA"), values, dims, trials=args.trials, folds=args.folds,
                     seeds=args.seeds, seed=args.seed, prune_after=args.prune_after, held_out_share=args.holdout,
                     storage=storage, timeout=args.timeout)
    return _drive(args, lambda s: s.start(inputs, args.parallel))


def _check_ray_address(args: argparse.Namespace) -> None:
    """--ray-address: Ray installed and an address it can be given, before anything is created."""
    if getattr(args, "ray_address", None) is None:
        return
    from btc_ai.training.cluster.address import parse_ray_address, require_ray

    require_ray("--ray-address")
    parse_ray_address(args.ray_address)


def _config(args: argparse.Namespace) -> dict[str, Any]:
    from btc_ai.cli.config_flags import _parse_assignment
    from btc_ai.domain.config import normalize_key
    from btc_ai.domain.config_file import read_config_file

    values: dict[str, Any] = {}
    if args.config:
        try:
            values.update(read_config_file(args.config))
        except (OSError, ValueError) as exc:
            raise UserInputError(f"--config {args.config}: {exc}; give a JSON object of config keys") from None
    for text in args.set:
        key, value = _parse_assignment(text)
        values[normalize_key(key)] = value
    values = {normalize_key(k): v for k, v in values.items()}
    if "TEST_FRACTION" in values:
        raise UserInputError("a search sets TEST_FRACTION for each fold and for the held-out block; drop it")
    return values


def _find(args: argparse.Namespace, ref: str) -> tuple[Any, Any]:
    from btc_ai.desk.search import search_of
    from btc_ai.tracking.run_model import RunModel
    from btc_ai.tracking.tracker import Tracker

    tracker = Tracker(args.tracking_uri, args.experiment)
    return tracker, search_of(RunModel(tracker), ref)


def is_search_or_walk_forward(args: argparse.Namespace, ref: str) -> bool:
    """Whether ``ref`` is a search or walk-forward run or a run nested in one: no session, resumed as a whole."""
    from btc_ai.cli.walk_forward import is_walk_forward

    if not names_a_run(args, ref):
        return False
    tracker, found = _find(args, ref)
    tracker.close()
    return found is not None or is_walk_forward(args, ref)


def resume_search_or_walk_forward(args: argparse.Namespace, ref: str, overrides: dict[str, Any] | None) -> int | None:
    """`btc-ai resume REF` of a search (first: its trials are walk-forwards) or a walk-forward; None for neither."""
    from btc_ai.cli.walk_forward import resume_walk_forward

    code = resume_search(args, ref, overrides)
    return code if code is not None else resume_walk_forward(args, ref, overrides)


def resume_search(args: argparse.Namespace, ref: str, overrides: dict[str, Any] | None) -> int | None:
    """`btc-ai resume REF` where REF is a search run (or a run nested in it): continue the search; None when it
    is no search's."""
    if not names_a_run(args, ref):
        return None
    tracker, found = _find(args, ref)
    if found is None:
        tracker.close()
        return None
    if overrides:
        raise UserInputError(f"search {found.run_id} continues with the space and config it recorded; drop --generations")
    if ref.strip() != found.run_id:
        print(f"{ref.strip()} belongs to search {found.run_id}: continuing the search", flush=True)
    args.trials = None
    args.parallel = getattr(args, "parallel", 1)
    return _drive(args, lambda s: s.resume(found, args.data_path or None), tracker=tracker)


def _worker(args: argparse.Namespace) -> int:
    """One worker of `--parallel`: trials of the search until its budget is spent (the parent finishes it)."""
    from btc_ai.desk.search import inputs_from_spec

    def go(search: Any) -> Any:
        runs = search.runs
        record = runs.record(args.worker)
        runs.tracker.experiment_id = record.experiment_id
        search.work(record.run_id, inputs_from_spec(runs.spec(record.run_id), record.run_id, None))

    _drive(args, go, worker=True)
    return EXIT_OK


class _Console:
    """The search's own lines: which trial runs, how it ended."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def search_started(self, run_id: str, inputs: Any, resumed: bool) -> None:
        print(f"{'continuing search' if resumed else 'search'} run {run_id}: {inputs.trials} trial(s), "
              f"{inputs.folds} fold(s) x {len(inputs.seeds)} seed(s) each, on {inputs.source}", flush=True)
        if not self.quiet:
            print(f"held out from every trial: {inputs.held.label} ({inputs.held.bars} bars); study storage "
                  f"{inputs.storage}", flush=True)

    def trial_started(self, number: int, trials: int, values: Any, continued: bool) -> None:
        if not self.quiet:
            how = "continuing" if continued else "starting"
            print(f"trial {number + 1}/{trials} {how}: {_values(values)}", flush=True)

    def trial_finished(self, outcome: Any, trials: int, values: Any) -> None:
        head = f"trial {outcome.number + 1}/{trials} {outcome.state}"
        if outcome.state == "complete":
            print(f"{head}: walk-forward Sharpe {outcome.value:+.3f} ({_values(values)})", flush=True)
        else:
            print(f"{head}: {outcome.detail}", flush=True)

    def held_out_started(self, number: int, label: str) -> None:
        print(f"chosen: trial {number + 1}; training it once and scoring it on the held-out block {label}", flush=True)

    def started(self, *a: Any) -> None:
        """A trial's walk-forward began: the trial line said so."""

    def fold_started(self, fold: Any, seed: int, folds: int, resumed_session: str | None) -> None:
        if not self.quiet:
            print(f"  fold {fold.number}/{folds} seed {seed}", flush=True)

    def fold_skipped(self, *a: Any) -> None:
        """A fold done before the kill."""


def _values(values: Any) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


def _drive(args: argparse.Namespace, go: Any, tracker: Any = None, worker: bool = False) -> int:
    from btc_ai.cli.progress import ConsoleReporter
    from btc_ai.cli.run_support import settle_journal, training_func
    from btc_ai.desk.search import Search
    from btc_ai.recovery import TrainingRecoverySystem
    from btc_ai.recovery.signals import exit_code, graceful_interrupts

    system = TrainingRecoverySystem(checkpoint_dir=args.checkpoint_dir, max_retries=args.max_retries,
                                    enable_emergency_checkpoints=not args.no_emergency_checkpoints, tracker=tracker,
                                    tracking_uri=args.tracking_uri, experiment=args.experiment)
    search = Search(system, _Console(args.quiet), training_func=training_func(),
                    session_reporter=lambda: ConsoleReporter(quiet=args.quiet),
                    worker_arguments=lambda run_id: _worker_arguments(args, run_id),
                    ray_address=getattr(args, "ray_address", None))
    try:
        with graceful_interrupts(system.stop_event):
            result = go(search)
    except KeyboardInterrupt as exc:
        where = f"; continue with: btc-ai resume {search.run_id}" if search.run_id else ""
        error(f"interrupted ({exc or 'SIGINT'}){where}")
        return exit_code(exc)
    finally:
        settle_journal(system)
    if worker:
        return EXIT_OK
    if result.outcome == "failed":
        error(f"search {result.run_id} failed: {result.error}")
        return EXIT_FAILED
    if result.outcome == "already_completed":
        print(f"search {result.run_id} already completed; its summary:")
    print("\n".join(result.summary))
    print(f"search run {result.run_id}: trials, summary and plots logged (open the UI: make ui)")
    return EXIT_OK


def _worker_arguments(args: argparse.Namespace, run_id: str) -> list[str]:
    """`btc-ai ...` of one worker: the store named outright (a Ray worker has no MLFLOW_TRACKING_URI of ours)."""
    from btc_ai.tracking.paths import resolve_tracking_uri

    return ["search", "--worker", run_id, "--experiment", args.experiment, "--checkpoint-dir", args.checkpoint_dir,
            "--max-retries", str(args.max_retries), "--quiet", "--tracking-uri", resolve_tracking_uri(args.tracking_uri)]
