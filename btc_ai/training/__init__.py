"""The training floor: the generation loop (`train_model`), the resumable checkpoint, the stall
watchdog and fault injection.

May import the domain floor only; it reports through callbacks (`TrainingCallbacks`), never through
mlflow.
"""

from btc_ai.training.loop import (
    TrainingCallbacks,
    TrainingSetup,
    span_equities,
    train_model,
    training_bars,
    validation_equity,
)

__all__ = ["TrainingCallbacks", "TrainingSetup", "span_equities", "train_model", "training_bars", "validation_equity"]
