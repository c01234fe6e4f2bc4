"""Many files as one series: each file read with the rules of one file (a bad one refused naming it and its
line), all of one symbol and one interval (from the Binance file name and from the bars themselves), ordered
by time and joined; a timestamp in two files keeps the earlier file's bar, as a duplicate inside one file
keeps its first row, and gaps between files count like gaps inside one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from btc_ai.domain.data.columns import _norm
from btc_ai.domain.data.messages import _Where
from btc_ai.domain.data.readers import _table_from_bytes
from btc_ai.domain.data.report import DataReport, format_interval
from btc_ai.domain.data.series import Rows, finish, parse
from btc_ai.domain.data.sources import DataFile, binance_name, sha256_of
from btc_ai.domain.errors import DataValidationError
from btc_ai.domain.files import read_regular_file


def load_many(paths: list[Path], label: str, min_rows: int | None, date_format: str | None,
              outlier_bars: str) -> tuple[pd.DataFrame, DataReport]:
    parsed: list[tuple[Rows, str]] = []
    for path in paths:
        raw = read_regular_file(path, "data file", DataValidationError)
        parsed.append((parse(_table_from_bytes(raw, path), date_format), sha256_of(raw)))
        del raw  # one file's text at a time
    parsed.sort(key=lambda item: (int(item[0].ns.min()), item[0].table.source))
    _one_symbol([rows for rows, _ in parsed])
    _one_interval([rows for rows, _ in parsed])
    files = tuple(DataFile(rows.table.source, sha, len(np.unique(rows.ns)), pd.Timestamp(int(rows.ns.min()), tz="UTC"),
                           pd.Timestamp(int(rows.ns.max()), tz="UTC")) for rows, sha in parsed)
    joined = Rows(
        ns=np.concatenate([r.ns for r, _ in parsed]),
        prices=[np.concatenate([r.prices[k] for r, _ in parsed]) for k in range(4)],
        volume=np.concatenate([r.volume for r, _ in parsed]),
        labels=np.concatenate([r.labels for r, _ in parsed]),
        empty=sum(r.empty for r, _ in parsed),
        table=parsed[0][0].table,
        date_reading="; ".join(sorted({r.date_reading for r, _ in parsed if r.date_reading})),
    )
    file_of = np.concatenate([np.full(len(r.ns), i) for i, (r, _) in enumerate(parsed)])
    where = _Where(joined.labels, parsed[0][0].table.unit, label, tuple(f.path for f in files), file_of)
    layouts = sorted({r.table.layout for r, _ in parsed})
    return finish(joined, where, min_rows, outlier_bars, source=label, layout="+".join(layouts),
                  truncated=sum(r.table.truncated for r, _ in parsed), files=files)


def _one_symbol(parsed: list[Rows]) -> None:
    """Refuse two symbols: by a Binance file name, or by a symbol column (CryptoDataDownload's)."""
    seen: dict[str, str] = {}
    for rows in parsed:
        table = rows.table
        named = binance_name(table.source)
        symbols = {named[0]} if named else set()
        column = next((i for i, n in enumerate(table.names) if _norm(n) in ("symbol", "ticker", "pair")), None)
        if column is not None:
            symbols |= {_norm(v).upper() for v in set(table.values[column]) if _norm(v)}
        for symbol in sorted(symbols):
            seen.setdefault(symbol, table.source)
    if len(seen) > 1:
        (a, fa), (b, fb) = list(seen.items())[:2]
        raise DataValidationError(f"{fb} holds {b} but {fa} holds {a}: one data source is one symbol; put each "
                                  "symbol's files in a folder of its own")


def _one_interval(parsed: list[Rows]) -> None:
    """Refuse two intervals: each file's own bar step (and its Binance name's interval) must agree."""
    seen: dict[pd.Timedelta, str] = {}
    for rows in parsed:
        source = rows.table.source
        steps = np.diff(np.unique(rows.ns))
        named = binance_name(source)
        step = None
        if len(steps):
            values, counts = np.unique(steps, return_counts=True)
            step = pd.Timedelta(int(values[counts.argmax()]))
        if named and named[1] is not None and step is not None and step != named[1]:
            raise DataValidationError(f"{source}: named {format_interval(named[1])} but its bars are "
                                      f"{format_interval(step)} apart; rename it or replace it with the "
                                      f"{format_interval(named[1])} file")
        step = step if step is not None else (named[1] if named else None)
        if step is not None:
            seen.setdefault(step, source)
    if len(seen) > 1:
        (a, fa), (b, fb) = list(seen.items())[:2]
        raise DataValidationError(f"{fb} holds {format_interval(b)} bars but {fa} holds {format_interval(a)} bars: "
                                  "one data source is one interval; put each interval's files in a folder of its "
                                  "own (resample_candles can coarsen)")
