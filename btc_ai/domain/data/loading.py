"""load_candles: a path or a frame through reader, column roles, parsing and the checks to one clean
frame and its DataReport."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from btc_ai.domain.data.columns import _resolve_columns
from btc_ai.domain.data.dates import normalize_date_format
from btc_ai.domain.data.messages import _bad, _Where
from btc_ai.domain.data.parsing import (
    _parse_numbers,
    _parse_volume,
    _reject_bad_numbers,
    _reject_bad_timestamps,
    _timestamps,
)
from btc_ai.domain.data.readers import _table_from_bytes, _table_from_frame
from btc_ai.domain.data.report import DataReport
from btc_ai.domain.data.schema import LAYOUT_ATTR, PRICES, _frame
from btc_ai.domain.data.table import _Table
from btc_ai.domain.data.validation import (
    _check_finite,
    _check_length,
    _check_prices,
    _interval_and_gaps,
)
from btc_ai.domain.errors import DataValidationError
from btc_ai.domain.files import read_regular_file


def load_candles(
    source: str | Path | pd.DataFrame, *, min_rows: int | None = None, date_format: str | None = None
) -> tuple[pd.DataFrame, DataReport]:
    """Read candles from a CSV/Parquet path or a DataFrame; return the clean frame and its report.

    Raises DataValidationError (one line: what, where, how to fix) for data that cannot be used (a folder,
    a pipe or another file that is not a regular file, an unreadable file included), and lets
    FileNotFoundError through for a missing file. Choices worth knowing:

    - text dates such as ``08.06.2021`` are read the way the file's own evidence says: day first when a
      first field exceeds 12, month first when a second one does, else the order whose bars fall on a
      regular grid; a file that cannot tell is refused. ``date_format`` states it instead: ``"day-first"``,
      ``"month-first"``, ``"iso"`` or a strftime pattern (``"%d.%m.%Y %H:%M"``); how the dates were read
      is in the report (``date_reading``);

    - a short (cut-off) LAST row is dropped and counted in ``truncated_rows_dropped``; a short row
      anywhere else is rejected with its line number;
    - rows sharing a timestamp keep the first occurrence in the file, whatever the later ones hold;
    - naive timestamps are read as UTC; epoch numbers are s/ms/us/ns by magnitude, value by value, so a
      file that switched units part-way (Binance spot dumps in 2025) still loads;
    - steps that are whole multiples of the interval are gaps (counted), except a run of 12 or more
      identical longer steps, which is a second timeframe and rejected as a mixed interval.
    """
    if isinstance(source, pd.DataFrame):
        table = _table_from_frame(source, "<DataFrame>", source.attrs.get(LAYOUT_ATTR, "dataframe"))
    else:
        path = Path(source)
        table = _table_from_bytes(read_regular_file(path, "data file", DataValidationError), path)
    return _build(table, min_rows, normalize_date_format(date_format))


def _build(table: _Table, min_rows: int | None, date_format: str | None) -> tuple[pd.DataFrame, DataReport]:
    roles = _resolve_columns(table)
    where = _Where(table.labels, table.unit, table.source)
    decimal_comma = table.delimiter != ","
    prices = {k: _parse_numbers(table.values[roles[k]], decimal_comma) for k in PRICES}
    empty = np.logical_and.reduce([prices[k][1] for k in PRICES])
    keep = ~empty
    _reject_bad_numbers(prices, keep, table, roles, where)
    volume = _parse_volume(table, roles, keep, decimal_comma, where)
    ns, bad_ts, reading = _timestamps(table, roles, date_format)
    _reject_bad_timestamps(ns, bad_ts, keep, table, roles, where)

    o, h, lo, c = (prices[k][0][keep] for k in PRICES)
    volume, ns, labels = volume[keep], ns[keep], table.labels[keep]
    where = _Where(labels, table.unit, table.source)
    if not len(ns):
        raise _bad(table.source, "has no rows with prices (every row is empty or NaN); export real candles")
    _check_finite(o, h, lo, c, where)
    _check_prices(o, h, lo, c, volume, where)

    unsorted = bool(len(ns) > 1 and (np.diff(ns) < 0).any())
    first = np.unique(ns, return_index=True)[1]  # first occurrence of each timestamp, in time order
    duplicates = len(ns) - len(first)
    ns, labels = ns[first], labels[first]
    o, h, lo, c, volume = o[first], h[first], lo[first], c[first], volume[first]
    _check_length(len(ns), min_rows, table.source)
    interval, gaps = _interval_and_gaps(ns, _Where(labels, table.unit, table.source))

    frame = _frame(ns, o, h, lo, c, volume)
    report = DataReport(
        source=table.source,
        layout=table.layout,
        rows=len(frame),
        start=frame.index[0],
        end=frame.index[-1],
        interval=interval,
        gaps=gaps,
        duplicates_dropped=duplicates,
        empty_rows_dropped=int(empty.sum()) + table.blank_rows,
        was_unsorted=unsorted,
        truncated_rows_dropped=table.truncated,
        date_reading=reading.describe() if reading is not None else "",
    )
    return frame, report
