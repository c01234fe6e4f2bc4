"""`btc-ai walk-forward`: K expanding-window folds in time order (`btc_ai.domain.folds`), each fold and seed an
ordinary training session (recovery, checkpoints, resume) nested under one walk-forward run, scored on its
held-out test block; the aggregate table, metrics and plot logged on the walk-forward run.

Resumable as a whole: the walk-forward run records what it was asked to do (data file, fingerprint, config,
folds, seeds); a resume re-makes every fold's slice of the data from the file, skips the sessions that
completed, continues an interrupted one from its run ID and starts those not begun, so it ends with the same
sessions (bit for bit) and the same aggregate as an uninterrupted run.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from btc_ai.domain.baselines import timeframe_windows
from btc_ai.domain.config import TrainingConfig
from btc_ai.domain.data import data_fingerprint, load_candles
from btc_ai.domain.data.report import format_interval
from btc_ai.domain.data.sources import (
    display,
    file_set_change,
    missing_part,
    source_from_text,
    source_text,
)
from btc_ai.domain.errors import DataValidationError, ResumeError, UserInputError
from btc_ai.domain.fold_summary import (
    Aggregate,
    FoldRow,
    aggregate,
    plot_walk_forward,
    row_from_metrics,
    table_lines,
)
from btc_ai.domain.folds import Fold, FoldPlan, fold_candles, plan_folds
from btc_ai.domain.synthetic import default_candles
from btc_ai.recovery.lease import claim_lease, lease_token
from btc_ai.recovery.system import ProgressReporter, SessionResult, TrainingRecoverySystem
from btc_ai.recovery.validation import ValidatedConfig
from btc_ai.tracking.run_model import (
    BUILTIN_DATA,
    CONTEXT_WALK_FORWARD,
    DataInputs,
    DataSpan,
    WalkForwardRecord,
    WalkForwardRuns,
    fold_link,
)
from btc_ai.training import train_model

MAX_SEED = 2**31 - 1


@dataclass
class WalkForwardInputs:
    """Everything a walk-forward needs, checked: nothing is created on the store before these exist."""

    source: str  # the data file(s) (absolute, sources.source_text) or BUILTIN_DATA
    candles: pd.DataFrame  # validated 5-minute candles, all of them
    fingerprint: str
    validated: ValidatedConfig  # the config every fold starts from (TEST_FRACTION and SEED set per session)
    plan: FoldPlan
    seeds: tuple[int, ...]
    files: list[dict[str, Any]] = field(default_factory=list)  # each file read, with its sha256

    def data(self) -> DataInputs:
        """Where the walk-forward's data came from: its files (or URL) by name, the fingerprint of them all.
        Each fold session's dataset inputs name the same source (`DataInputs.cut` to its slice)."""
        index = self.candles.index
        return DataInputs.of_files(self.source, self.fingerprint, format_interval(pd.Series(index).diff().min()),
                                   self.files)

    @property
    def values(self) -> dict[str, Any]:
        """The config keys as given (what the walk-forward records), TEST_FRACTION aside: set for each fold."""
        return {k: v for k, v in self.validated.given.items() if k != "TEST_FRACTION"}

    @property
    def config(self) -> TrainingConfig:
        return self.validated.config

    def data_inputs(self) -> tuple[DataInputs, list[DataSpan]]:
        """The walk-forward's data as one dataset input: the whole series its folds are cut from."""
        index = self.candles.index
        return self.data(), [DataSpan(CONTEXT_WALK_FORWARD, index[0].isoformat(), index[-1].isoformat(), len(index))]

    def spec(self) -> dict[str, Any]:
        """What the walk-forward run records, enough to continue it from the store and the data file alone."""
        return {"data_source": self.source, "data_fingerprint": self.fingerprint, "data_files": self.files,
                "folds": len(self.plan.folds),
                "seeds": list(self.seeds), "config": self.values, "held_out_share": self.plan.held_out_share,
                "block_bars": self.plan.block_bars, "construction": self.plan.construction,
                "plan": [f.as_dict() for f in self.plan.folds]}

    def fold_config(self, fold: Fold, seed: int) -> ValidatedConfig:
        """The config of ``fold``'s session for ``seed``: the walk-forward's, its repairs included."""
        return self.validated.derived(SEED=seed, TEST_FRACTION=fold.test_fraction)


