"""The recovery floor: classification, repairs, the retry decision (tenacity), sessions and attempts,
resume state, the session lease, signals, error reports and the session's plots.

May import every floor below it (tracking, training, domain), MLflow only through the tracking floor's
run model. Importing this package is light: `TrainingRecoverySystem` loads on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TrainingRecoverySystem"]


def __getattr__(name: str) -> Any:
    if name == "TrainingRecoverySystem":
        from btc_ai.recovery.system import TrainingRecoverySystem

        return TrainingRecoverySystem
    raise AttributeError(f"module 'btc_ai.recovery' has no attribute {name!r}")
