"""Date text to UTC nanoseconds, and the one decision text dates need: is ``08.06.2021`` the 8th of June
(day first) or the 6th of August (month first)?

The file's own evidence decides: a first field above 12 can only be a day, a second field above 12
only a day too; when no field says so, the reading whose bars fall on a regular grid wins (a 5-minute
series read the wrong way round jumps a month at every midnight). When nothing decides, the file is
refused with one line saying how to state the format (``date_format=`` / ``--date-format``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from btc_ai.domain.data.messages import _snippet, _where
from btc_ai.domain.errors import DataValidationError, UserInputError

DAY_FIRST, MONTH_FIRST, ISO = "day-first", "month-first", "iso"
_SPELLINGS = {
    "dayfirst": DAY_FIRST, "dmy": DAY_FIRST, "dd/mm/yyyy": DAY_FIRST, "dd.mm.yyyy": DAY_FIRST, "european": DAY_FIRST,
    "eu": DAY_FIRST, "monthfirst": MONTH_FIRST, "mdy": MONTH_FIRST, "mm/dd/yyyy": MONTH_FIRST, "us": MONTH_FIRST,
    "american": MONTH_FIRST, "iso": ISO, "iso8601": ISO, "ymd": ISO, "yearfirst": ISO, "yyyy-mm-dd": ISO,
}  # fmt: skip
DATE_FORMAT_HELP = "day-first, month-first, iso, or a strftime pattern such as '%d.%m.%Y %H:%M'"
_STATE_IT = "state the format with --date-format day-first or month-first (date_format= in load_candles)"
# the leading day and month of numeric dates: 08.06.2021, 8/6/21, 06-08-2021 13:05
_NUMERIC_DATE = r"^\s*(\d{1,2})[./\-](\d{1,2})[./\-](\d{2,4})(?!\d)"


def normalize_date_format(value: str | None) -> str | None:
    """``day-first``, ``month-first``, ``iso``, a strftime pattern, or None (the file decides).

    Raises UserInputError for anything else, naming what is allowed."""
    if value is None:
        return None
    text = str(value).strip()
    if "%" in text:
        return text
    key = text.lower().replace("_", "").replace(" ", "")
    found = _SPELLINGS.get(key) or _SPELLINGS.get(key.replace("-", ""))
    if found is None:
        raise UserInputError(f"date format {value!r} is not known; use {DATE_FORMAT_HELP}")
    return found


@dataclass(frozen=True)
class DateReading:
    """How the text dates of a file were read: the order (or pattern) used and the evidence for it."""

    order: str
    evidence: str

    def describe(self) -> str:
        return f"dates read {self.order} ({self.evidence})"


def parse_date_text(
    strings: pd.Series, missing: np.ndarray, labels: np.ndarray, unit: str, source: str, date_format: str | None
) -> tuple[pd.Series, DateReading | None]:
    """Parse date strings to UTC timestamps (NaT where unreadable) and say how ambiguous ones were read."""
    if date_format not in (None, DAY_FIRST, MONTH_FIRST, ISO):  # a strftime pattern: exactly that
        parsed = pd.to_datetime(strings, utc=True, format=date_format, errors="coerce")
        return parsed, DateReading(repr(date_format), "as stated")
    parsed = pd.to_datetime(strings, utc=True, format="ISO8601", errors="coerce")
    failed = parsed.isna().to_numpy() & ~missing
    if not failed.any() or date_format == ISO:
        return parsed, None
    rest = strings[failed]
    first, second, numeric = _day_and_month_fields(rest)
    if not numeric.any():  # odd but unambiguous formats ("2021.06.01 00:00", "Jun 8, 2021 13:05")
        return parsed.where(~failed, pd.to_datetime(rest, utc=True, format="mixed", errors="coerce")), None
    rest_labels = labels[failed]
    if date_format is not None:
        reading = DateReading(date_format, "as stated")
    else:
        reading = _decide(rest, first, second, numeric, rest_labels, unit, source, parsed, failed)
    retry = _ordered(rest, reading.order == DAY_FIRST)
    # a value the stated order cannot hold (a month above 12) is unreadable, never silently swapped
    impossible = numeric & ((second > 12) if reading.order == DAY_FIRST else (first > 12))
    if impossible.any():
        at = int(np.flatnonzero(impossible)[0])
        other = MONTH_FIRST if reading.order == DAY_FIRST else DAY_FIRST
        raise DataValidationError(
            f"{source}: the dates are not {reading.order}: {_snippet(rest.iloc[at])} at {unit} {rest_labels[at]} "
            f"would have a month above 12 (at {_where(rest_labels[impossible], unit)}); the file reads {other}: "
            f"state --date-format {other}, or leave it out and let the file decide",
            rows=[int(x) for x in rest_labels[impossible]],
        )
    return parsed.where(~failed, retry), reading


def _day_and_month_fields(strings: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first two numbers of numeric dates (0 elsewhere) and where a value is one; each distinct date
    prefix is looked at once (a day of 5-minute bars shares one)."""
    codes, prefixes = pd.factorize(strings.astype(str).str.slice(0, 12))
    fields = pd.Series(prefixes, dtype=object).str.extract(_NUMERIC_DATE)
    first = pd.to_numeric(fields[0], errors="coerce").fillna(0).to_numpy(np.int64)
    second = pd.to_numeric(fields[1], errors="coerce").fillna(0).to_numpy(np.int64)
    numeric = fields[0].notna().to_numpy()
    return first[codes], second[codes], numeric[codes]


