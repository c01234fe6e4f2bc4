"""The session's pictures as PNG files: fitness history of every attempt, and the best policy's equity curve.

Pure functions of plain data (numbers, labels, timestamps): they know neither MLflow nor the trainer,
so the recovery layer, the CLI and the notebook all draw the same figures. They draw on a bare
:class:`~matplotlib.figure.Figure`, never through pyplot, so no GUI backend is needed and a notebook's
own backend is left alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from btc_ai.domain.metric_names import METRIC_FITNESS_MAX, METRIC_FITNESS_MEAN

FIGSIZE = (10.0, 5.0)  # inches
DPI = 100

# fixed margins: a layout engine would measure every label first, doubling the drawing time
_MARGINS = {"left": 0.1, "right": 0.98, "top": 0.93, "bottom": 0.1}
_OUTCOME_MARKERS = {"recoverable_error": "X", "unrecoverable_error": "X", "interrupted": "s"}


def fitness_figure(attempts: Sequence[Mapping[str, Any]], title: str | None = None) -> Any:
    """Every attempt's ``fitness/mean`` per global generation on one axis, each in its own colour.

    An attempt is a mapping with ``attempt``, ``outcome``, ``steps`` and ``fitness_mean`` (same length),
    and optionally ``fitness_max``, ``start_generation``, ``repair`` (the rule that preceded it) and
    ``resumed_from``. Where a retry, a repair or a resume starts, a dotted vertical line carries a short
    label; an attempt that ended in an error ends with a cross.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    fig.subplots_adjust(**_MARGINS)
    ax = fig.add_subplot()
    colours = [f"C{k % 10}" for k in range(len(attempts))]
    for k, (attempt, colour) in enumerate(zip(attempts, colours, strict=True)):
        steps = np.asarray(_or_empty(attempt.get("steps")), dtype=float)
        mean = np.asarray(_or_empty(attempt.get("fitness_mean")), dtype=float)
        label = f"attempt {attempt['attempt']} ({attempt.get('outcome') or '?'})"
        if len(steps):
            ax.plot(steps, mean, color=colour, marker="o" if len(steps) < 40 else None, markersize=3, label=label)
            best = attempt.get("fitness_max")
            if best is not None and len(best) == len(steps):
                ax.plot(steps, np.asarray(best, dtype=float), color=colour, alpha=0.35, linestyle="--", linewidth=1)
            marker = _OUTCOME_MARKERS.get(str(attempt.get("outcome")))
            if marker:
                ax.plot(steps[-1:], mean[-1:], color="black", marker=marker, markersize=8, linestyle="none")
        else:
            ax.plot([], [], color=colour, label=label + ": no generation")
        start = _start_of(attempt, steps)
        note = _start_label(attempt, first=k == 0)
        if note and start is not None:
            ax.axvline(start, color=colour, linestyle=":", linewidth=1.5)
            ax.annotate(note, xy=(start, 1.0), xycoords=("data", "axes fraction"), xytext=(3, -3),
                        textcoords="offset points", rotation=90, va="top", ha="left", fontsize=8, color=colour)
    ax.set_xlabel("generation (global)")
    ax.set_ylabel(f"{METRIC_FITNESS_MEAN} (dashed: {METRIC_FITNESS_MAX})")
    ax.set_title(title or "fitness history of every attempt")
    ax.grid(True, alpha=0.3)
    ax.xaxis.get_major_locator().set_params(integer=True)
    if attempts:
        ax.legend(loc="lower right", fontsize=8)
    return fig


def plot_fitness_history(attempts: Sequence[Mapping[str, Any]], path: str | Path, title: str | None = None) -> Path:
    """:func:`fitness_figure` saved as a PNG at ``path`` (folders created); returns the path."""
    return _save(fitness_figure(attempts, title), path)


def equity_figure(equity: np.ndarray, buy_and_hold: np.ndarray, index: Sequence[Any],
                  title: str | None = None, test: tuple[np.ndarray, np.ndarray, Sequence[Any]] | None = None, *,
                  rules: Mapping[str, np.ndarray] | None = None, test_rules: Mapping[str, np.ndarray] | None = None) -> Any:
    """Top: the policy's equity against buy-and-hold, flat (1.0) and the other rule baselines (``rules``: label
    -> equity, same costs); bottom: the policy's drawdown. With ``test`` (equity, buy-and-hold, index of the
    held-out span) and ``test_rules`` a second column shows the test span, labelled out of sample, beside the
    validation span, labelled used for selection."""
    from matplotlib.figure import Figure

    columns = [("validation span (used for selection)", equity, buy_and_hold, index, rules or {})]
    if test is not None:
        columns.append(("test span (out of sample: never used for any choice)", *test, test_rules or {}))
    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    fig.subplots_adjust(hspace=0.08, wspace=0.18, **_MARGINS)
    if test is not None:
        fig.subplots_adjust(top=0.86)  # room for the figure's title above the columns' own
    axes = fig.subplots(2, len(columns), sharex="col", height_ratios=[3, 1], squeeze=False)
    for k, (label, eq, bh, idx, others) in enumerate(columns):
        _equity_column(axes[0][k], axes[1][k], np.asarray(eq, dtype=float), np.asarray(bh, dtype=float), idx,
                       label if test is not None else None, first=k == 0, rules=others)
    if title:
        fig.suptitle(title, fontsize=10, y=0.985) if test is not None else axes[0][0].set_title(title)
    elif test is None:
        axes[0][0].set_title("best policy on the validation span")
    return fig


