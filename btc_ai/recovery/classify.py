"""Which errors are worth retrying: one table, matched by the most specific type in the MRO."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch

from btc_ai.domain.errors import (
    ClusterLostError,
    DataValidationError,
    GPUError,
    NaNError,
    TradingEnvironmentError,
    TrainingStalledError,
)


@dataclass(frozen=True)
class Classification:
    """The verdict on one exception: recoverable or not, the table row that decided, and why."""

    recoverable: bool
    matched: str  # name of the table row's type, or "unknown"
    reason: str


# The original specification's table (docs/design.md), plus this project's own types. Order is irrelevant:
# the row whose type comes first in the exception's MRO wins.
RECOVERABLE: Mapping[type[BaseException], str] = {
    ValueError: "can often be fixed by adjusting parameters",
    KeyError: "a missing configuration key can be filled from the preset",
    IndexError: "likely recoverable with tighter bounds",
    AttributeError: "may be recoverable with a fallback",
    RuntimeError: "may be recoverable depending on the cause",
    DataValidationError: "the data can be cleaned and the training retried",
    json.JSONDecodeError: "a backup config can be used",
    ZeroDivisionError: "a guard against the degenerate value can be added",
    NaNError: "roll back to the last good state with a smaller step",
    TradingEnvironmentError: "the trading environment can be rebuilt",
    TrainingStalledError: "a stalled generation can be retried from the last good state",
    torch.OutOfMemoryError: "a smaller population needs less memory",
    ClusterLostError: "the training continues on the local evaluator from the last good state",
}
UNRECOVERABLE: Mapping[type[BaseException], str] = {
    ImportError: "a critical module is missing",
    ModuleNotFoundError: "a critical module is missing",
    FileNotFoundError: "a critical file is missing",
    PermissionError: "a system permission problem needs a person",
    MemoryError: "the machine ran out of memory",
    OSError: "a system-level error",
    GPUError: "a hardware fault",
    KeyboardInterrupt: "interrupted by the user: never retried",
}


def classify(exc: BaseException, extra_recoverable: Iterable[type[BaseException]] = ()) -> Classification:
    """Classify ``exc`` by the most specific type of its MRO found in the table.

    Types not in the table are unrecoverable, unless listed in ``extra_recoverable``.
    """
    extra = tuple(extra_recoverable)
    for cls in type(exc).__mro__:
        if cls in extra:
            return Classification(True, cls.__name__, "configured as recoverable")
        if cls in UNRECOVERABLE:
            return Classification(False, cls.__name__, UNRECOVERABLE[cls])
        if cls in RECOVERABLE:
            return Classification(True, cls.__name__, RECOVERABLE[cls])
    return Classification(False, "unknown", f"{type(exc).__name__} is not in the classification table")
