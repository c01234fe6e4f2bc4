"""The default configuration end to end: seconds per generation, whole train_model time, peak memory."""

from __future__ import annotations

import resource
import statistics
import sys
import time
import tracemalloc

from benchmarks.common import Record, guarded
from btc_ai.domain.config import TrainingConfig
from btc_ai.domain.noise import noise_table
from btc_ai.training.loop import train_model

SHORT_EPISODES = 30
TRACEMALLOC_EPISODES = 10


def max_rss_mb() -> float:
    """Peak resident set of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def run() -> list[Record]:
    return guarded(measure)


def measure() -> list[Record]:
    config = TrainingConfig.from_dict({})
    rss_before = max_rss_mb()
    noise_table.cache_clear()  # building the table is part of a fresh training, on a rerun too

    tick = time.perf_counter()
    _, metrics, _, elapsed = train_model(config)
    wall = time.perf_counter() - tick
    rss_after = max_rss_mb()
    full_history = [row["perf/seconds_per_generation"] for row in metrics["history"]]

    # a second, short run measures steady-state generations: data and noise table are warm by now
    _, short_metrics, _, _ = train_model(config.replace(EPISODES=SHORT_EPISODES))
    short = [row["perf/seconds_per_generation"] for row in short_metrics["history"]]

    # tracemalloc slows every allocation, so it gets a run of its own; a cold noise table is part of
    # what a fresh training allocates, hence the cache clear
    noise_table.cache_clear()
    tracemalloc.start()
    train_model(config.replace(EPISODES=TRACEMALLOC_EPISODES))
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    shape = (
        f"{config.BUCKET}: pop {config.ES_POPULATION}, hidden {config.HIDDEN_SIZE}x{config.HIDDEN_LAYERS}, "
        f"{config.EPISODES_PER_EVAL} x {config.MAX_STEPS_PER_EPISODE} steps, {config.TIMEFRAME}"
    )
    return [
        Record("default_seconds_per_generation", statistics.median(short), "s",
               f"median perf/seconds_per_generation of a {SHORT_EPISODES}-generation train_model run, {shape} "
               f"(full run median {statistics.median(full_history):.4f} s)"),
        Record("default_train_seconds", wall, "s",
               f"train_model(TrainingConfig.from_dict({{}})), {config.EPISODES} generations, default synthetic data, "
               f"cold noise table (returned elapsed {elapsed:.2f} s)"),
        Record("default_peak_rss_mb", rss_after, "MiB",
               f"process max RSS after the default training (high-water mark, {rss_before:.0f} MiB before it: "
               "interpreter, torch, pandas)"),
        Record("default_tracemalloc_peak_mb", traced_peak / (1 << 20), "MiB",
               f"peak traced Python/numpy allocations of a {TRACEMALLOC_EPISODES}-generation run with a cold "
               "noise table (torch tensors are not traced)"),
    ]
