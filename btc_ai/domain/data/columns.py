"""Column roles: the names exports give timestamp, price and volume columns, and which column of a
table plays which role."""

from __future__ import annotations

import re
from typing import Any

from btc_ai.domain.data.messages import _names
from btc_ai.domain.data.schema import PRICES
from btc_ai.domain.data.table import _Table
from btc_ai.domain.errors import DataValidationError

# Normalised (lower-case alphanumeric) column names, best first.
_TS_NAMES = (
    "timestamp", "opentime", "unix", "unixtimestamp", "unixtime", "timestampms", "datetime",
    "datetimeutc", "timestamputc", "date", "dateutc", "time", "timeutc", "ts", "epoch", "starttime",
    "timeperiodstart", "candlebegintime", "opentimeutc",
)  # fmt: skip
_PRICE_NAMES = {
    "open": ("open", "o", "openprice", "opening"),
    "high": ("high", "h", "highprice", "max"),
    "low": ("low", "l", "lowprice", "min"),
    "close": ("close", "c", "closeprice", "closing", "last", "adjclose", "adjustedclose"),
}
_QUOTE_TOKENS = ("quote", "currency", "usd", "eur", "gbp", "jpy", "krw", "aud", "cad", "chf", "brl", "dai")


def _norm(name: Any) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower()) if name is not None else ""


def _resolve_columns(table: _Table) -> dict[str, int]:
    normed = [_norm(n) for n in table.names]
    roles: dict[str, int] = {}
    for role, aliases in _PRICE_NAMES.items():
        for alias in aliases:  # alias order matters: Close before Adj Close
            if alias in normed:
                roles[role] = normed.index(alias)
                break
    missing = [k for k in PRICES if k not in roles]
    if missing:
        raise DataValidationError(
            f"{table.source}: no price columns {', '.join(missing)} (found columns: {_names(table.names)}); "
            "name them open, high, low, close (any case) or use a known export layout",
        )
    volume = _pick_volume(normed)
    if volume is not None:
        roles["volume"] = volume
    ts = table.ts_column if table.ts_column is not None else _pick_timestamp(normed, table)
    if ts is None:
        raise DataValidationError(
            f"{table.source}: no recognisable timestamp column (found columns: {_names(table.names)}); "
            "add one named timestamp (epoch s/ms/us or ISO 8601 like 2021-06-01T00:00:00Z)",
        )
    roles["timestamp"] = ts
    if normed[ts] == "date" and "time" in normed:  # MetaTrader-style separate date and time columns
        roles["time_of_day"] = normed.index("time")
    return roles


def _pick_timestamp(normed: list[str], table: _Table) -> int | None:
    for alias in _TS_NAMES:
        if alias in normed:
            return normed.index(alias)
    # df.to_csv() of an unnamed DatetimeIndex leaves a blank first header cell
    if normed and normed[0] in ("", "index", "unnamed0"):
        return 0
    return None


def _pick_volume(normed: list[str]) -> int | None:
    best: tuple[int, int] | None = None
    for i, name in enumerate(normed):
        rank = _volume_rank(name)
        if rank is not None and (best is None or rank < best[0]):
            best = (rank, i)
    return None if best is None else best[1]


def _volume_rank(name: str) -> int | None:
    """0: plain volume, 1: named base-asset volume, 2: quote-currency volume; None: not a volume."""
    if any(word in name for word in ("taker", "trade", "count")):
        return None
    if name in ("volume", "vol", "basevolume", "volumebase", "baseassetvolume"):
        return 0
    if not (name.startswith("vol") or name.endswith("volume")):
        return None
    return 2 if any(token in name for token in _QUOTE_TOKENS) else 1
