"""What an error means to the recovery: whether it is worth retrying, and which repair answers it — two
tables keyed by exception type, side by side, each matched by the most specific type in the error's MRO."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
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
from btc_ai.recovery.repairs import (
    Repair,
    RepairContext,
    clamp_offending_value,
    clean_data,
    continue_on_local_evaluator,
    fall_back_to_backup_config,
    fill_key_from_preset,
    halve_learning_rate_and_sigma_on_nan,
    halve_population_on_oom,
    rebuild_environment,
    retry_from_last_good_state,
    revert_override_to_preset,
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


# Which repair answers a recoverable error (no row: `revert_override_to_preset`).
REPAIR_BY_ERROR: Mapping[type[BaseException], Callable[[RepairContext], Repair | None]] = {
    NaNError: halve_learning_rate_and_sigma_on_nan,
    KeyError: fill_key_from_preset,
    ValueError: clamp_offending_value,
    IndexError: clamp_offending_value,
    DataValidationError: clean_data,
    json.JSONDecodeError: fall_back_to_backup_config,
    TradingEnvironmentError: rebuild_environment,
    torch.OutOfMemoryError: halve_population_on_oom,
    TrainingStalledError: retry_from_last_good_state,
    ClusterLostError: continue_on_local_evaluator,
}


def choose_repair(ctx: RepairContext) -> Repair:
    """The repair for the most specific type of the error that has one, else the fallback."""
    for cls in type(ctx.error).__mro__:
        if cls in REPAIR_BY_ERROR:
            repair = REPAIR_BY_ERROR[cls](ctx)
            if repair is not None:
                return repair
            break
    return revert_override_to_preset(ctx)


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
