"""The end of a search: the chosen configuration (the best complete trial) trained once on all the study's data
and scored on the held-out block, its model registered like any other (the promotion gate judges the held-out
block); the multiple-testing verdict (deflated Sharpe, PBO); the history plot, parameter importances, table and
summary on the search run."""

from __future__ import annotations

import math
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from btc_ai.desk.search_inputs import SearchInputs
from btc_ai.domain.search_stats import deflated_sharpe, pbo_cscv, sharpe, verdict
from btc_ai.tracking.run_model import WalkForwardRuns
from btc_ai.tracking.run_model.names import SEARCH_HISTORY_PLOT_FILE, SEARCH_IMPORTANCES_PLOT_FILE
from btc_ai.tracking.run_model.search import NAN, SearchRuns, SearchVerdict

HeldOutScore = tuple[float, float, float]  # the chosen configuration's Sharpe, return and buy-and-hold's return there


@dataclass
class SearchResult:
    outcome: str  # completed | already_completed | failed
    run_id: str
    summary: list[str] = field(default_factory=list)
    error: str | None = None


def finish(runs: SearchRuns, run_id: str, inputs: SearchInputs, study: optuna.Study,
           held_out: Callable[[optuna.trial.FrozenTrial], HeldOutScore | None]) -> SearchResult:
    """The verdict on the study, ``held_out`` scoring its chosen trial on the held-out block (None: that
    session failed)."""
    trials = [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get("surplus")]
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    counts = {state: sum(t.state == s for t in trials) for state, s in (
        ("complete", optuna.trial.TrialState.COMPLETE), ("pruned", optuna.trial.TrialState.PRUNED),
        ("failed", optuna.trial.TrialState.FAIL))}
    runs.record_trials(run_id, [_row(t) for t in trials])
    if not complete:
        return SearchResult("failed", run_id, error=f"no trial completed ({counts['pruned']} pruned, "
                                                    f"{counts['failed']} failed)")
    best = max(complete, key=lambda t: (t.value, -t.number))  # a tie goes to the earlier trial
    fold_returns = [float(x) for x in best.user_attrs["fold_returns"]]
    trial_sharpes = [sharpe(t.user_attrs["fold_returns"]) for t in complete]
    dsr = deflated_sharpe(fold_returns, trial_sharpes, len(trials))
    matrix = np.array([t.user_attrs["fold_returns"] for t in complete], dtype=float).T  # folds x trials
    overfit = pbo_cscv(matrix)
    held = held_out(best)
    held_sharpe, held_return, held_hold = held or (NAN, NAN, NAN)
    figures = SearchVerdict(
        best_walk_forward_sharpe=float(best.value), best_trial=float(best.number), trials=float(len(trials)),
        complete=float(counts["complete"]), pruned=float(counts["pruned"]), failed=float(counts["failed"]),
        deflated_sharpe=dsr, pbo=overfit.pbo, pbo_splits=float(overfit.splits),
        best_fold_return_sharpe=sharpe(fold_returns), held_out_sharpe=held_sharpe, held_out_return=held_return,
        held_out_buy_and_hold_return=held_hold)
    runs.record_verdict(run_id, figures)
    walk_forward = best.user_attrs.get("walk_forward")
    # the chosen trial's walk-forward figures, beside the search's own
    runs.record_choice(run_id, best.params,
                       WalkForwardRuns(runs.runs).outcome(walk_forward).metrics if walk_forward else {})
    runs.record_history(run_id, {t.number: float(t.value) for t in trials if t.value is not None})
    _plots(runs, run_id, study)
    lines = _summary(inputs, best, figures, held is not None)
    runs.record_summary(run_id, "\n".join(lines) + "\n")
    runs.describe(run_id, "\n".join(["**Search.** Each trial is a walk-forward on the data before the held-out "
                                     "block; the chosen configuration was scored once on that block.", "", "```",
                                     *lines, "```"]))
    return SearchResult("completed", run_id, lines)


def _row(t: optuna.trial.FrozenTrial) -> dict[str, Any]:
    state = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed"}.get(t.state.name, t.state.name.lower())
    return {"trial": t.number, "state": state, "value": t.value, **t.params,
            "folds_reported": len(t.intermediate_values), "walk_forward": t.user_attrs.get("walk_forward", ""),
            "error": t.user_attrs.get("error", "")}


def _plots(runs: SearchRuns, run_id: str, study: optuna.Study) -> None:
    """The history plot and the parameter importances (where Optuna can compute them: two complete trials)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
        for name, draw in ((SEARCH_HISTORY_PLOT_FILE, ovm.plot_optimization_history),
                           (SEARCH_IMPORTANCES_PLOT_FILE, ovm.plot_param_importances)):
            try:
                ax = draw(study)
            except (ValueError, RuntimeError, ZeroDivisionError):
                continue
            fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            path = Path(tmp) / name
            fig.savefig(path, dpi=90, bbox_inches="tight")
            plt.close(fig)
            runs.add_plot(run_id, path)


def _summary(inputs: SearchInputs, best: optuna.trial.FrozenTrial, figures: SearchVerdict, held: bool) -> list[str]:
    params = ", ".join(f"{k}={_fmt(v)}" for k, v in best.params.items())
    tried, complete, dsr, pbo = int(figures.trials), int(figures.complete), figures.deflated_sharpe, figures.pbo
    lines = [f"trials: {tried} ({complete} complete, {int(figures.pruned)} pruned, {int(figures.failed)} failed), "
             f"{inputs.folds} fold(s) x {len(inputs.seeds)} seed(s) each",
             f"chosen: trial {best.number + 1} (Optuna number {best.number}): {params}",
             f"walk-forward Sharpe (mean over folds): {best.value:+.3f}",
             f"deflated Sharpe ratio: {_fmt(dsr)} (probability that its Sharpe over the {len(best.user_attrs['fold_returns'])} "
             f"fold returns is above zero, after {tried} trials)",
             f"probability of backtest overfitting (CSCV over {complete} trials' fold returns): {_fmt(pbo)}",
             f"verdict: the chosen configuration is {verdict(dsr, pbo)}"]
    if held:
        lines.append(f"held-out block {inputs.held.label} (scored once): Sharpe {figures.held_out_sharpe:+.3f}, "
                     f"return {figures.held_out_return:+.2%} (buy-and-hold {figures.held_out_buy_and_hold_return:+.2%})")
    else:
        lines.append("held-out block: the chosen configuration's session failed; see its error report")
    return lines


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "n/a" if not math.isfinite(v) else f"{v:.4g}"
    return str(v)


def recorded_summary(runs: SearchRuns, run_id: str) -> list[str]:
    """The summary a completed search logged."""
    return runs.summary(run_id).splitlines()
