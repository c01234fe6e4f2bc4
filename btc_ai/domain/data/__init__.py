"""Candle loading and validation: reads the CSV/Parquet layouts people actually have into one clean
UTC OHLCV frame, repairs what is safe to repair (and says so), and rejects the rest in one line.

Modules, lowest first (each imports only those above it, never this package's ``__init__``):
messages (wording of refusals), schema (the clean frame), report (DataReport), table (the raw
table), columns (column roles), readers (bytes to a table), dates (day-first or month-first, as the
file's evidence or ``date_format`` says), parsing (values to numbers and times),
validation (the checks), cleaning, resample, cache (parsed candles kept as Parquet, keyed by the files'
sha256), loading (load_candles).
"""

from btc_ai.domain.data.cleaning import clean_candles
from btc_ai.domain.data.loading import load_candles
from btc_ai.domain.data.report import DataReport, format_interval
from btc_ai.domain.data.resample import resample_candles
from btc_ai.domain.data.schema import COLUMNS, LAYOUT_ATTR, PRICES, data_fingerprint
from btc_ai.domain.data.validation import validate_candles

__all__ = [
    "COLUMNS",
    "LAYOUT_ATTR",
    "PRICES",
    "DataReport",
    "clean_candles",
    "data_fingerprint",
    "format_interval",
    "load_candles",
    "resample_candles",
    "validate_candles",
]
