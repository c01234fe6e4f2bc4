"""Data quality a user can trust: bars whose open, high or low are far outside their neighbours (reported,
and repaired or refused as asked), zero-volume stretches and exchange outages (reported).

The outlier rule: a bar's neighbours are the previous bar's close and its own close (the first bar has only
its close). Its open, high or low is an outlier when it lies more than ``OUTLIER_RATIO`` (1.5) times above
the higher of them, or below the lower of them divided by 1.5. Real moves do not do that (a crash lowers the
close with the low); a stray print does (the shared hourly file's first bar: open 16,199.91, close 4,308.83).
A close is never judged: a wrong close moves the next bar's neighbours with it. Repair clamps each outlier
value into the neighbours' range (an open to the previous close or its close, a high to the higher of them,
a low to the lower), which keeps every bar consistent (low <= open, close <= high) and is deterministic.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from btc_ai.domain.data.messages import _Where
from btc_ai.domain.errors import UserInputError

OUTLIER_RATIO = 1.5
OUTLIER_CHOICES = ("repair", "refuse", "keep")
OUTLIER_VARIABLE = "BTC_AI_OUTLIER_BARS"  # the default of load_candles(outlier_bars=) and --outlier-bars
OUTAGE = pd.Timedelta("1D")  # no bars for longer than this is an outage worth reporting
_ZERO_RUN_BARS, _ZERO_RUN_SPAN = 3, pd.Timedelta("1h")  # a zero-volume stretch: this many bars and this long
_LISTED = 20  # entries a report lists of each kind (the counts are whole)


def outlier_choice(value: str | None) -> str:
    """``repair`` (the default), ``refuse`` or ``keep``; None reads BTC_AI_OUTLIER_BARS."""
    text = value if value is not None else os.environ.get(OUTLIER_VARIABLE) or "repair"
    choice = str(text).strip().lower()
    if choice not in OUTLIER_CHOICES:
        where = "--outlier-bars" if value is not None else OUTLIER_VARIABLE
        raise UserInputError(f"{where} {text!r} is not known; use repair (clamp outlier bars to the neighbouring "
                             "closes), refuse, or keep")
    return choice


@dataclass
class Quality:
    """What the quality checks found (and did)."""

    outlier_bars: int = 0
    outlier_action: str = ""  # "repaired" or "kept"
    outliers: list[dict[str, Any]] = field(default_factory=list)
    zero_volume: list[dict[str, Any]] = field(default_factory=list)
    zero_volume_stretches: int = 0
    outages: list[dict[str, Any]] = field(default_factory=list)


def check_quality(ns: np.ndarray, prices: list[np.ndarray], volume: np.ndarray, interval: pd.Timedelta,
                  where: _Where, choice: str) -> Quality:
    """Find outliers (repairing ``prices`` = [open, high, low, close] in place when ``choice`` is repair, or
    refusing), zero-volume stretches and outages."""
    o, h, lo, c = prices
    bad_open, bad_high, bad_low = _outliers(o, h, lo, c)
    bad = bad_open | bad_high | bad_low
    quality = Quality()
    if bad.any():
        if choice == "refuse":
            i = int(np.flatnonzero(bad)[0])
            raise where.fail(
                f"open, high or low more than {OUTLIER_RATIO:g}x outside the previous and own close (outlier bars)",
                bad, "fix those bars, or let them be clamped to the neighbouring closes (--outlier-bars repair, "
                     f"{OUTLIER_VARIABLE}=repair, load_candles(outlier_bars='repair'))",
                example=f"open={o[i]:g} high={h[i]:g} low={lo[i]:g} close={c[i]:g}, previous close "
                        f"{c[i - 1] if i else float('nan'):g}")
        quality.outlier_bars = int(bad.sum())
        quality.outlier_action = "repaired" if choice == "repair" else "kept"
        before = {k: v[bad].copy() for k, v in zip(("open", "high", "low"), (o, h, lo), strict=True)}
        if choice == "repair":
            low_side, high_side = _neighbours(c)
            o[:] = np.where(bad_open, np.clip(o, low_side, high_side), o)
            h[:] = np.where(bad_high, high_side, h)
            lo[:] = np.where(bad_low, low_side, lo)
        quality.outliers = _listed_outliers(np.flatnonzero(bad), ns, before, (o, h, lo, c), where)
    quality.zero_volume, quality.zero_volume_stretches = _zero_volume(ns, volume, interval)
    quality.outages = _outages(ns, interval)
    return quality


def _neighbours(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    previous = np.r_[c[:1], c[:-1]]
    return np.minimum(previous, c), np.maximum(previous, c)


def _outliers(o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, ...]:
    low_side, high_side = _neighbours(c)
    top, bottom = high_side * OUTLIER_RATIO, low_side / OUTLIER_RATIO
    return (o > top) | (o < bottom), h > top, lo < bottom


def _listed_outliers(positions: np.ndarray, ns: np.ndarray, before: dict[str, np.ndarray],
                     now: tuple[np.ndarray, ...], where: _Where) -> list[dict[str, Any]]:
    listed = []
    for k, i in enumerate(positions[:_LISTED]):
        source, label = where.place(int(i))
        entry = {"source": source, where.unit: label, "timestamp": pd.Timestamp(int(ns[i]), tz="UTC").isoformat(),
                 **{name: float(values[k]) for name, values in before.items()}, "close": float(now[3][i])}
        changed = {name: float(v[i]) for name, v in zip(("open", "high", "low"), now, strict=False)
                   if float(v[i]) != entry[name]}
        if changed:
            entry["repaired_to"] = changed
        listed.append(entry)
    return listed


def _zero_volume(ns: np.ndarray, volume: np.ndarray, interval: pd.Timedelta) -> tuple[list[dict[str, Any]], int]:
    zero = np.r_[False, volume == 0, False]
    edges = np.flatnonzero(np.diff(zero.astype(np.int8)))
    starts, ends = edges[::2], edges[1::2]  # [start, end) runs of zero volume
    bars = ends - starts
    span = (ns[ends - 1] - ns[starts]) + interval.value
    long = (bars >= _ZERO_RUN_BARS) & (span >= _ZERO_RUN_SPAN.value)
    runs = [{"from": _iso(ns[s]), "to": _iso(ns[e - 1]), "bars": int(e - s)}
            for s, e in zip(starts[long][:_LISTED], ends[long][:_LISTED], strict=True)]
    return runs, int(long.sum())


def _outages(ns: np.ndarray, interval: pd.Timedelta) -> list[dict[str, Any]]:
    missing = np.diff(ns) - interval.value
    at = np.flatnonzero(missing > OUTAGE.value)
    return [{"after": _iso(ns[i]), "resumes": _iso(ns[i + 1]), "missing": str(pd.Timedelta(int(missing[i])))}
            for i in at]


def _iso(ns: int) -> str:
    return pd.Timestamp(int(ns), tz="UTC").isoformat()
