"""The session's plots from the tracking store: what to draw, collected from MLflow, and the PNGs logged
under ``plots/`` of the session run (at a session's end and by ``btc-ai report --plots``)."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from btc_ai.domain.config import TrainingConfig
from btc_ai.domain.evaluation import EquityCurve
from btc_ai.recovery.state import TAG_DATA_SOURCE, resolve_session
from btc_ai.recovery.system import BUILTIN_DATA
from btc_ai.tracking.store import TAG_ATTEMPT, TAG_KIND, TAG_OUTCOME, TAG_PARENT, Tracker

PLOTS_DIR = "plots"
FITNESS_PNG = "fitness_history.png"
EQUITY_PNG = "equity_curve.png"


class PlotDataMissing(Exception):
    """What the equity curve needs is not to be had; the message says why, in one line."""


@dataclass
class SessionPlots:
    """The PNGs drawn (local files; artifact paths when no folder was given) and why the equity curve was
    left out, if it was."""

    session_run_id: str
    paths: list[Path] = field(default_factory=list)
    equity_skipped: str | None = None


def fitness_attempts(client: Any, session_id: str) -> list[dict[str, Any]]:
    """Every attempt of the session as :func:`btc_ai.plots.plot_fitness_history` takes it (plus its run ID,
    error type and best validation reward).

    ``client`` is an ``MlflowClient`` (a Tracker's ``client``): the notebook calls this on a bare client.
    """
    session = client.get_run(session_id)
    runs = client.search_runs([session.info.experiment_id], f"tags.`{TAG_PARENT}` = '{session_id}'")
    attempts = sorted((r for r in runs if r.data.tags.get(TAG_KIND) == "attempt"),
                      key=lambda r: int(r.data.tags.get(TAG_ATTEMPT, 0)))
    repairs = client.search_runs([session.info.experiment_id], f"tags.`btc_ai.session` = '{session_id}'")
    rules = {r.info.run_id: r.data.tags.get("btc_ai.repair_rule") for r in repairs}
    rows = []
    for run in attempts:
        tags = run.data.tags
        mean = sorted(client.get_metric_history(run.info.run_id, "fitness/mean"), key=lambda m: m.step)
        best = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "fitness/max")}
        steps = [m.step for m in mean]
        rows.append({
            "attempt": int(tags.get(TAG_ATTEMPT, 0)),
            "run_id": run.info.run_id,
            "outcome": tags.get(TAG_OUTCOME, "running" if run.info.status == "RUNNING" else "?"),
            "error": tags.get("btc_ai.error_type") or None,
            "steps": steps,
            "fitness_mean": [m.value for m in mean],
            "fitness_max": [best[s] for s in steps] if all(s in best for s in steps) else None,
            "start_generation": int(tags["btc_ai.start_generation"]) if "btc_ai.start_generation" in tags else None,
            "repair": rules.get(tags.get("btc_ai.repaired_by", "")),
            "resumed_from": tags.get("btc_ai.resumed_from"),
            "best_reward": run.data.metrics.get("validation/best_reward"),
        })
    return rows


def session_data(session: Any) -> str | None:
    """The data the session trained on, as a path; None for the built-in data; PlotDataMissing if gone."""
    source = session.data.tags.get(TAG_DATA_SOURCE)
    if source in (None, BUILTIN_DATA):
        return None
    if source == "dataframe":
        raise PlotDataMissing("the session trained on a DataFrame passed in Python, which is not on the store")
    if not Path(source).is_file():
        raise PlotDataMissing(f"the data file the session trained on is not here: {source}")
    return source


def session_equity(tracker: Tracker, session_id: str) -> EquityCurve:
    """The session's model on the validation span of its data, rebuilt from the store and that data.

    The model is the one logged (and registered) on the session run; the config is that of the
    attempt that produced it. PlotDataMissing when any of them cannot be had.
    """
    from btc_ai.domain.data import data_fingerprint, load_candles
    from btc_ai.training.loop import validation_equity

    client = tracker.client
    session = client.get_run(session_id)
    if not any(a.path == "model" for a in client.list_artifacts(session_id)):
        raise PlotDataMissing(f"the session has no logged model (status {session.data.tags.get('btc_ai.status')})")
    runs = client.search_runs([session.info.experiment_id], f"tags.`{TAG_PARENT}` = '{session_id}'")
    done = sorted((r for r in runs if r.data.tags.get(TAG_KIND) == "attempt" and r.data.tags.get(TAG_OUTCOME) ==
                   "success"), key=lambda r: int(r.data.tags.get(TAG_ATTEMPT, 0)))
    if not done:
        raise PlotDataMissing("no attempt of the session succeeded")
    final = done[-1]
    source = session_data(session)
    try:
        candles = load_candles(source)[0] if source is not None else None
    except (OSError, ValueError) as exc:  # DataValidationError is a ValueError
        raise PlotDataMissing(f"the data file {source} cannot be read: {exc}") from None
    recorded = final.data.tags.get("btc_ai.data_fingerprint")
    if candles is not None and recorded and data_fingerprint(candles) != recorded:
        raise PlotDataMissing(f"the data file {source} changed since the training (fingerprint mismatch)")
    model = tracker.load_model(session_id)
    return validation_equity(model, TrainingConfig.from_dict(final.data.params), candles)


def write_session_plots(tracker: Tracker, ref: str, out_dir: str | Path | None = None, *,
                        equity: EquityCurve | Callable[[], EquityCurve] | None = None,
                        log: bool = True) -> SessionPlots:
    """Draw ``fitness_history.png`` and ``equity_curve.png`` for the session ``ref`` belongs to.

    Files go to ``out_dir`` (a temporary folder when None) and, with ``log``, under ``plots/`` of the
    session run, replacing earlier ones. ``equity`` (or a function returning it) spares the rebuild
    from the store when the caller holds it. The fitness plot is always drawn; when the equity curve
    cannot be had, ``equity_skipped`` says why.
    """
    from btc_ai.desk.plots import plot_equity_curve, plot_fitness_history

    session = resolve_session(tracker, ref)
    session_id = session.info.run_id
    result = SessionPlots(session_id)
    bucket = session.data.tags.get("btc_ai.bucket", "")
    with contextlib.ExitStack() as stack:
        folder = Path(out_dir) if out_dir is not None else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        attempts = fitness_attempts(tracker.client, session_id)
        result.paths.append(plot_fitness_history(attempts, folder / FITNESS_PNG,
                                                 title=f"fitness of every attempt, {bucket} session {session_id[:8]}"))
        try:
            if equity is None:
                curve = session_equity(tracker, session_id)
            else:
                curve = equity() if callable(equity) else equity
            span = f"{curve.index[0]:%Y-%m-%d} to {curve.index[-1]:%Y-%m-%d}"
            title = f"the session's model on the validation span ({span}), {bucket} session {session_id[:8]}"
            result.paths.append(plot_equity_curve(curve.equity, curve.buy_and_hold, curve.index, folder / EQUITY_PNG,
                                                  title=title))
        except PlotDataMissing as exc:
            result.equity_skipped = str(exc)
        except Exception as exc:  # whatever broke, the fitness plot stands and the reason is told
            result.equity_skipped = f"{type(exc).__name__}: {exc}"
        if log:
            for path in result.paths:
                tracker.log_artifact(session_id, path, PLOTS_DIR)
        if out_dir is None:
            result.paths = [Path(PLOTS_DIR) / p.name for p in result.paths]  # the files are gone; the artifacts stay
    return result
