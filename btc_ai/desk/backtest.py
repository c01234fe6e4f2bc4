"""`btc-ai backtest` / `btc_ai.backtest`: score a trained policy on candles it may never have seen, with the
cost model it was trained with, against buy-and-hold and flat, tracked as a run of kind ``backtest``."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from btc_ai.domain.backtest import BacktestResult, backtest_policy
from btc_ai.domain.config import TrainingConfig
from btc_ai.domain.data import data_fingerprint, load_candles
from btc_ai.domain.errors import UserInputError
from btc_ai.domain.policy import PolicyNet
from btc_ai.domain.policy_files import PolicyCard, load_policy
from btc_ai.tracking.run_model import (
    ARTIFACT_EQUITY_CSV,
    ARTIFACT_TRADES_CSV,
    BACKTEST_PLOT_FILE,
    CONTEXT_BACKTEST,
    DATAFRAME_DATA,
    MODEL_URI,
    DataInputs,
    DataSpan,
    RunModel,
)


@dataclass(frozen=True)
class TrackedBacktest:
    result: BacktestResult
    model: str
    run_id: str | None


def resolve_policy(ref: Any, runs: RunModel | None) -> tuple[PolicyNet, PolicyCard, str]:
    """The policy behind a model URI, a session run ID, a checkpoint file, or (net, card) already in hand."""
    if isinstance(ref, tuple):
        net, card = ref
        return net, card, "in-memory policy"
    ref = str(ref).strip()
    path = Path(ref)
    if path.is_file():
        return (*_from_checkpoint(path), str(path.resolve()))
    if path.is_dir() and (path / "policy.json").is_file():
        return (*load_policy(path), str(path.resolve()))
    if runs is None:
        raise UserInputError(f"{ref}: not a checkpoint file or policy folder here; a model URI or run ID needs the "
                             "tracking store")
    if MODEL_URI.match(ref):
        version = runs.model_version(ref)
        # a logged model's models:/<model_id>, or the run folder of a version registered before logged models
        run_id, folder = version.run_id, version.source.split(f"runs:/{version.run_id}/", 1)[-1]
        label = version.uri
    else:
        session = runs.resolve_session(ref)
        run_id, folder, label = session.run_id, session.model_path, f"session {session.run_id}"
        if folder is None:
            raise UserInputError(f"session {session.run_id} has no registered model (status {session.status}); "
                                 f"give a checkpoint file instead, e.g. from `btc-ai report {session.run_id}`")
    with tempfile.TemporaryDirectory() as tmp:
        net, card = load_policy(runs.download_policy(run_id, folder, tmp))
    return net, card, label


def _from_checkpoint(path: Path) -> tuple[PolicyNet, PolicyCard]:
    """The best policy of a training checkpoint (its best parameters, else its current ones)."""
    from btc_ai.training.checkpoint import load_checkpoint
    from btc_ai.training.loop import params_sha256

    state = load_checkpoint(path)
    config = TrainingConfig.restored(state.config)  # the checkpoint's sha256 was checked
    card = PolicyCard.of(config)
    params = state.es.best_params if state.es.best_params is not None else state.es.params
    net = PolicyNet(card.spec, card.feature_names).load_flat(np.asarray(params))
    return net, PolicyCard.of(config, params_sha256(params), checkpoint=str(path))


def backtest(model: Any, candles: Any, *, start: Any = None, end: Any = None, fee_bps: float | None = None,
             slippage_bps: float | None = None, tracking_uri: str | None = None, track: bool = False,
             plot: str | Path | None = None, date_format: str | None = None) -> TrackedBacktest:
    """Backtest ``model`` (a model URI, session run ID, checkpoint file, or a ``(PolicyNet, PolicyCard)``) on
    ``candles`` (a DataFrame or data file); with ``track`` the figures are logged as a ``backtest`` run."""
    runs = None
    if isinstance(model, str) and not Path(model).exists():
        from btc_ai.tracking.run_model.local import open_run_model

        runs = open_run_model(tracking_uri)
    net, card, label = resolve_policy(model, runs)
    frame, report = load_candles(candles, date_format=date_format) if not _is_clean(candles) else (candles, None)
    result = backtest_policy(net, card, frame, start=start, end=end, fee_bps=fee_bps, slippage_bps=slippage_bps)
    if plot is not None:
        _plot(result, label, plot)
        _tables(result, Path(plot).parent)
    run_id = None
    if track:
        if runs is None:
            from btc_ai.tracking.run_model.local import open_run_model

            runs = open_run_model(tracking_uri)
        run_id = _track(runs, result, label, frame, candles, plot, report)
    return TrackedBacktest(result, label, run_id)


def _is_clean(candles: Any) -> bool:
    import pandas as pd

    return isinstance(candles, pd.DataFrame) and isinstance(candles.index, pd.DatetimeIndex) and \
        candles.index.tz is not None


def _plot(result: BacktestResult, label: str, path: str | Path) -> Path:
    from btc_ai.domain.plots import plot_equity_curve

    return plot_equity_curve(result.equity, result.hold_equity, result.index, path,
                             title=f"{label}: backtest {result.start:%Y-%m-%d} to {result.end:%Y-%m-%d}",
                             rules=result.rule_equity)


def _tables(result: BacktestResult, folder: Path) -> list[Path]:
    """``trades.csv`` and ``equity.csv`` of the policy in ``folder`` (beside the plot)."""
    paths = [folder / ARTIFACT_TRADES_CSV, folder / ARTIFACT_EQUITY_CSV]
    for frame, path in zip((result.trades, result.equity_table), paths, strict=True):
        if frame is not None:
            frame.to_csv(path, index=False)
    return [p for p in paths if p.exists()]


def _track(runs: RunModel, result: BacktestResult, label: str, frame: Any, source: Any, plot: Any,
           report: Any) -> str:
    from btc_ai.domain.data.sources import source_text as recorded

    source_text = recorded(source) if isinstance(source, (str, Path, list, tuple)) else DATAFRAME_DATA
    fingerprint = data_fingerprint(frame)
    run_id = runs.open_backtest(result, model_uri=label, data_source=source_text, fingerprint=fingerprint)
    runs.log_data_inputs(run_id, DataInputs.of(source_text, fingerprint, report), [
        DataSpan(CONTEXT_BACKTEST, result.start.isoformat(), result.end.isoformat(), int(result.bars))])
    runs.record_backtest(run_id, result)
    with tempfile.TemporaryDirectory() as tmp:
        picture = Path(plot) if plot is not None else _plot(result, label, Path(tmp) / BACKTEST_PLOT_FILE)
        runs.add_plot(run_id, picture)
        for table in _tables(result, Path(tmp)):
            runs.add_plot(run_id, table)
    runs.finish(run_id)
    return run_id
