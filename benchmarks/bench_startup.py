"""Start-up of the face: the wall time of `btc-ai --help`, `btc-ai presets`, `btc-ai report <session>` (a store
holding two tiny sessions), `btc-ai train` (tiny config) until its first generation line, and two refusals (a
URI MLflow cannot open, an unknown run ID), each in a fresh process, as a user's shell starts it; and the
synthetic candles `make train` trains on by default, in process.

Run alone: ``python -m benchmarks.run --only startup`` (or ``python -m benchmarks.bench_startup``, which
prints the records and writes nothing).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import ATTEMPTS, NOISY_CORES, Record, wait_for_quiet

REPEATS = 5  # timed runs of each command, after one untimed (page cache, byte-compiled files, store created)
TIMEOUT_S = 300
# the tiny config of the test suite: a training of a fraction of a second after start-up
TINY = {"MAX_STEPS_PER_EPISODE": 64, "EPISODES_PER_EVAL": 2, "EVAL_INTERVAL": 2, "MIN_CHECKPOINT_INTERVAL": 2,
        "CHECKPOINT_MIN_SECONDS": 0.0, "NOISE_TABLE_SIZE": 1 << 16}
TINY_FLAGS = ["--hidden-size", "8", "--es-population", "8", *[f"--set={key}={value}" for key, value in TINY.items()]]
FAULT = "ValueError@3:LEARNING_RATE"  # the second session: a recoverable error, so two attempts and a repair


def btc_ai() -> list[str]:
    """The `btc-ai` console script beside this interpreter (what a user runs), else ``python -m btc_ai``."""
    script = Path(sys.executable).with_name("btc-ai")
    return [str(script)] if script.exists() else [sys.executable, "-m", "btc_ai"]


def _env(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "BTC_AI_"))}
    env.update(MLFLOW_TRACKING_URI=f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}", PYTHONUNBUFFERED="1",
               BTC_AI_PROGRESS_EVERY="1")
    return env


def _check(args: list[str], folder: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(args, cwd=folder, env=env or _env(folder), capture_output=True, text=True,
                            timeout=TIMEOUT_S)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {result.returncode}: {result.stderr.strip()[-2000:]}")
    return result.stdout


def make_store(folder: Path) -> str:
    """Two tiny sessions in ``folder/mlruns`` (one plain, one with a repaired error); returns the second's ID."""
    folder.mkdir(parents=True, exist_ok=True)
    train = [*btc_ai(), "train", "--episodes", "6", *TINY_FLAGS, "--quiet"]
    _check(train, folder)
    out = _check(train, folder, {**_env(folder), "BTC_AI_FAULT": FAULT})
    session = next(line.split()[2] for line in out.splitlines() if line.startswith("session run "))
    return session


def _timed(args: list[str], folder: Path) -> float:
    tick = time.perf_counter()
    _check(args, folder)
    return time.perf_counter() - tick


def _refused(args: list[str], folder: Path) -> float:
    """Seconds until ``args`` is refused (exit 2, as every bad input is)."""
    tick = time.perf_counter()
    result = subprocess.run(args, cwd=folder, env=_env(folder), capture_output=True, text=True, timeout=TIMEOUT_S)
    seconds = time.perf_counter() - tick
    if result.returncode != 2:
        raise RuntimeError(f"{' '.join(args)} exited {result.returncode}, not 2: {result.stderr.strip()[-2000:]}")
    return seconds


def _synthetic_candles() -> float:
    from btc_ai.domain.synthetic import synthetic_candles

    tick = time.perf_counter()
    synthetic_candles(17280, seed=11)
    return time.perf_counter() - tick


def _in_a_new_folder(scratch: Path, template: bool) -> float:
    """`_to_first_generation` in a folder without a store: the store built from the template of this MLflow's
    stores (as every new store is after the first), or by MLflow's own migrations (``BTC_AI_STORE_TEMPLATE=off``)."""
    folder = Path(tempfile.mkdtemp(dir=scratch))
    return _to_first_generation(folder, {} if template else {"BTC_AI_STORE_TEMPLATE": "off"})


