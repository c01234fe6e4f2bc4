"""`btc-ai search`: a hyperparameter study (Optuna, TPE, seeded) whose every trial is a walk-forward over the
study's data (`desk.search_trial`), nested under one search run; the newest block of candles held out from all
of them and scored once, at the end, for the chosen configuration (`desk.search_report`). What it is asked
to do, checked, is `desk.search_inputs`.

Resumable as a whole: the search run records what it was asked to do (`search.json`), Optuna keeps every trial
(params, fold reports, state) in its storage beside the tracking store. A resume finishes the trials that
were running (their walk-forwards from their finished folds), draws the rest, and ends as an uninterrupted
study does. ``parallel`` > 1 runs that many worker processes on the same storage; a worker that dies leaves its
trial running under a dead owner, and the next worker to look continues it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import optuna

from btc_ai.desk import search_report
from btc_ai.desk.search_inputs import SearchInputs, prepare
from btc_ai.desk.search_report import HeldOutScore, SearchResult
from btc_ai.desk.search_trial import (
    OWNER,
    TrialOutcome,
    TrialWalkForward,
    continued_trial,
    draw,
    fail_trial,
    open_study,
    orphans,
    owner_token,
    run_trial,
    sampler_for,
)
from btc_ai.desk.walk_forward import WalkForwardReporter
from btc_ai.domain.errors import ResumeError, UserInputError
from btc_ai.domain.metric_names import (
    METRIC_TEST_BUY_AND_HOLD_RETURN,
    METRIC_TEST_SHARPE,
    METRIC_TEST_TOTAL_RETURN,
)
from btc_ai.domain.search_space import parse_space
from btc_ai.recovery.lease import claim_lease, lease_token
from btc_ai.recovery.system import ProgressReporter, TrainingRecoverySystem
from btc_ai.tracking.run_model import BUILTIN_DATA, RunModel
from btc_ai.tracking.run_model.search import NAN, SearchRecord, SearchRuns, held_out_link
from btc_ai.tracking.run_model.walk_forward import WalkForwardRuns
from btc_ai.training import train_model

MAX_WORKER_RESTARTS = 3  # per worker slot: a worker that keeps dying is a fault, not bad luck


class SearchReporter(WalkForwardReporter):
    """What a person watching is told; silent here, the CLI prints."""

    def search_started(self, run_id: str, inputs: SearchInputs, resumed: bool) -> None:
        """The search run was created (or reopened)."""

    def trial_started(self, number: int, trials: int, values: Mapping[str, Any], continued: bool) -> None:
        """A trial begins (or continues)."""

    def trial_finished(self, outcome: TrialOutcome, trials: int, values: Mapping[str, Any]) -> None:
        """A trial ended: complete, pruned or failed."""

    def held_out_started(self, number: int, label: str) -> None:
        """The chosen configuration trains and is scored on the held-out block."""


class Search:
    """Runs (or continues) one search on ``system``'s store."""

    def __init__(self, system: TrainingRecoverySystem, reporter: SearchReporter | None = None, *,
                 training_func: Callable[..., Any] = train_model,
                 session_reporter: Callable[[], ProgressReporter] | None = None,
                 worker_arguments: Callable[[str], list[str]] | None = None, ray_address: str | None = None) -> None:
        self.system = system
        self.reporter = reporter or SearchReporter()
        self.training_func = training_func
        self.session_reporter = session_reporter
        # `btc-ai ARGUMENTS` of a worker for a search run ID: processes here, or Ray tasks at ``ray_address``
        self.worker_arguments = worker_arguments
        self.ray_address = ray_address
        self.run_id: str | None = None

    @property
    def runs(self) -> SearchRuns:
        return SearchRuns(self.system.runs)

    def start(self, inputs: SearchInputs, parallel: int = 1) -> SearchResult:
        runs = self.runs
        cfg = inputs.config
        run_id = self.run_id = runs.open(name=f"{cfg.BUCKET.lower()}-search-{inputs.trials}", bucket=cfg.BUCKET,
                                         data_source=inputs.source, data_fingerprint=inputs.fingerprint,
                                         trials=inputs.trials, lease_owner=lease_token(), heartbeat=time.time())
        runs.record_study(run_id, inputs.values, trials=inputs.trials, folds=inputs.folds, seeds=inputs.seeds,
                          sampler="TPE", sampler_seed=inputs.seed, pruner=f"median after {inputs.prune_after} trials",
                          held_out_share=inputs.held_out_share, held_out=inputs.held.label,
                          space=[d.key for d in inputs.dims], storage=inputs.storage, spec=inputs.spec())
        open_study(inputs.storage, run_id, inputs.seed, inputs.prune_after, create=True)
        self.reporter.search_started(run_id, inputs, resumed=False)
        return self._run(run_id, inputs, parallel)

    def resume(self, record: SearchRecord | str, data_path: str | Path | list[str] | None = None,
               parallel: int = 1) -> SearchResult:
        runs = self.runs
        if isinstance(record, str):
            record = runs.record(record)
        run_id = self.run_id = record.run_id
        inputs = inputs_from_spec(runs.spec(run_id), run_id, data_path)
        if record.completed:
            return SearchResult("already_completed", run_id, search_report.recorded_summary(runs, run_id))
        runs.tracker.experiment_id = record.experiment_id
        claim_lease(self.system.runs, run_id)
        runs.reopen(run_id)
        self.reporter.search_started(run_id, inputs, resumed=True)
        return self._run(run_id, inputs, parallel)

    def _run(self, run_id: str, inputs: SearchInputs, parallel: int) -> SearchResult:
        runs = self.runs
        try:
            if self.ray_address is not None and self.worker_arguments is not None:
                self._on_ray(run_id, inputs, parallel)
            elif parallel > 1 and self.worker_arguments is not None:
                self._supervise(run_id, inputs, parallel)
            self.work(run_id, inputs)  # alone, or after the workers: whatever a lost worker left
            study = open_study(inputs.storage, run_id, inputs.seed, inputs.prune_after, create=False)
            result = search_report.finish(self.runs, run_id, inputs, study,
                                          lambda best: self._held_out(run_id, inputs, best))
        except KeyboardInterrupt:
            runs.close(run_id, status="interrupted", run_status="KILLED")
            raise
        except BaseException:
            runs.close(run_id, status="failed", run_status="FAILED")
            raise
        if result.outcome == "failed":
            runs.close(run_id, status="failed", run_status="FAILED")
        else:
            runs.close(run_id, status="completed", run_status="FINISHED")
        return result

    def _held_out(self, run_id: str, inputs: SearchInputs, best: optuna.trial.FrozenTrial) -> HeldOutScore | None:
        """Train the chosen configuration on everything before the held-out block and score it there, once (a
        resume continues the session it began): its Sharpe, return and buy-and-hold's return there; None when its
        session failed."""
        runs = self.runs
        self.reporter.held_out_started(best.number, inputs.held.label)
        begun = runs.held_out_session(runs.record(run_id))
        system = self.system
        if begun is not None and begun[1] == best.number:
            result = system.train(self.training_func, None, inputs.candles, recovery_state=begun[0])
        else:
            values = {**inputs.values, **best.params, "SEED": inputs.seeds[0], "TEST_FRACTION": inputs.held.test_fraction}
            result = system.train(self.training_func, system.validated(values), inputs.candles,
                                  parent=held_out_link(run_id, best.number))
        if result.outcome == "failed" or not result.session_run_id:
            return None
        metrics = WalkForwardRuns(system.runs).outcome(result.session_run_id).metrics
        return (float(metrics.get(METRIC_TEST_SHARPE, NAN)), float(metrics.get(METRIC_TEST_TOTAL_RETURN, NAN)),
                float(metrics.get(METRIC_TEST_BUY_AND_HOLD_RETURN, NAN)))

    # -- the trials ----------------------------------------------------------------------------------

    def work(self, run_id: str, inputs: SearchInputs) -> None:
        """This process's trials: first any a dead process left running, then new ones until the budget (or
        the time) is spent."""
        study = open_study(inputs.storage, run_id, inputs.seed, inputs.prune_after, create=False)
        started = time.monotonic()
        runs = self.runs
        while True:
            left = orphans(study)
            if left:
                trial = continued_trial(study, left[0])
                if trial is None:  # another worker took it first
                    continue
                existing = runs.trial_walk_forwards(runs.record(run_id)).get(trial.number)
                self._trial(run_id, inputs, study, trial, existing[0] if existing else None)
                continue
            if len(study.get_trials(deepcopy=False)) >= inputs.trials:
                return
            if inputs.timeout is not None and time.monotonic() - started > inputs.timeout:
                return
            trial = study.ask()
            if trial.number >= inputs.trials:  # another worker asked at the same moment: over budget
                trial.set_user_attr("surplus", True)
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                return
            trial.set_user_attr(OWNER, owner_token())
            self._trial(run_id, inputs, study, trial, None)

    def _trial(self, run_id: str, inputs: SearchInputs, study: optuna.Study, trial: optuna.Trial,
               existing: str | None) -> None:
        study.sampler = sampler_for(inputs.seed, trial.number)  # trial n draws from (seed, n) alone
        values = draw(trial, inputs.dims)
        self.reporter.trial_started(trial.number, inputs.trials, values, existing is not None)
        walk = TrialWalkForward(self.system, None, training_func=self.training_func,
                                session_reporter=self.session_reporter)
        try:
            wf_inputs = inputs.trial_inputs(values)
        except UserInputError as exc:  # a drawn combination the config refuses: this trial fails, not the study
            outcome = fail_trial(trial, self.runs, None, str(exc))
        else:
            outcome = run_trial(walk, trial, wf_inputs, self.runs, run_id, existing, self.reporter)
        self.reporter.trial_finished(outcome, inputs.trials, values)

    def _supervise(self, run_id: str, inputs: SearchInputs, parallel: int) -> None:
        """``parallel`` worker processes on the study; one that dies is replaced while trials remain (its trial,
        left running under a dead owner, is continued by the next worker that looks)."""
        assert self.worker_arguments is not None
        command = [sys.executable, "-m", "btc_ai", *self.worker_arguments(run_id)]
        procs: list[subprocess.Popen | None] = [subprocess.Popen(command) for _ in range(parallel)]
        restarts = [0] * parallel
        study = open_study(inputs.storage, run_id, inputs.seed, inputs.prune_after, create=False)
        while procs:
            for slot, proc in enumerate(procs):
                if proc is None or proc.poll() is None:
                    continue
                if proc.returncode != 0 and _trials_left(study, inputs) and restarts[slot] < MAX_WORKER_RESTARTS:
                    restarts[slot] += 1
                    procs[slot] = subprocess.Popen(command)
                else:
                    procs[slot] = None
            if all(p is None for p in procs):
                return
            live = next(p for p in procs if p is not None)
            with contextlib.suppress(subprocess.TimeoutExpired):  # a second at most: then look at every worker
                live.wait(timeout=1.0)

    def _on_ray(self, run_id: str, inputs: SearchInputs, parallel: int) -> None:
        """``parallel`` workers as Ray tasks on the cluster at ``ray_address`` (`training.cluster.tasks`), each
        started again after a bad end while trials remain."""
        from btc_ai.training.cluster.tasks import run_commands_on_ray  # imports Ray: only with --ray-address

        assert self.worker_arguments is not None and self.ray_address is not None
        study = open_study(inputs.storage, run_id, inputs.seed, inputs.prune_after, create=False)
        run_commands_on_ray(self.ray_address, self.worker_arguments(run_id), os.getcwd(), parallel,
                            lambda: _trials_left(study, inputs), MAX_WORKER_RESTARTS)


