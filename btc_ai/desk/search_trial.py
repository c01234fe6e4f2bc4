"""One trial of a search: its configuration drawn from the space by Optuna, a walk-forward over the study's
data (never the held-out block) nested under the search run, its folds reported to the pruner as they end.

The only module besides `desk.search` that imports optuna. Reproducible by construction: the sampler of trial
``n`` is seeded from (study seed, n), so a study continued after a kill draws the same trials as one that
never stopped, and a trial's params are kept by Optuna from the moment they are drawn, so the trial that was
running when the process died continues with them (its walk-forward from its finished folds).
"""

from __future__ import annotations

import os
import socket
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import optuna

from btc_ai.desk.walk_forward import WalkForward, WalkForwardInputs, WalkForwardReporter, WalkForwardResult
from btc_ai.domain.errors import ResumeError
from btc_ai.domain.fold_summary import aggregate
from btc_ai.domain.folds import Fold
from btc_ai.domain.search_space import Dimension
from btc_ai.recovery.lease import claim_lease, process_alive
from btc_ai.tracking.run_model.search import SearchRuns

optuna.logging.set_verbosity(optuna.logging.WARNING)
OWNER = "owner"  # the user attribute naming the process (host:pid) that runs a trial
ERROR = "error"  # ... and, on a failed trial, why
SEED_STRIDE = 1_000_003  # sampler seed of trial n: seed * stride + n (distinct for any two (seed, n))


def sampler_for(seed: int, number: int) -> optuna.samplers.BaseSampler:
    """The sampler that draws trial ``number``: TPE, its randomness from (seed, number) alone."""
    return optuna.samplers.TPESampler(seed=(seed * SEED_STRIDE + number) % 2**32, n_startup_trials=5)


def open_study(storage: str, name: str, seed: int, prune_after: int, *, create: bool) -> optuna.Study:
    engine = {"connect_args": {"timeout": 60}} if storage.startswith("sqlite") else {}
    store = optuna.storages.RDBStorage(storage, engine_kwargs=engine)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=prune_after, n_warmup_steps=0)
    if create:
        return optuna.create_study(study_name=name, storage=store, direction="maximize",
                                   sampler=sampler_for(seed, 0), pruner=pruner)
    return optuna.load_study(study_name=name, storage=store, sampler=sampler_for(seed, 0), pruner=pruner)


def draw(trial: optuna.Trial, dims: Sequence[Dimension]) -> dict[str, Any]:
    """The trial's values of the searched keys (those it drew already, when it is continued)."""
    values: dict[str, Any] = {}
    for d in dims:
        if d.choices:
            values[d.key] = trial.suggest_categorical(d.key, list(d.choices))
        elif d.integer:
            values[d.key] = trial.suggest_int(d.key, int(d.low), int(d.high), step=int(d.step or 1), log=d.log)
        else:
            values[d.key] = trial.suggest_float(d.key, float(d.low), float(d.high), step=d.step, log=d.log)
    return values


def owner_token() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_alive(owner: str) -> bool:
    """Whether the process named ``owner`` still runs (on another host: presumed so)."""
    return process_alive(owner) is not False


