"""`AttemptLogger`: the training callbacks that record one attempt run (data facts, metrics of every
generation, checkpoints) through the run writer."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from btc_ai.tracking.run_model import (
    ARTIFACT_DATA_REPORT,
    TAG_CLUSTER_EVENT,
    TAG_DATA_FINGERPRINT,
    TAG_START_GENERATION,
)
from btc_ai.tracking.tracker import Tracker
from btc_ai.tracking.writer import RunWriter
from btc_ai.training.checkpoint import TrainingState
from btc_ai.training.loop import TrainingCallbacks, TrainingSetup


class AttemptLogger(TrainingCallbacks):
    """Training callbacks that record one attempt run: data facts, metrics per generation, checkpoints.

    Checkpoints retired from the store (all but the newest ``keep_periodic`` periodic ones) are removed
    from the local checkpoint folder too. Generations up to ``logged_through`` are not logged: an earlier
    attempt of the session trained them the same way and its metrics of them are on the store already (a
    process killed after sending a commit's metrics, before its marker), so each appears once.
    """

    def __init__(self, tracker: Tracker, run_id: str, *, keep_periodic: int | None = None,
                 logged_through: int = 0) -> None:
        self.tracker = tracker
        self.run_id = run_id
        self.writer = RunWriter(tracker, run_id, keep_periodic=keep_periodic)
        self.logged_through = logged_through
        self.last_generation = 0
        self.last_metrics: dict[str, float] = {}
        self.events: list[str] = []

    def on_start(self, setup: TrainingSetup) -> None:
        self.last_generation = setup.start_generation
        self.writer.submit(
            self.tracker.log_dict,
            self.run_id,
            {
                "report": setup.data_report.to_dict(),
                "fingerprint": setup.data_fingerprint,
                "n_params": setup.n_params,
                "feature_names": list(setup.feature_names),
                "train_bars": setup.train_bars,
                "validation_bars": setup.validation_bars,
                "start_generation": setup.start_generation,
            },
            ARTIFACT_DATA_REPORT,
        )
        self.writer.submit(self.tracker.set_tags, self.run_id, {TAG_DATA_FINGERPRINT: setup.data_fingerprint,
                                                                TAG_START_GENERATION: setup.start_generation})

    def on_generation(self, generation: int, metrics: Mapping[str, float]) -> None:
        self.last_generation = generation
        self.last_metrics = dict(metrics)
        if generation > self.logged_through:
            self.writer.add(generation, metrics)

    def on_checkpoint(self, state: TrainingState, path: Path | None, sha256: str | None, *, emergency: bool) -> None:
        if path is not None and sha256 is not None:
            self.writer.checkpoint(state.generation, path, sha256, emergency=emergency)

    def on_event(self, generation: int, event: str) -> None:
        """A cluster event (a worker lost or back) on the attempt's tag, every one of the attempt so far."""
        self.events.append(event if event.startswith("generation ") else f"generation {generation}: {event}")
        self.writer.submit(self.tracker.set_tags, self.run_id, {TAG_CLUSTER_EVENT: _tag_text(self.events)})

    def close(self) -> None:
        self.writer.close()


_TAG_LIMIT = 4000  # MLflow stores tag values of up to 8000 characters (5000 on some servers)


def _tag_text(events: list[str]) -> str:
    """The newest events that fit in one tag value, oldest first."""
    text = "\n".join(events)
    return text if len(text) <= _TAG_LIMIT else "...\n" + text[-_TAG_LIMIT:].split("\n", 1)[-1]
