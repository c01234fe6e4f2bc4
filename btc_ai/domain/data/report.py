"""DataReport, what a load found and repaired, and format_interval, the short way it writes a timeframe."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class DataReport:
    """What was loaded and which safe repairs were applied on the way."""

    source: str
    layout: str
    rows: int
    start: pd.Timestamp
    end: pd.Timestamp
    interval: pd.Timedelta
    gaps: int = 0
    duplicates_dropped: int = 0
    empty_rows_dropped: int = 0
    was_unsorted: bool = False
    truncated_rows_dropped: int = 0
    date_reading: str = ""  # how ambiguous date text was read, and why ("dates read day-first (...)")

    def repairs(self) -> list[str]:
        done = []
        if self.duplicates_dropped:
            done.append(f"dropped {self.duplicates_dropped} duplicate timestamps (kept the first)")
        if self.empty_rows_dropped:
            done.append(f"dropped {self.empty_rows_dropped} empty rows")
        if self.was_unsorted:
            done.append("sorted rows by time")
        if self.truncated_rows_dropped:
            done.append(f"dropped {self.truncated_rows_dropped} cut-off last row")
        return done

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "layout": self.layout,
            "rows": int(self.rows),
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "interval": format_interval(self.interval),
            "interval_seconds": float(self.interval.total_seconds()),
            "gaps": int(self.gaps),
            "duplicates_dropped": int(self.duplicates_dropped),
            "empty_rows_dropped": int(self.empty_rows_dropped),
            "was_unsorted": bool(self.was_unsorted),
            "truncated_rows_dropped": int(self.truncated_rows_dropped),
            "date_reading": self.date_reading,
        }

    def summary(self) -> str:
        fixes = "; ".join(self.repairs()) or "none"
        return (
            f"{self.layout} {self.source}: {self.rows} rows of {format_interval(self.interval)} candles, "
            f"{self.start:%Y-%m-%d %H:%M} to {self.end:%Y-%m-%d %H:%M} UTC, {self.gaps} missing bars; "
            f"repairs: {fixes}" + (f"; {self.date_reading}" if self.date_reading else "")
        )


def format_interval(interval: pd.Timedelta) -> str:
    """'5min', '1h', '1D' rather than '0 days 00:05:00'."""
    if interval > pd.Timedelta(0) and interval % pd.Timedelta("1D") == pd.Timedelta(0):
        return f"{interval.days}D"
    try:
        text = pd.tseries.frequencies.to_offset(interval).freqstr
    except (ValueError, TypeError):
        return str(interval)
    return text if text[:1].isdigit() else f"1{text}"
