"""The session's plots from the tracking store: what to draw, collected from MLflow, and the PNGs logged
under ``plots/`` of the session run (at a session's end and by ``btc-ai report --plots``)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from btc_ai.domain.config import TrainingConfig
from btc_ai.domain.evaluation import EquityCurve
from btc_ai.domain.metric_names import METRIC_TEST_TOTAL_RETURN
from btc_ai.tracking.run_model import (
    ARTIFACT_EQUITY_CSV,
    ARTIFACT_PLOTS,
    ARTIFACT_TRADES_CSV,
    BUILTIN_DATA,
    DATAFRAME_DATA,
    METRIC_FITNESS_MAX,
    METRIC_FITNESS_MEAN,
    RunModel,
    SessionRecord,
)

PLOTS_DIR = ARTIFACT_PLOTS
FITNESS_PNG = "fitness_history.png"
EQUITY_PNG = "equity_curve.png"
# BTC_AI_PLOTS=off: a session's end draws no PNG (matplotlib's import and the drawing cost about 2 s a session:
# a study of 80 fold sessions spends minutes on pictures nobody opens); trades.csv and equity.csv are still
# logged, and `btc-ai report <session> --plots` draws the PNGs later from the store
PLOTS_VARIABLE = "BTC_AI_PLOTS"


def plots_off() -> str | None:
    """Why a session's end draws no PNG (``BTC_AI_PLOTS`` set to off, 0, no or false), or None."""
    value = os.environ.get(PLOTS_VARIABLE, "").strip().lower()
    return f"{PLOTS_VARIABLE}={value}" if value in ("off", "0", "no", "false") else None


class PlotDataMissing(Exception):
    """What the equity curve needs is not to be had; the message says why, in one line."""


@dataclass
class SessionPlots:
    """The PNGs drawn (local files; artifact paths when no folder was given) and why the equity curve was
    left out, if it was."""

    session_run_id: str
    paths: list[Path] = field(default_factory=list)
    equity_skipped: str | None = None


def fitness_attempts(runs: RunModel, session_id: str) -> list[dict[str, Any]]:
    """Every attempt of the session as :func:`btc_ai.domain.plots.plot_fitness_history` takes it (plus its run ID,
    error type and best validation reward)."""
    session = runs.session(session_id)
    rules = {r.run_id: r.rule for r in runs.repairs(session)}
    rows = []
    for attempt in runs.attempts(session):
        mean = runs.metric_history(attempt.run_id, METRIC_FITNESS_MEAN)
        best = dict(runs.metric_history(attempt.run_id, METRIC_FITNESS_MAX))
        steps = [step for step, _ in mean]
        rows.append({
            "attempt": attempt.number,
            "run_id": attempt.run_id,
            "outcome": attempt.outcome or ("running" if attempt.running else "?"),
            "error": attempt.error_type,
            "steps": steps,
            "fitness_mean": [value for _, value in mean],
            "fitness_max": [best[s] for s in steps] if all(s in best for s in steps) else None,
            "start_generation": attempt.start_generation,
            "repair": rules.get(attempt.repaired_by or ""),
            "resumed_from": attempt.resumed_from,
            "best_reward": attempt.best_reward,
        })
    return rows


def session_data(session: SessionRecord) -> str | None:
    """The data the session trained on, as a path; None for the built-in data; PlotDataMissing if gone."""
    source = session.data_source
    if source in (None, BUILTIN_DATA):
        return None
    if source == DATAFRAME_DATA:
        raise PlotDataMissing("the session trained on a DataFrame passed in Python, which is not on the store")
    if not Path(source).is_file():
        raise PlotDataMissing(f"the data file the session trained on is not here: {source}")
    return source


def session_equity(runs: RunModel, session_id: str, span: str = "validation") -> EquityCurve:
    """The session's model on the validation (or ``span="test"``) span of its data, rebuilt from the store
    and that data.

    The model is the one logged (and registered) on the session run; the config is that of the
    attempt that produced it. PlotDataMissing when any of them cannot be had.
    """
    # torch and the data readers: only when a curve is redrawn from the store
    from btc_ai.domain.data import data_fingerprint, load_candles
    from btc_ai.training import validation_equity

    session = runs.session(session_id)
    if not runs.has_model(session_id):
        raise PlotDataMissing(f"the session has no logged model (status {session.status})")
    done = [a for a in runs.attempts(session) if a.outcome == "success"]
    if not done:
        raise PlotDataMissing("no attempt of the session succeeded")
    final = done[-1]
    source = session_data(session)
    try:
        candles = load_candles(source)[0] if source is not None else None
    except (OSError, ValueError) as exc:  # DataValidationError is a ValueError
        raise PlotDataMissing(f"the data file {source} cannot be read: {exc}") from None
    recorded = final.data_fingerprint
    if candles is not None and recorded and data_fingerprint(candles) != recorded:
        raise PlotDataMissing(f"the data file {source} changed since the training (fingerprint mismatch)")
    model = runs.load_model(session_id)
    return validation_equity(model, TrainingConfig.from_dict(dict(final.params)), candles, span=span)


