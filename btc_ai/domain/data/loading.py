"""load_candles: a path or a frame through reader, column roles, parsing and the checks to one clean
frame and its DataReport."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from btc_ai.domain.data import cache
from btc_ai.domain.data.cache import cache_folder, cache_key, read_entry, write_entry
from btc_ai.domain.data.dates import normalize_date_format
from btc_ai.domain.data.joining import load_many
from btc_ai.domain.data.messages import _Where
from btc_ai.domain.data.quality import outlier_choice
from btc_ai.domain.data.readers import _table_from_bytes, _table_from_frame
from btc_ai.domain.data.report import DataReport
from btc_ai.domain.data.schema import LAYOUT_ATTR
from btc_ai.domain.data.series import finish, parse
from btc_ai.domain.data.sources import DataFile, display, expand, is_many, sha256_of, with_urls
from btc_ai.domain.data.table import _Table
from btc_ai.domain.errors import DataValidationError
from btc_ai.domain.files import read_regular_file


def load_candles(
    source: str | Path | Sequence[str | Path] | pd.DataFrame, *, min_rows: int | None = None,
    date_format: str | None = None, outlier_bars: str | None = None,
) -> tuple[pd.DataFrame, DataReport]:
    """Read candles from a CSV/Parquet/zip path, many files, or a DataFrame; return the clean frame and its report.

    Many files are a folder (its .csv/.zip/.gz/.parquet files; ``.CHECKSUM`` files and ``*.part`` downloads
    are passed over), a glob (``"data/BTCUSDT-5m-*.zip"``) or a list of paths: each is read with the rules
    below, all must be one symbol and one interval, and they are joined in time order (see ``joining``); the
    report names every file with its sha256 (``files``, ``files_sha256``), and a file fetched by ``btc-ai data
    fetch`` its URL too. A CSV or zip source of some size is parsed once: the clean frame and the report are
    kept in the candle cache (``cache``; ``BTC_AI_CANDLE_CACHE=off`` turns it off), and a later load of the
    same bytes with the same options returns them exactly.

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
      identical longer steps, which is a second timeframe and rejected as a mixed interval;
    - duplicates whose prices differ from the kept row are counted (``duplicates_disagreeing``);
    - bars whose open, high or low lie far outside the neighbouring closes are clamped to them
      (``outlier_bars="repair"``, the default unless BTC_AI_OUTLIER_BARS says otherwise), refused
      (``"refuse"``) or kept (``"keep"``), and listed with their rows (see ``quality`` for the rule);
      zero-volume stretches and outages longer than a day are listed too.
    """
    formats = normalize_date_format(date_format)
    choice = outlier_choice(outlier_bars)
    if isinstance(source, pd.DataFrame):
        table = _table_from_frame(source, "<DataFrame>", source.attrs.get(LAYOUT_ATTR, "dataframe"))
        return _build(table, min_rows, formats, choice)
    many = is_many(source)
    paths = expand(source) if many else [Path(source[0] if isinstance(source, (list, tuple)) else source)]
    label = display(source) if many else str(paths[0])
    key = _cache_key(paths, label, {"min_rows": min_rows, "date_format": formats, "outlier_bars": choice})
    cached = read_entry(key[0]) if key else None
    if cached is not None:
        return cached[0], with_urls(cached[1])
    if many:
        frame, report = load_many(paths, label, min_rows, formats, choice)
    else:
        raw = read_regular_file(paths[0], "data file", DataValidationError)
        frame, report = _build(_table_from_bytes(raw, paths[0]), min_rows, formats, choice, (sha256_of(raw),))
        del raw
    if key and [f.sha256 for f in report.files] == [sha for _, sha in key[1]]:  # not changed since hashed
        write_entry(key[0], frame, report)
    return frame, with_urls(report)


def _cache_key(paths: list[Path], label: str, options: dict[str, Any]) -> Any:
    """(cache key, (path, sha256) of each file) of a source worth caching (see ``cache``); None otherwise.
    Each file is read once here to hash it, one at a time."""
    if cache_folder() is None:
        return None
    files, size, parquet = [], 0, True
    for path in paths:
        raw = read_regular_file(path, "data file", DataValidationError)
        files.append((str(path), sha256_of(raw)))
        size += len(raw)
        parquet = parquet and raw.startswith(b"PAR1")
        del raw
    if size < cache.MIN_BYTES or parquet:
        return None
    return cache_key(files, label, options), files


def _build(table: _Table, min_rows: int | None, date_format: str | None, outlier_bars: str,
           sha256: tuple[str, ...] = ()) -> tuple[pd.DataFrame, DataReport]:
    rows = parse(table, date_format)
    frame, report = finish(rows, _Where(rows.labels, table.unit, table.source), min_rows, outlier_bars,
                           source=table.source, layout=table.layout, truncated=table.truncated)
    if sha256:  # the one file, named with its sha256 like each of many
        report = replace(report, files=(DataFile(table.source, sha256[0], report.rows, report.start, report.end),))
    return frame, report

