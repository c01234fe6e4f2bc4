"""btc_ai: train a Bitcoin trading policy with evolution strategies; training that survives failure.

Importing the package stays light: torch, pandas and mlflow load when a name below is first used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "TrainingRecoverySystem": "btc_ai.recovery",
    "train_model": "btc_ai.training",
    "load_candles": "btc_ai.domain.data",
    "TrainingConfig": "btc_ai.domain.config",
    "validated_config": "btc_ai.recovery.validation",  # a config validated once, for the layers below the edge
    "synthetic_candles": "btc_ai.domain.synthetic",
    "default_candles": "btc_ai.domain.synthetic",
    "backtest": "btc_ai.desk.backtest",
    "load_policy": "btc_ai.domain.policy_files",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'btc_ai' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
