"""Shared pieces of the benchmarks: the data they all run on, timing, and the result record."""

from __future__ import annotations

import gc
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from btc_ai.domain.config import TrainingConfig
from btc_ai.domain.market import MarketData, split_market
from btc_ai.training.cluster.processes import descendants

THREADS = 2
EVAL_STEPS = 500
EVAL_EPISODES = 1
NOISY_CORES = 0.15  # foreign load above which a case is measured again
QUIET_CORES = 0.10
ATTEMPTS = 2
WAIT_BUDGET_S = 30.0  # all waiting for a quiet machine in one run, so a busy machine cannot stall it
RETRY_UNTIL_S = 100.0  # no reruns once the run is this old: the whole run stays near 3 minutes
_waited = [0.0]
_STARTED = time.perf_counter()


@dataclass
class Record:
    """One benchmark number as written to results.json."""

    name: str
    value: float
    unit: str
    note: str = ""

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        if not data["note"]:
            del data["note"]
        return data


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn`` over ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        # a collection landing inside one repetition would be timed as the code's own cost
        gc.collect()
        tick = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tick)
    return statistics.median(times)


class CpuMeter:
    """CPU time other processes took while a block ran, in cores (Linux /proc; None elsewhere).

    The benchmark machine is shared; with two threads on two cores any foreign load stalls every
    parallel region of the two-thread code, so each number is only as good as this reading.
    """

    def __enter__(self) -> CpuMeter:
        self.start = _cpu_ticks()
        self.tick = time.perf_counter()
        self.foreign_cores: float | None = None
        return self

    def __exit__(self, *exc: object) -> None:
        end = _cpu_ticks()
        if self.start is None or end is None:
            return
        wall = max(time.perf_counter() - self.tick, 1e-9)
        busy, mine = end[0] - self.start[0], end[1] - self.start[1]
        self.foreign_cores = max(0.0, (busy - mine) / os.sysconf("SC_CLK_TCK") / wall)


def _cpu_ticks() -> tuple[int, int] | None:
    """(busy ticks of the whole machine, ticks of this process and every process below it): a benchmark's own
    servers, Ray workers and subprocesses are its work, not foreign load."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    mine = 0
    for pid in {os.getpid(), *descendants()}:
        try:  # utime, stime and the same of children it has reaped
            mine += sum(int(v) for v in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[11:15])
        except (OSError, ValueError, IndexError):
            continue  # ended meanwhile
    return sum(fields) - fields[3] - fields[4], mine


def wait_for_quiet(max_wait_s: float = 10.0) -> None:
    """Sleep until other processes use under QUIET_CORES, within this run's overall waiting budget."""
    deadline = time.perf_counter() + min(max_wait_s, WAIT_BUDGET_S - _waited[0])
    start = time.perf_counter()
    while time.perf_counter() < deadline:
        with CpuMeter() as meter:
            time.sleep(0.5)
        if meter.foreign_cores is None or meter.foreign_cores < QUIET_CORES:
            break
    _waited[0] += time.perf_counter() - start


def guarded(case: Callable[[], list[Record]]) -> list[Record]:
    """Run one benchmark case on a quiet machine, again if others loaded it meanwhile; notes the load."""
    for attempt in range(ATTEMPTS):
        wait_for_quiet()
        with CpuMeter() as meter:
            records = case()
        load = meter.foreign_cores
        late = time.perf_counter() - _STARTED > RETRY_UNTIL_S
        if load is None or load <= NOISY_CORES or attempt == ATTEMPTS - 1 or late:
            break
    suffix = "foreign load n/a" if load is None else f"foreign load {load:.2f} cores, attempt {attempt + 1}"
    for record in records:
        record.note = f"{record.note}; {suffix}" if record.note else suffix
    return records


def _random_walk_candles(bars: int = 8640, seed: int = 7) -> pd.DataFrame:
    """Stand-in OHLCV (5-minute, UTC) used only while btc_ai has no data module of its own."""
    rng = np.random.default_rng(seed)
    close = 35000.0 * np.exp(np.cumsum(rng.normal(0.0, 0.002, bars)))
    open_ = np.concatenate([[close[0]], close[:-1]])
    wick = np.abs(rng.normal(0.0, 0.001, (2, bars)))
    index = pd.date_range("2021-06-01", periods=bars, freq="5min", tz="UTC")
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) * (1 + wick[0]),
            "low": np.minimum(open_, close) * (1 - wick[1]),
            "close": close,
            "volume": rng.lognormal(5.0, 1.0, bars),
        },
        index=index,
    )


@lru_cache(maxsize=1)
def benchmark_candles() -> tuple[pd.DataFrame, str]:
    """Candles every benchmark uses, and where they came from.

    btc_ai's own default data wins; until its data modules exist a random walk stands in, so the
    numbers stay comparable between families of one run.
    """
    try:
        from btc_ai.domain.data import load_candles, resample_candles
        from btc_ai.domain.synthetic import default_candles
    except ImportError:
        return _random_walk_candles(), "stand-in random walk (btc_ai.domain.synthetic/data absent), 8640 5-min bars"
    config = TrainingConfig.from_dict({})
    candles, _ = load_candles(default_candles())
    candles = resample_candles(candles, config.TIMEFRAME)
    return candles, f"btc_ai.domain.synthetic.default_candles(), {len(candles)} {config.TIMEFRAME} bars"


def bench_config(population: int, hidden: int, **overrides: object) -> TrainingConfig:
    """Default config with the benchmarked population, width and episode shape."""
    values: dict[str, object] = {
        "ES_POPULATION": population,
        "HIDDEN_SIZE": hidden,
        "MAX_STEPS_PER_EPISODE": EVAL_STEPS,
        "EPISODES_PER_EVAL": EVAL_EPISODES,
        **overrides,
    }
    return TrainingConfig.from_dict(values)


@lru_cache(maxsize=4)
def train_market(lookback: int, validation_fraction: float) -> tuple[MarketData, tuple[str, ...]]:
    """The training span of the benchmark candles and the feature names."""
    candles, _ = benchmark_candles()
    split = split_market(candles, lookback, validation_fraction)
    return split.train, split.feature_names
