"""From a table to candles in two steps: ``parse`` turns one table's values into checked rows (every refusal
names its file and line), ``finish`` turns rows — of one file or joined from many — into the clean frame and
its DataReport (duplicates, length, interval and gaps, quality)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from btc_ai.domain.data.columns import _resolve_columns
from btc_ai.domain.data.messages import _bad, _Where
from btc_ai.domain.data.parsing import (
    _parse_numbers,
    _parse_volume,
    _reject_bad_numbers,
    _reject_bad_timestamps,
    _timestamps,
)
from btc_ai.domain.data.quality import check_quality
from btc_ai.domain.data.report import DataReport
from btc_ai.domain.data.schema import PRICES, _frame
from btc_ai.domain.data.table import _Table
from btc_ai.domain.data.validation import _check_finite, _check_length, _check_prices, _interval_and_gaps


@dataclass
class Rows:
    """Checked rows in file order (not yet deduplicated or sorted)."""

    ns: np.ndarray
    prices: list[np.ndarray]  # open, high, low, close
    volume: np.ndarray
    labels: np.ndarray
    empty: int  # rows without prices, dropped
    table: _Table
    date_reading: str = ""


def parse(table: _Table, date_format: str | None) -> Rows:
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
    return Rows(ns, [o, h, lo, c], volume, labels, int(empty.sum()) + table.blank_rows, table,
                reading.describe() if reading is not None else "")


def finish(rows: Rows, where: _Where, min_rows: int | None, outlier_bars: str, *, source: str, layout: str,
           truncated: int, files: tuple = ()) -> tuple[pd.DataFrame, DataReport]:
    """Rows (one file's, or many files' joined in file order; ``where`` places them) to the frame and report."""
    ns = rows.ns
    unsorted = bool(len(ns) > 1 and (np.diff(ns) < 0).any())
    first, inverse = np.unique(ns, return_index=True, return_inverse=True)[1:]  # first of each, in time order
    kept = first[inverse]  # the row each row's timestamp keeps
    disagreeing = np.logical_or.reduce([p != p[kept] for p in rows.prices])
    keep = lambda values: values[first]  # noqa: E731
    ns, prices, volume = keep(ns), [keep(p) for p in rows.prices], keep(rows.volume)
    where = _Where(keep(where.labels), where.unit, where.source, where.files,
                   None if where.file_of is None else keep(where.file_of))
    _check_length(len(ns), min_rows, source)
    interval, gaps = _interval_and_gaps(ns, where)
    quality = check_quality(ns, prices, volume, interval, where, outlier_bars)

    frame = _frame(ns, *prices, volume)
    report = DataReport(
        source=source,
        layout=layout,
        rows=len(frame),
        start=frame.index[0],
        end=frame.index[-1],
        interval=interval,
        gaps=gaps,
        duplicates_dropped=len(rows.ns) - len(first),
        empty_rows_dropped=rows.empty,
        was_unsorted=unsorted,
        truncated_rows_dropped=truncated,
        date_reading=rows.date_reading,
        duplicates_disagreeing=int(disagreeing.sum()),
        files=tuple(files),
        outlier_bars=quality.outlier_bars,
        outlier_action=quality.outlier_action,
        outliers=tuple(quality.outliers),
        zero_volume_stretches=quality.zero_volume_stretches,
        zero_volume=tuple(quality.zero_volume),
        outages=tuple(quality.outages),
    )
    return frame, report