@dataclass
class WalkForwardResult:
    """How a walk-forward ended: ``completed`` (rows and aggregate), ``already_completed`` (a resume with
    nothing left: the recorded rows), ``failed`` (``error`` says which session and why)."""

    outcome: str
    run_id: str
    rows: list[FoldRow] = field(default_factory=list)
    aggregate: Aggregate | None = None
    error: str | None = None
    construction: str = ""

    def table(self) -> list[str]:
        return table_lines(self.rows, self.aggregate) if self.aggregate is not None else []


class WalkForwardReporter:
    """What a person watching is told; silent here, the CLI prints."""

    def started(self, run_id: str, inputs: WalkForwardInputs, resumed: bool) -> None:
        """The walk-forward run was created (or reopened)."""

    def fold_started(self, fold: Fold, seed: int, folds: int, resumed_session: str | None) -> None:
        """A fold's session begins (or continues, ``resumed_session``)."""

    def fold_skipped(self, fold: Fold, seed: int, session_id: str) -> None:
        """A fold's session completed in an earlier process."""


def load_data(source: str | Path | list[str] | None) -> tuple[str, pd.DataFrame, list[dict[str, Any]]]:
    """(source label, validated candles, the files read) of a data file, many files (a folder, a glob, a list),
    or the built-in data for None; UserInputError naming the file when it cannot be read."""
    if source is None or str(source) == BUILTIN_DATA:
        return BUILTIN_DATA, load_candles(default_candles())[0], []
    try:
        candles, report = load_candles(source)
    except FileNotFoundError as exc:
        raise UserInputError(f"data file {exc.filename or source} does not exist; check the path") from None
    except DataValidationError as exc:
        raise UserInputError(str(exc) if str(source) in str(exc) else f"{source}: {exc}") from None
    return source_text(source), candles, [f.to_dict() for f in report.files]


def prepare(source: str | Path | list[str] | None, validated: ValidatedConfig, folds: int,
            seeds: Sequence[int] | None = None) -> WalkForwardInputs:
    """Check everything (folds, seeds, data, enough candles for the folds) and plan the folds. ``validated``: the
    config as validated once by the caller (`btc_ai.recovery.validation.validated_config`); its TEST_FRACTION
    is set for each fold."""
    if not isinstance(validated, ValidatedConfig):
        raise TypeError(f"prepare takes a ValidatedConfig (validated_config(values)), not {type(validated).__name__}")
    if folds < 1:
        raise UserInputError(f"--folds {folds}: a walk-forward needs at least 1 fold")
    config = validated.config
    chosen = tuple(int(s) for s in seeds) if seeds else (config.SEED,)
    bad = [s for s in chosen if not 0 <= s <= MAX_SEED]
    if bad:
        raise UserInputError(f"--seeds {' '.join(map(str, bad))}: a seed is 0 .. {MAX_SEED}")
    if len(set(chosen)) != len(chosen):
        raise UserInputError(f"--seeds {' '.join(map(str, chosen))} repeats a seed; give each once")
    label, candles, files = load_data(source)
    plan = plan_folds(candles, config, folds)  # a DataValidationError (a UserInputError) when too short
    return WalkForwardInputs(label, candles, data_fingerprint(candles), validated, plan, chosen, files)


