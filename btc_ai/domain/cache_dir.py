"""btc_ai's cache folder (candles, store templates): ``$BTC_AI_CACHE_DIR``, else ``$XDG_CACHE_HOME/btc_ai``,
else ``~/.cache/btc_ai``. Imports nothing heavy: the store checks read it before MLflow loads."""

from __future__ import annotations

import os
from pathlib import Path

DIR_VARIABLE = "BTC_AI_CACHE_DIR"


def switched_off(variable: str) -> bool:
    """A cache turned off by its variable: ``off``, ``0``, ``no`` or ``false`` (any case)."""
    return os.environ.get(variable, "").strip().lower() in ("0", "off", "no", "false")


def cache_root() -> Path:
    return Path(os.environ.get(DIR_VARIABLE) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "btc_ai"))