def _test_curve(runs: RunModel, session_id: str, given: Any) -> EquityCurve | None:
    """The test span's curve: given, or rebuilt (None when the session held out no test span)."""
    if given is not None:
        return given() if callable(given) else given
    if METRIC_TEST_TOTAL_RETURN not in runs.latest_metrics(session_id):
        return None
    return session_equity(runs, session_id, span="test")


def _trade_tables(folder: Path, curves: dict[str, EquityCurve | None]) -> list[Path]:
    """``trades.csv`` and ``equity.csv`` of the spans drawn, a ``span`` column first (docs/trades.md)."""
    from btc_ai.domain.trade_stats import span_tables

    spans = {name: curve.trades for name, curve in curves.items() if curve is not None and curve.trades is not None}
    if not spans:
        return []
    trades, equity = span_tables(spans)
    trades.to_csv(folder / ARTIFACT_TRADES_CSV, index=False)
    equity.to_csv(folder / ARTIFACT_EQUITY_CSV, index=False)
    return [folder / ARTIFACT_TRADES_CSV, folder / ARTIFACT_EQUITY_CSV]


def write_session_plots(runs: RunModel, ref: str, out_dir: str | Path | None = None, *,
                        equity: EquityCurve | Callable[[], EquityCurve] | None = None,
                        test_equity: EquityCurve | Callable[[], EquityCurve | None] | None = None,
                        log: bool = True, draw: bool = True) -> SessionPlots:
    """Draw ``fitness_history.png`` and ``equity_curve.png`` for the session ``ref`` belongs to, with the
    policy's round trips and equity (``trades.csv``, ``equity.csv``) of the spans drawn beside them.

    Files go to ``out_dir`` (a temporary folder when None) and, with ``log``, under ``plots/`` of the
    session run, replacing earlier ones. ``equity`` and ``test_equity`` (the validation and test spans' curves,
    or functions returning them) spare the rebuild from the store when the caller holds them. The fitness plot is always drawn; when the equity curve
    cannot be had, ``equity_skipped`` says why. Without ``draw`` only the trade tables are written.
    """
    if draw:  # matplotlib: only when a picture is drawn
        from btc_ai.domain.plots import plot_equity_curve, plot_fitness_history

    session = runs.resolve_session(ref)
    session_id = session.run_id
    result = SessionPlots(session_id)
    bucket = session.bucket or ""
    with contextlib.ExitStack() as stack:
        folder = Path(out_dir) if out_dir is not None else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        if draw:
            attempts = fitness_attempts(runs, session_id)
            result.paths.append(plot_fitness_history(
                attempts, folder / FITNESS_PNG, title=f"fitness of every attempt, {bucket} session {session_id[:8]}"))
        try:
            if equity is None:
                curve = session_equity(runs, session_id)
            else:
                curve = equity() if callable(equity) else equity
            test = _test_curve(runs, session_id, test_equity)
            if draw:
                span = f"{curve.index[0]:%Y-%m-%d} to {(test or curve).index[-1]:%Y-%m-%d}"
                title = f"the session's model, {span}, {bucket} session {session_id[:8]}"
                result.paths.append(plot_equity_curve(
                    curve.equity, curve.buy_and_hold, curve.index, folder / EQUITY_PNG, title=title,
                    test=(test.equity, test.buy_and_hold, test.index) if test is not None else None,
                    rules=curve.rules, test_rules=test.rules if test is not None else None))
            result.paths.extend(_trade_tables(folder, {"validation": curve, "test": test}))
        except PlotDataMissing as exc:
            result.equity_skipped = str(exc)
        except Exception as exc:  # whatever broke, the fitness plot stands and the reason is told
            result.equity_skipped = f"{type(exc).__name__}: {exc}"
        if log:
            for path in result.paths:
                runs.add_plot(session_id, path)
        if out_dir is None:
            result.paths = [Path(PLOTS_DIR) / p.name for p in result.paths]  # the files are gone; the artifacts stay
    return result