def _trials_left(study: optuna.Study, inputs: SearchInputs) -> bool:
    """Whether the study still has a trial to draw, or one a dead worker left running."""
    return len(study.get_trials(deepcopy=False)) < inputs.trials or bool(orphans(study))


def inputs_from_spec(spec: Mapping[str, Any], run_id: str, data_path: str | Path | list[str] | None) -> SearchInputs:
    """The search's inputs again, from its record and its data file (the same data, checked)."""
    from btc_ai.domain.data.sources import display, source_from_text

    source = data_path if data_path is not None else (None if spec["data_source"] == BUILTIN_DATA else
                                                      source_from_text(spec["data_source"]))
    inputs = prepare(source, spec["config"], parse_space(spec["space"], f"search {run_id}'s space"),
                     trials=int(spec["trials"]), folds=int(spec["folds"]), seeds=spec["seeds"], seed=int(spec["seed"]),
                     prune_after=int(spec["prune_after"]), held_out_share=float(spec["held_out_share"]),
                     storage=spec["storage"], timeout=spec.get("timeout"))
    if inputs.fingerprint != spec["data_fingerprint"]:
        raise ResumeError(f"the data differs from the data search {run_id} ran on; pass the original data "
                          f"({display(source_from_text(spec['data_source']))})")
    return inputs


def search_of(runs: RunModel, ref: str) -> SearchRecord | None:
    """The search behind ``ref`` (its run or any run nested in it), or None."""
    return SearchRuns(runs).find(ref)
