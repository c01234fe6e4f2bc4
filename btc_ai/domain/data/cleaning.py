"""clean_candles: the repairs a user asks for, dropping rows that cannot be traded on, deduplicating
and sorting, and saying what was done in words."""

from __future__ import annotations

import numpy as np
import pandas as pd

from btc_ai.domain.data.messages import _names
from btc_ai.domain.data.schema import PRICES, _frame, _utc_index
from btc_ai.domain.data.validation import _inconsistent
from btc_ai.domain.errors import DataValidationError


def clean_candles(df: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Drop rows that cannot be traded on, dedupe and sort; return the frame and what was done, in words."""
    src = "<DataFrame>"
    index = _utc_index(df, src, allow_nat=True)
    data = {k: pd.to_numeric(df[k], errors="coerce").to_numpy(np.float64) for k in PRICES if k in df}
    if len(data) < 4:
        missing = [k for k in PRICES if k not in data]
        raise DataValidationError(
            f"{src}: cannot clean, missing price columns {', '.join(missing)} (found: {_names(df.columns)}); "
            "rename them to open, high, low, close",
        )
    vol = pd.to_numeric(df["volume"], errors="coerce").to_numpy(np.float64) if "volume" in df else None
    o, h, lo, c = (data[k] for k in PRICES)
    actions: list[str] = []
    keep = np.ones(len(df), dtype=bool)

    def drop(mask: np.ndarray, why: str) -> None:
        nonlocal keep
        mask = mask & keep
        if mask.any():
            actions.append(f"dropped {int(mask.sum())} rows with {why}")
            keep &= ~mask

    with np.errstate(invalid="ignore"):
        drop(np.asarray(index.isna()), "a missing timestamp")
        drop(
            ~(np.isfinite(o) & np.isfinite(h) & np.isfinite(lo) & np.isfinite(c)),
            "missing or non-finite prices",
        )
        drop((o <= 0) | (h <= 0) | (lo <= 0) | (c <= 0), "non-positive prices")
        drop(_inconsistent(o, h, lo, c), "high < low or open/close outside [low, high]")
    if vol is None:
        vol = np.zeros(len(df))
    bad_vol = keep & ~(np.isfinite(vol) & (vol >= 0))
    if bad_vol.any():
        actions.append(f"set {int(bad_vol.sum())} missing or negative volumes to 0")
        vol = np.where(bad_vol, 0.0, vol)

    ns = index.asi8[keep]
    first = np.unique(ns, return_index=True)[1] if len(ns) else np.zeros(0, dtype=np.int64)
    if len(first) < len(ns):
        actions.append(f"dropped {len(ns) - len(first)} duplicate timestamps (kept the first)")
    if len(ns) > 1 and (np.diff(ns) < 0).any():
        actions.append("sorted rows by time")
    rows = np.flatnonzero(keep)[first]
    out = _frame(index.asi8[rows], o[rows], h[rows], lo[rows], c[rows], vol[rows])
    out.attrs.update(df.attrs)
    return out, actions