def orphans(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Trials left running by a process that is gone (killed, a lost worker): to be continued."""
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    return [t for t in running if not owner_alive(str(t.user_attrs.get(OWNER, "")))]


@dataclass
class TrialOutcome:
    number: int
    state: str  # complete | pruned | failed
    value: float | None
    walk_forward_id: str | None
    detail: str  # the pruning fold or the error


class _FoldReporter(WalkForwardReporter):
    """Links the trial's walk-forward to the search as it is created, and reports each finished fold (the running
    mean of the folds' test Sharpes) to the pruner before the next fold begins."""

    def __init__(self, walk: TrialWalkForward, trial: optuna.Trial, search: SearchRuns, search_id: str,
                 outer: WalkForwardReporter) -> None:
        self.walk, self.trial, self.search, self.search_id, self.outer = walk, trial, search, search_id, outer
        self.reported = 0
        self.run_id: str | None = None

    def started(self, run_id: str, inputs: WalkForwardInputs, resumed: bool) -> None:
        self.run_id = run_id
        if not resumed:
            self.search.link_trial(run_id, self.search_id, self.trial.number)
        self.inputs = inputs

    def fold_started(self, fold: Fold, seed: int, folds: int, resumed_session: str | None) -> None:
        self._report_before(fold.number)
        self.outer.fold_started(fold, seed, folds, resumed_session)

    def fold_skipped(self, fold: Fold, seed: int, session_id: str) -> None:
        self._report_before(fold.number)

    def _report_before(self, number: int) -> None:
        if number - 1 <= self.reported:
            return
        sharpes = self.walk.fold_sharpes(self.run_id or "", self.inputs)
        for k in range(self.reported + 1, number):
            done = sharpes[:k]
            with warnings.catch_warnings():  # a continued trial reports its earlier folds again: Optuna keeps the first
                warnings.filterwarnings("ignore", message="The reported value is ignored")
                self.trial.report(sum(done) / len(done), k)
            self.reported = k
            if self.trial.should_prune():
                raise optuna.TrialPruned(f"pruned after fold {k}: mean test Sharpe {sum(done) / len(done):+.3f} "
                                         "below the median of the finished trials")


class TrialWalkForward(WalkForward):
    """A walk-forward whose data is the study's part of the file: continued from the trial's inputs, since the
    file as a whole (held-out block included) is not what it ran on."""

    def fold_sharpes(self, run_id: str, inputs: WalkForwardInputs) -> list[float]:
        """Per finished fold (in order), the mean over seeds of the sessions' test Sharpes."""
        rows = self._rows(self.runs.record(run_id), inputs)
        out = []
        for fold in inputs.plan.folds:
            got = [r.sharpe for r in rows if r.fold == fold.number]
            if len(got) < len(inputs.seeds):
                break
            out.append(sum(got) / len(got))
        return out

    def continue_trial(self, run_id: str, inputs: WalkForwardInputs) -> WalkForwardResult:
        runs = self.runs
        record = runs.record(run_id)
        self.run_id = run_id
        if [f.as_dict() for f in inputs.plan.folds] != runs.spec(run_id)["plan"]:
            raise ResumeError(f"the folds of trial walk-forward {run_id} come out differently now; start a new search")
        if record.completed:
            rows = self._rows(record, inputs)
            return WalkForwardResult("already_completed", run_id, rows, aggregate(rows))
        runs.tracker.experiment_id = record.experiment_id
        claim_lease(self.system.runs, run_id)
        runs.reopen(run_id)
        self.reporter.started(run_id, inputs, resumed=True)
        return self._run(run_id, inputs)


def run_trial(walk: TrialWalkForward, trial: optuna.Trial, inputs: WalkForwardInputs, search: SearchRuns,
              search_id: str, existing: str | None, outer: WalkForwardReporter) -> TrialOutcome:
    """Run (or continue, ``existing`` its walk-forward) one trial's walk-forward; tell Optuna how it ended."""
    study = trial.study
    reporter = walk.reporter = _FoldReporter(walk, trial, search, search_id, outer)
    try:
        result = walk.continue_trial(existing, inputs) if existing else walk.start(inputs)
    except optuna.TrialPruned as exc:
        wf = reporter.run_id
        if wf:
            search.trial_state(wf, "pruned")
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        return TrialOutcome(trial.number, "pruned", None, wf, str(exc))
    except (KeyboardInterrupt, SystemExit, ResumeError):  # a resume refused: another process holds it
        raise
    except Exception as exc:  # the trial fails, the study goes on
        return fail_trial(trial, search, reporter.run_id, f"{type(exc).__name__}: {exc}")
    if result.outcome == "failed" or result.aggregate is None:
        return fail_trial(trial, search, result.run_id, result.error or "the walk-forward did not finish")
    value = result.aggregate.mean_sharpe
    if value != value:  # NaN: no Sharpe to compare (a policy that never traded scores 0, not NaN)
        return fail_trial(trial, search, result.run_id, "the walk-forward's mean test Sharpe is not a number")
    trial.set_user_attr("fold_returns", list(result.aggregate.fold_returns))
    trial.set_user_attr("walk_forward", result.run_id)
    search.trial_state(result.run_id, "complete")
    study.tell(trial, value)
    return TrialOutcome(trial.number, "complete", value, result.run_id, "")


def fail_trial(trial: optuna.Trial, search: SearchRuns, walk_forward_id: str | None, error: str) -> TrialOutcome:
    trial.set_user_attr(ERROR, error[:4000])
    if walk_forward_id:
        search.trial_state(walk_forward_id, "failed")
    trial.study.tell(trial, state=optuna.trial.TrialState.FAIL)
    return TrialOutcome(trial.number, "failed", None, walk_forward_id, error)


def continued_trial(study: optuna.Study, frozen: optuna.trial.FrozenTrial,
                    settle_s: float = 0.3) -> optuna.Trial | None:
    """A handle on a trial a dead process was running, now owned by this one; None when another worker claimed
    it at the same moment (write, wait, read back: of two claims only the last writer sees its own name)."""
    trial = optuna.trial.Trial(study, frozen._trial_id)  # Optuna has no public way from a FrozenTrial to a Trial
    me = owner_token()
    trial.set_user_attr(OWNER, me)
    time.sleep(settle_s)
    now = next(t for t in study.get_trials(deepcopy=False) if t.number == frozen.number)
    return trial if now.user_attrs.get(OWNER) == me else None
