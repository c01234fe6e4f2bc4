"""Recovery around the trainer: sessions and attempts on MLflow, classified retries, repairs, reports."""

from .system import TrainingRecoverySystem

__all__ = ["TrainingRecoverySystem"]
