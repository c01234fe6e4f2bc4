"""Recovery around the trainer: sessions and attempts on MLflow, classified retries, repairs, reports."""

from btc_ai.recovery.system import TrainingRecoverySystem

__all__ = ["TrainingRecoverySystem"]
