"""The raw table: every source (file or frame) as named columns of values plus the row labels a user
can find again."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class _Table:
    source: str
    layout: str
    names: list[str]
    values: list[Sequence[Any]]
    labels: np.ndarray  # file line numbers, or 1-based row numbers for frames
    unit: str  # "line" or "row"
    headerless: bool = False
    ts_column: int | None = None  # forced timestamp column (a frame's DatetimeIndex)
    delimiter: str = ","
    truncated: int = 0
    blank_rows: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
