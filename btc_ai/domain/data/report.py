"""DataReport, what a load found and repaired, and format_interval, the short way it writes a timeframe."""

from __future__ import annotations

from dataclasses import dataclass, field
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
    duplicates_disagreeing: int = 0  # of the duplicates dropped, those whose prices differ from the kept row
    files: tuple[Any, ...] = ()  # sources.DataFile of every file read (one for a file, many for a folder)
    outlier_bars: int = 0
    outlier_action: str = ""  # "repaired" or "kept" (refused ones never load)
    outliers: tuple[dict[str, Any], ...] = ()  # the first few, with their rows (quality.check_quality)
    zero_volume_stretches: int = 0
    zero_volume: tuple[dict[str, Any], ...] = ()
    outages: tuple[dict[str, Any], ...] = field(default=())  # no bars for more than a day

    @property
    def files_sha256(self) -> str:
        """One sha256 for the set of files read ("" for a DataFrame)."""
        from btc_ai.domain.data.sources import files_digest

        return files_digest([f.sha256 for f in self.files]) if self.files else ""

    def repairs(self) -> list[str]:
        done = []
        if self.duplicates_dropped:
            differ = f", {self.duplicates_disagreeing} of them with other prices" if self.duplicates_disagreeing else ""
            done.append(f"dropped {self.duplicates_dropped} duplicate timestamps (kept the first{differ})")
        if self.outlier_bars and self.outlier_action == "repaired":
            done.append(f"clamped {self.outlier_bars} outlier bars to the neighbouring closes (at {self._first()})")
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
            "duplicates_disagreeing": int(self.duplicates_disagreeing),
            "files": [f.to_dict() for f in self.files],
            "files_sha256": self.files_sha256,
            "outlier_bars": int(self.outlier_bars),
            "outlier_action": self.outlier_action,
            "outliers": list(self.outliers),
            "zero_volume_stretches": int(self.zero_volume_stretches),
            "zero_volume": list(self.zero_volume),
            "outages": list(self.outages),
        }

    def notes(self) -> list[str]:
        """What a user should know that was not repaired: kept outliers, zero-volume stretches, outages."""
        said = []
        if self.outlier_bars and self.outlier_action == "kept":
            said.append(f"{self.outlier_bars} outlier bars kept as they are (at {self._first()})")
        if self.zero_volume_stretches:
            first = self.zero_volume[0]
            said.append(f"{self.zero_volume_stretches} zero-volume stretches (the first {first['from']} to "
                        f"{first['to']}, {first['bars']} bars)")
        if self.outages:
            first = self.outages[0]
            said.append(f"{len(self.outages)} outages over a day (the first after {first['after']}, "
                        f"{first['missing']} without bars)")
        return said

    def _first(self) -> str:
        entry = self.outliers[0]
        unit = next((u for u in ("line", "row") if u in entry), "row")
        more = f" and {self.outlier_bars - 1} more" if self.outlier_bars > 1 else ""
        return f"{entry['source']} {unit} {entry[unit]}{more}"

    def summary(self) -> str:
        fixes = "; ".join(self.repairs()) or "none"
        notes = "".join(f"; {note}" for note in self.notes())
        source = self.source if len(self.files) <= 1 else f"{self.source} ({len(self.files)} files)"
        return (
            f"{self.layout} {source}: {self.rows} rows of {format_interval(self.interval)} candles, "
            f"{self.start:%Y-%m-%d %H:%M} to {self.end:%Y-%m-%d %H:%M} UTC, {self.gaps} missing bars; "
            f"repairs: {fixes}" + (f"; {self.date_reading}" if self.date_reading else "") + notes
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