def _equity_column(top: Any, bottom: Any, equity: np.ndarray, hold: np.ndarray, index: Sequence[Any],
                   label: str | None, *, first: bool, rules: Mapping[str, np.ndarray]) -> None:
    x = _time_axis(index) if len(index) == len(equity) else np.arange(len(equity))
    top.plot(x, equity, color="C0", linewidth=1.2, label=f"policy {equity[-1] - 1:+.2%}")
    top.plot(x, hold, color="C1", linewidth=1.0, alpha=0.8, label=f"buy-and-hold {hold[-1] - 1:+.2%}")
    for k, (name, curve) in enumerate(rules.items()):
        curve = np.asarray(curve, dtype=float)
        top.plot(x, curve, color=f"C{k + 4}", linewidth=0.9, alpha=0.7, linestyle="-.", label=f"{name} {curve[-1] - 1:+.2%}")
    top.axhline(1.0, color="grey", linestyle="--", linewidth=1.0, label="flat +0.00%")
    if first:
        top.set_ylabel("equity (start = 1)")
    if label:
        top.set_title(label, fontsize=9)
    top.legend(loc="upper left", fontsize=8)
    top.grid(True, alpha=0.3)
    drawdown = equity / np.maximum.accumulate(equity) - 1.0
    bottom.fill_between(x, drawdown, 0.0, color="C3", alpha=0.4, linewidth=0)
    bottom.plot(x, drawdown, color="C3", linewidth=0.8)
    if first:
        bottom.set_ylabel("drawdown")
    bottom.yaxis.set_major_formatter(_percent())
    bottom.grid(True, alpha=0.3)
    if x.dtype.kind == "M":
        from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

        locator = AutoDateLocator()
        bottom.xaxis.set_major_locator(locator)
        bottom.xaxis.set_major_formatter(ConciseDateFormatter(locator))


def plot_equity_curve(equity: np.ndarray, buy_and_hold: np.ndarray, index: Sequence[Any], path: str | Path,
                      title: str | None = None, test: tuple[np.ndarray, np.ndarray, Sequence[Any]] | None = None, *,
                      rules: Mapping[str, np.ndarray] | None = None,
                      test_rules: Mapping[str, np.ndarray] | None = None) -> Path:
    """:func:`equity_figure` saved as a PNG at ``path`` (folders created); returns the path."""
    return _save(equity_figure(equity, buy_and_hold, index, title, test, rules=rules, test_rules=test_rules), path)


def _or_empty(values: Any) -> Any:
    return () if values is None else values


def _start_of(attempt: Mapping[str, Any], steps: np.ndarray) -> float | None:
    if attempt.get("start_generation") is not None:
        return float(attempt["start_generation"]) + 0.5
    return float(steps[0]) - 0.5 if len(steps) else None


def _start_label(attempt: Mapping[str, Any], first: bool) -> str | None:
    """``resume``, the repair rule, or ``retry``; None for a session's plain first attempt."""
    parts = []
    if attempt.get("resumed_from"):
        parts.append("resume")
    if attempt.get("repair"):
        parts.append(f"repair: {attempt['repair']}")
    elif not first and not parts:
        parts.append("retry")
    return ", ".join(parts) or None


def _time_axis(index: Sequence[Any]) -> np.ndarray:
    """Timestamps as naive UTC datetime64 (matplotlib converts those in one step, Timestamps one by one)."""
    import pandas as pd

    try:
        times = pd.DatetimeIndex(index)
    except (TypeError, ValueError):
        return np.asarray(index)
    return (times.tz_convert("UTC").tz_localize(None) if times.tz is not None else times).to_numpy()


def _percent() -> Any:
    from matplotlib.ticker import PercentFormatter

    return PercentFormatter(1.0)  # decimals as the range needs: a 0.07% drawdown is not -0%


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", pil_kwargs={"compress_level": 1})  # fastest: the files stay small
    fig.clear()  # a bare Figure is not in pyplot's registry: nothing else holds it once dropped
    return path