def _to_first_generation(folder: Path, extra: dict[str, str] | None = None) -> float:
    """Seconds from starting `btc-ai train` to its `gen 1/` line on stdout; the training is then killed."""
    tick = time.perf_counter()
    proc = subprocess.Popen([*btc_ai(), "train", "--episodes", "1000", *TINY_FLAGS], cwd=folder,
                            env={**_env(folder), **(extra or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("gen 1/"):
                return time.perf_counter() - tick
        raise RuntimeError(f"`btc-ai train` ended before its first generation: {proc.communicate()[1][-2000:]}")
    finally:
        proc.kill()
        proc.communicate(timeout=TIMEOUT_S)


def _median(fn, repeats: int = REPEATS) -> tuple[float, list[float]]:
    fn()  # untimed
    times = [fn() for _ in range(repeats)]
    return statistics.median(times), times


def measure(store: Path, session: str, scratch: Path) -> list[Record]:
    cases = {
        "startup_help_seconds": ("`btc-ai --help`", lambda: _timed([*btc_ai(), "--help"], store)),
        "startup_presets_seconds": ("`btc-ai presets`", lambda: _timed([*btc_ai(), "presets"], store)),
        "startup_report_seconds": (f"`btc-ai report <session>` on a store of two tiny sessions (the one with "
                                   f"2 attempts and a repair, {FAULT})",
                                   lambda: _timed([*btc_ai(), "report", session], store)),
        "startup_train_first_generation_seconds": (
            "`btc-ai train` (tiny config, built-in data, existing local store) until `gen 1/` on stdout",
            lambda: _to_first_generation(scratch)),
        "startup_train_new_store_seconds": (
            "`btc-ai train` as above in a folder without a store: a new store from the template of this MLflow's "
            "stores", lambda: _in_a_new_folder(scratch, template=True)),
        "startup_train_new_store_mlflow_build_seconds": (
            "the same with BTC_AI_STORE_TEMPLATE=off: the new store built by MLflow's migrations",
            lambda: _in_a_new_folder(scratch, template=False)),
        "startup_refused_uri_seconds": ("`btc-ai train --tracking-uri file:./mlruns` refused (exit 2)",
                                        lambda: _refused([*btc_ai(), "train", "--tracking-uri", "file:./mlruns"],
                                                         store)),
        "startup_refused_run_seconds": ("`btc-ai resume <unknown run ID>` on the store refused (exit 2)",
                                        lambda: _refused([*btc_ai(), "resume", "0" * 32], store)),
        "synthetic_candles_60_days_seconds": ("synthetic_candles(17280): the 60 days of 5-minute candles `make "
                                              "train` trains on by default, in process", _synthetic_candles),
        "diag_startup_python_seconds": ("the bare interpreter (`python -c pass`): the floor of every case above",
                                        lambda: _timed([sys.executable, "-c", "pass"], store)),
    }
    records = []
    for name, (what, fn) in cases.items():
        value, times = _median(fn)
        runs = ", ".join(f"{t:.2f}" for t in times)
        how = "in process" if name.startswith("synthetic") else "fresh process each"
        records.append(Record(name, value, "s", f"{what}; {how}, median of {REPEATS} ({runs} s)"))
    return records


class FamilyCpuMeter:
    """CPU other processes took while a block ran, in cores; unlike ``common.CpuMeter`` the block's own child
    processes (every case here is one) are not counted as foreign."""

    def __enter__(self) -> FamilyCpuMeter:
        self.start, self.tick, self.foreign_cores = _ticks(), time.perf_counter(), None
        return self

    def __exit__(self, *exc: object) -> None:
        end = _ticks()
        if self.start is None or end is None:
            return
        wall = max(time.perf_counter() - self.tick, 1e-9)
        busy, mine = end[0] - self.start[0], end[1] - self.start[1]
        self.foreign_cores = max(0.0, (busy - mine) / os.sysconf("SC_CLK_TCK") / wall)


def _ticks() -> tuple[int, int] | None:
    """(busy ticks of the whole machine, ticks of this process and its waited-for children)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        own = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None
    return sum(fields) - fields[3] - fields[4], sum(int(v) for v in own[11:15])  # utime stime cutime cstime


def run() -> list[Record]:
    with tempfile.TemporaryDirectory() as tmp:
        store, scratch = Path(tmp) / "store", Path(tmp) / "scratch"
        tick = time.perf_counter()
        session = make_store(store)
        built = time.perf_counter() - tick
        scratch.mkdir()
        for attempt in range(ATTEMPTS):  # as common.guarded, with the children's CPU not counted as foreign
            wait_for_quiet()
            with FamilyCpuMeter() as meter:
                records = measure(store, session, scratch)
            load = meter.foreign_cores
            if load is None or load <= NOISY_CORES or attempt == ATTEMPTS - 1:
                break
    suffix = "foreign load n/a" if load is None else f"foreign load {load:.2f} cores, attempt {attempt + 1}"
    for record in records:
        record.note = f"{record.note}; {suffix}"
    records[0].note += f"; store of two sessions built in {built:.0f} s"
    return records


if __name__ == "__main__":
    for record in run():
        print(f"{record.name:42s} {record.value:8.3f} {record.unit}  {record.note}")
