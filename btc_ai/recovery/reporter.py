"""`ProgressReporter`: what a person watching a training is told (silent here; the CLI prints)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from btc_ai.domain.config import TrainingConfig
from btc_ai.recovery.repairs import Repair


class ProgressReporter:
    """What a person watching the training is told; silent here, the CLI prints."""

    def repairs_made(self, repairs: list[Repair]) -> None:
        """The validation repairs of a new session, before its training starts."""

    def session_started(self, run_id: str, config: TrainingConfig) -> None:
        """A session run was created."""

    def attempt_started(self, attempt: int, run_id: str, repair: Repair | None) -> None:
        """An attempt run was opened (after ``repair``, if any)."""

    def generation_done(self, generation: int, metrics: Mapping[str, float]) -> None:
        """A generation finished (global generation number)."""

    def attempt_failed(self, attempt: int, report: Mapping[str, Any]) -> None:
        """An attempt ended with an error; ``report`` is its error report."""