class WalkForward:
    """Runs (or continues) one walk-forward on ``system``'s store: its sessions through ``system.train``."""

    def __init__(self, system: TrainingRecoverySystem, reporter: WalkForwardReporter | None = None, *,
                 training_func: Callable[..., Any] = train_model,
                 session_reporter: Callable[[], ProgressReporter] | None = None) -> None:
        self.system = system
        self.reporter = reporter or WalkForwardReporter()
        self.training_func = training_func
        self.session_reporter = session_reporter
        self.run_id: str | None = None

    @property
    def runs(self) -> WalkForwardRuns:
        return WalkForwardRuns(self.system.runs)

    # -- start and resume ----------------------------------------------------------------------------

    def start(self, inputs: WalkForwardInputs) -> WalkForwardResult:
        runs = self.runs
        cfg = inputs.config
        run_id = self.run_id = runs.open(
            name=f"{cfg.BUCKET.lower()}-walk-forward-{len(inputs.plan.folds)}x{len(inputs.seeds)}", bucket=cfg.BUCKET,
            data_source=inputs.source, data_fingerprint=inputs.fingerprint, folds=len(inputs.plan.folds),
            seeds=inputs.seeds, lease_owner=lease_token(), heartbeat=time.time())
        runs.record_plan(run_id, inputs.values, folds=len(inputs.plan.folds), seeds=inputs.seeds,
                         held_out_share=inputs.plan.held_out_share, block_bars=inputs.plan.block_bars,
                         spec=inputs.spec())
        runs.describe(run_id, _description(inputs, None))
        self.reporter.started(run_id, inputs, resumed=False)
        return self._run(run_id, inputs)

    def resume(self, walk_forward: WalkForwardRecord | str,
               data_path: str | Path | list[str] | None = None) -> WalkForwardResult:
        """Continue ``walk_forward`` (its record or run ID) with the folds not done; its data from the recorded
        file (or ``data_path``)."""
        runs = self.runs
        if isinstance(walk_forward, str):
            walk_forward = runs.record(walk_forward)
        run_id = self.run_id = walk_forward.run_id
        spec = runs.spec(run_id)
        source = data_path if data_path is not None else _recorded_source(run_id, spec)
        inputs = prepare(source, self.system.validated(spec["config"]), int(spec["folds"]), spec["seeds"])
        files = file_set_change(spec.get("data_files") or [], inputs.files) if spec.get("data_files") else None
        if inputs.fingerprint != spec["data_fingerprint"] or files:
            what = f"the data files differ: {files}" if files else "fingerprint mismatch"
            raise ResumeError(f"the data differs from the data walk-forward {run_id} ran on ({what}); "
                              f"pass the original data ({display(source_from_text(spec['data_source']))})")
        if [f.as_dict() for f in inputs.plan.folds] != spec["plan"]:
            raise ResumeError(f"the folds of walk-forward {run_id} come out differently now (another btc_ai version?); "
                              "start a new walk-forward")
        if walk_forward.completed:
            rows = self._rows(walk_forward, inputs)
            return WalkForwardResult("already_completed", run_id, rows, aggregate(rows),
                                     construction=inputs.plan.construction)
        tracker = runs.tracker
        tracker.experiment_id = walk_forward.experiment_id  # its sessions join its experiment
        claim_lease(self.system.runs, run_id)  # one live process per walk-forward
        runs.reopen(run_id)
        self.reporter.started(run_id, inputs, resumed=True)
        return self._run(run_id, inputs)

    # -- the folds -----------------------------------------------------------------------------------

    def _run(self, run_id: str, inputs: WalkForwardInputs) -> WalkForwardResult:
        runs = self.runs
        self.system.runs.log_data_inputs(run_id, *inputs.data_inputs())  # again on a resume: MLflow keeps one
        try:
            walk_forward = runs.record(run_id)
            for fold in inputs.plan.folds:
                data = fold_candles(inputs.candles, fold)
                for seed in inputs.seeds:
                    result = self._session(walk_forward, inputs, fold, seed, data)
                    if result is not None and result.outcome == "failed":
                        runs.close(run_id, status="failed", run_status="FAILED")
                        return WalkForwardResult("failed", run_id, error=f"fold {fold.number} seed {seed} (session "
                                                 f"{result.session_run_id}): {result.error}",
                                                 construction=inputs.plan.construction)
            rows = self._rows(walk_forward, inputs)
            agg = aggregate(rows)
            self._log_results(run_id, inputs, rows, agg)
        except KeyboardInterrupt:
            runs.close(run_id, status="interrupted", run_status="KILLED")
            raise
        except BaseException:
            runs.close(run_id, status="failed", run_status="FAILED")
            raise
        runs.close(run_id, status="completed", run_status="FINISHED")
        return WalkForwardResult("completed", run_id, rows, agg, construction=inputs.plan.construction)

    def _session(self, walk_forward: WalkForwardRecord, inputs: WalkForwardInputs, fold: Fold, seed: int,
                 data: pd.DataFrame) -> SessionResult | None:
        """Train (or continue) the session of ``fold`` and ``seed``; None when it had completed already."""
        found = self.runs.fold_sessions(walk_forward).get((fold.number, seed))
        if found is not None and found.session.completed:
            self.reporter.fold_skipped(fold, seed, found.run_id)
            return None
        if found is not None and not self.system.runs.attempts(found.session):
            # its process died while opening it, before any training: nothing to continue, start it afresh
            self.runs.abandon(found.run_id, "the process opening this fold session died before its first attempt; "
                                            "the fold was started again in a new session")
            found = None
        self.reporter.fold_started(fold, seed, len(inputs.plan.folds), found.run_id if found else None)
        previous = self.system.reporter
        if self.session_reporter is not None:
            self.system.reporter = self.session_reporter()
        try:
            if found is not None:
                return self.system.train(self.training_func, None, data, recovery_state=found.run_id,
                                         data_origin=inputs.data())
            return self.system.train(self.training_func, inputs.fold_config(fold, seed), data,
                                     parent=fold_link(walk_forward.run_id, fold.number, seed), data_origin=inputs.data())
        finally:
            close = getattr(self.system.reporter, "close", None)
            if self.session_reporter is not None and callable(close):
                close()
            self.system.reporter = previous

    def _rows(self, walk_forward: WalkForwardRecord, inputs: WalkForwardInputs) -> list[FoldRow]:
        """One row per fold and seed, from the sessions' records on the store."""
        sessions = self.runs.fold_sessions(walk_forward)
        rows = []
        for fold in inputs.plan.folds:
            for seed in inputs.seeds:
                found = sessions.get((fold.number, seed))
                if found is None:
                    continue
                out = self.runs.outcome(found.run_id)
                rows.append(row_from_metrics(fold.number, seed, found.run_id, fold.train.label(), out.metrics,
                                             {"test_span": out.test_span, "stop_reason": out.stop_reason,
                                              "final_params_sha256": out.final_params_sha256}))
        return rows

    def _log_results(self, run_id: str, inputs: WalkForwardInputs, rows: list[FoldRow], agg: Aggregate) -> None:
        self.runs.record_results(run_id, rows, agg)
        with tempfile.TemporaryDirectory() as tmp:
            self.runs.add_plot(run_id, plot_walk_forward(rows, agg, Path(tmp) / self.runs.plot_file))
        self.runs.describe(run_id, _description(inputs, table_lines(rows, agg)))


