"""Training progress on the terminal: a live bar on a TTY, a plain line every few generations elsewhere."""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

from btc_ai.domain.config import TrainingConfig
from btc_ai.domain.metric_names import (
    METRIC_FITNESS_MAX,
    METRIC_FITNESS_MEAN,
    METRIC_SECONDS_PER_GENERATION,
    METRIC_VALIDATION_TOTAL_RETURN,
)

PROGRESS_EVERY_ENV = "BTC_AI_PROGRESS_EVERY"  # plain progress: a line every N generations (tests set 1)


def _hms(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "-:--:--"
    total = round(max(seconds, 0.0))
    return f"{total // 3600}:{total // 60 % 60:02d}:{total % 60:02d}"


class ConsoleReporter:
    """Progress on the terminal: a live bar (generation, fitness, validation return, ETA) on a TTY; where output
    is not a terminal (CI, logs), one plain line every N generations (about 25 lines a run, N from
    $BTC_AI_PROGRESS_EVERY if set), always the first generation of each attempt and the last one."""

    def attempt_started(self, attempt: int, run_id: str, repair: Any) -> None:
        self._last_tick = None  # set-up, backoff and repair are not generation time
        if attempt > 1:
            why = f"after repair {repair.summary()}" if repair else "resumes the session"
            self._say(f"attempt {attempt} (run {run_id}) {why}")
            self._first_of_attempt = True

    def attempt_failed(self, attempt: int, report: Mapping[str, Any]) -> None:
        error = report["error"]
        done = report["generation_reached"]
        self._say(f"attempt {attempt} failed in generation {done + 1} (generation {done} was the last completed): "
                  f"{error['type']}: {error['message']} -> {report['decision']}")

    def _say(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(text)
        else:
            print(text, flush=True)

    def __init__(self, *, quiet: bool = False) -> None:
        self.total = 0
        self.quiet = quiet
        self._progress: Any = None
        self._task: Any = None
        self._last_val = float("nan")
        self.every = 1
        self._first_of_attempt = True
        self._last_tick: float | None = None
        self._seconds = 0.0  # generation time seen by this process, for the ETA
        self._generations = 0
        self.last_generation: int | None = None  # the newest generation completed in this process

    def repairs_made(self, repairs: list[Any]) -> None:
        """Validation repairs, announced before the training starts."""
        for repair in repairs:
            self._say(f"repair: {repair.summary()}")

    def session_started(self, run_id: str, config: TrainingConfig) -> None:
        self.total = config.generations
        every = os.environ.get(PROGRESS_EVERY_ENV, "").strip()
        self.every = int(every) if every.isdigit() and int(every) > 0 else max(1, self.total // 25)
        print(f"session run {run_id} (bucket {config.BUCKET}, {config.generations} generations, "
              f"population {config.ES_POPULATION}, hidden {config.HIDDEN_SIZE})", flush=True)
        if not self.quiet and sys.stdout.isatty():
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(TextColumn("gen {task.completed}/{task.total}"), BarColumn(),
                                      TextColumn("{task.fields[info]}"), TimeRemainingColumn())
            self._progress.start()
            self._task = self._progress.add_task("train", total=self.total, info="")

    def _eta(self, generation: int, metrics: Mapping[str, float]) -> float:
        """Seconds left: the average wall time per generation so far (the first generation of an attempt
        counts its own measured time, not the set-up before it) times the generations left."""
        now = time.monotonic()
        if self._last_tick is None:
            self._seconds += float(metrics.get(METRIC_SECONDS_PER_GENERATION, 0.0))
        else:
            self._seconds += now - self._last_tick
        self._last_tick = now
        self._generations += 1
        return self._seconds / self._generations * max(self.total - generation, 0)

    def generation_done(self, generation: int, metrics: Mapping[str, float]) -> None:
        self.last_generation = generation
        if METRIC_VALIDATION_TOTAL_RETURN in metrics:
            self._last_val = metrics[METRIC_VALIDATION_TOTAL_RETURN]
        eta = self._eta(generation, metrics)
        val = "-" if self._last_val != self._last_val else f"{self._last_val:+.2%}"  # NaN: no validation yet
        info = (f"fitness {metrics[METRIC_FITNESS_MEAN]:+.4f} (max {metrics[METRIC_FITNESS_MAX]:+.4f}) "
                f"val {val} {metrics[METRIC_SECONDS_PER_GENERATION]:.3f} s/gen")
        first, self._first_of_attempt = self._first_of_attempt, False
        if self._progress is not None:
            if first and generation > 1:  # a resume or retry: the bar's speed counts from here, not from 0
                self._progress.reset(self._task, completed=generation - 1, info=info)
            self._progress.update(self._task, completed=generation, info=info)
        elif not self.quiet and (first or generation % self.every == 0 or generation >= self.total):
            print(f"gen {generation}/{self.total} {info} ETA {_hms(eta)}", flush=True)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
