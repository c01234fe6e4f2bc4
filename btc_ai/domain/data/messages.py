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
    files: tuple[str, ...] = ()  # rows joined from many files: the files, and which file each row came from
    file_of: np.ndarray | None = None

    def at(self, mask_or_positions: np.ndarray) -> list[int]:
        picked = self.labels[mask_or_positions]
        return [int(x) for x in picked]

    def place(self, position: int) -> tuple[str, int]:
        """(file, label) of one row."""
        if self.file_of is None:
            return self.source, int(self.labels[position])
        return self.files[int(self.file_of[position])], int(self.labels[position])

    def fail(self, problem: str, mask: np.ndarray, fix: str, example: str = "") -> DataValidationError:
        source, chosen = self.source, np.asarray(mask)
        if self.file_of is not None:  # rows of many files: the first file at fault, and its rows alone
            picked = np.flatnonzero(chosen) if chosen.dtype == bool else chosen
            source, _ = self.place(int(picked[0]))
            chosen = picked[self.file_of[picked] == self.file_of[picked[0]]]
        rows = self.at(chosen)
        detail = f" ({example})" if example else ""
        return DataValidationError(f"{source}: {problem} at {_where(rows, self.unit)}{detail}; {fix}", rows=rows)


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