def _recorded_source(run_id: str, spec: Mapping[str, Any]) -> str | list[str] | None:
    source = spec.get("data_source")
    if source in (None, BUILTIN_DATA):
        return None
    missing = missing_part(str(source))
    if missing is not None:
        raise ResumeError(f"the data file {missing} of walk-forward {run_id} is not here; pass the data with --data_path")
    return source_from_text(str(source))


def _description(inputs: WalkForwardInputs, table: list[str] | None) -> str:
    """The walk-forward run's description: how the folds are built, each fold's spans, and the results."""
    lines = ["**Walk-forward.** " + inputs.plan.construction, "",
             f"Data: `{inputs.source}`; seeds {', '.join(map(str, inputs.seeds))}; every figure below is out of sample "
             "(the test block of each fold), net of costs, next to the rule baselines (buy-and-hold, flat 0 %, SMA "
             f"crossover and momentum, long or flat, same costs: {timeframe_windows(inputs.config.TIMEFRAME).describe()}).",
             "",
             "| fold | train | validation (selection) | test (out of sample) | TEST_FRACTION |", "|---|---|---|---|---|"]
    lines += [f"| {f.number} | {f.train.label()} | {f.validation.label()} | {f.test.label()} | {f.test_fraction:.4f} |"
              for f in inputs.plan.folds]
    if table:
        lines += ["", "```", *table, "```"]
    else:
        lines += ["", "Running: the results table appears here when every fold is done."]
    return "\n".join(lines)
