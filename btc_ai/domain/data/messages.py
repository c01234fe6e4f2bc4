"""How a refusal reads: the lines or rows it names, the columns and values it quotes, one line per
DataValidationError."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from btc_ai.domain.errors import DataValidationError

_MAX_LISTED = 5


@dataclass
class _Where:
    """Turns positions in the surviving rows into the labels a user can find in the file."""

    labels: np.ndarray
    unit: str
    source: str

    def at(self, mask_or_positions: np.ndarray) -> list[int]:
        picked = self.labels[mask_or_positions]
        return [int(x) for x in picked]

    def fail(self, problem: str, mask: np.ndarray, fix: str, example: str = "") -> DataValidationError:
        rows = self.at(mask)
        detail = f" ({example})" if example else ""
        return DataValidationError(
            f"{self.source}: {problem} at {_where(rows, self.unit)}{detail}; {fix}", rows=rows
        )


def _where(labels: Sequence[int] | np.ndarray, unit: str) -> str:
    unique = sorted({int(x) for x in labels})
    shown = ", ".join(str(x) for x in unique[:_MAX_LISTED])
    more = f" and {len(unique) - _MAX_LISTED} more" if len(unique) > _MAX_LISTED else ""
    plural = "s" if len(unique) > 1 else ""
    if unit == "line":
        return f"file line{plural} {shown}{more}"
    return f"{unit}{plural} {shown}{more} (1-based)"


def _names(names: Sequence[Any]) -> str:
    listed = [str(n) for n in names][:12]
    more = f" and {len(names) - 12} more" if len(names) > 12 else ""
    return ", ".join(repr(n) for n in listed) + more if listed else "none"


def _snippet(value: Any) -> str:
    text = str(value).replace("\r", " ").replace("\n", " ")
    return repr(text[:40] + ("..." if len(text) > 40 else ""))


def _bad(source: str, what: str) -> DataValidationError:
    return DataValidationError(f"{source} {what}")