def _ordered(strings: pd.Series, dayfirst: bool) -> pd.Series:
    """Dates in one field order: the pattern of the first value (fast), then any stragglers one by one."""
    from pandas.tseries.api import guess_datetime_format

    first = next((s for s in strings if isinstance(s, str) and s.strip()), "")
    pattern = guess_datetime_format(first.strip(), dayfirst=dayfirst) if first else None
    out = pd.Series(pd.NaT, index=strings.index, dtype="datetime64[ns, UTC]")
    if pattern:
        out = pd.to_datetime(strings, utc=True, format=pattern, errors="coerce")
    left = out.isna().to_numpy()
    if left.any():
        out = out.where(~left, pd.to_datetime(strings[left], utc=True, format="mixed", dayfirst=dayfirst,
                                              errors="coerce"))
    return out


def _decide(rest: pd.Series, first: np.ndarray, second: np.ndarray, numeric: np.ndarray, labels: np.ndarray,
            unit: str, source: str, parsed: pd.Series, failed: np.ndarray) -> DateReading:
    day_first_at = np.flatnonzero(numeric & (first > 12))
    month_first_at = np.flatnonzero(numeric & (second > 12))
    if len(day_first_at) and len(month_first_at):
        d, m = int(day_first_at[0]), int(month_first_at[0])
        raise DataValidationError(
            f"{source}: dates in both orders: {unit} {labels[d]} reads {_snippet(rest.iloc[d])} (day first) but "
            f"{unit} {labels[m]} reads {_snippet(rest.iloc[m])} (month first); keep one date format per file",
            rows=[int(labels[d]), int(labels[m])],
        )
    if len(day_first_at):
        at = int(day_first_at[0])
        return DateReading(DAY_FIRST, f"{_snippet(rest.iloc[at])} at {unit} {labels[at]} has a day above 12")
    if len(month_first_at):
        at = int(month_first_at[0])
        return DateReading(MONTH_FIRST, f"{_snippet(rest.iloc[at])} at {unit} {labels[at]} has a day above 12")
    scores = {order: _grid_score(parsed.where(~failed, _ordered(rest, order == DAY_FIRST)))
              for order in (DAY_FIRST, MONTH_FIRST)}
    if scores[DAY_FIRST] != scores[MONTH_FIRST]:  # fewer irregular steps, then fewer missing bars
        order = min(scores, key=lambda o: scores[o])
        other = MONTH_FIRST if order == DAY_FIRST else DAY_FIRST
        (won, _), (lost, lost_bars) = scores[order], scores[other]
        return DateReading(order, f"no day above 12; {other} would leave {lost:,} irregular steps and {lost_bars:,} "
                           f"missing bars, {order} {won:,} irregular steps")
    if _same_instants(rest):
        return DateReading(DAY_FIRST, "day and month agree in every date")
    sample = rest.iloc[int(np.flatnonzero(numeric)[0])]
    rows = [int(x) for x in labels[numeric][:5]]
    raise DataValidationError(
        f"{source}: dates such as {_snippet(sample)} at {_where(rows, unit)} may be day-first or month-first and "
        f"nothing in the file tells which (no day above 12, both readings equally regular); {_STATE_IT}",
        rows=rows,
    )


def _same_instants(rest: pd.Series) -> bool:
    a, b = _ordered(rest, True), _ordered(rest, False)
    return bool((a.isna() == b.isna()).all() and (a.dropna() == b.dropna()).all())


def _grid_score(stamps: pd.Series) -> tuple[int, int]:
    """(steps off the dominant step, missing bars) of the distinct timestamps in time order."""
    ns = np.unique(pd.DatetimeIndex(stamps.dropna()).as_unit("ns").asi8)
    steps = np.diff(ns)
    if not len(steps):
        return 0, 0
    values, counts = np.unique(steps, return_counts=True)
    modal = int(values[counts.argmax()])
    irregular = int((steps != modal).sum())
    missing = int(np.maximum(steps // modal - 1, 0).sum())
    return irregular, missing
