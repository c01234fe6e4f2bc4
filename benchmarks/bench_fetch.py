"""`btc-ai data fetch` of 36 monthly zips of 5-minute candles (three years, each month a Binance-sized zip of
the raw 12-column layout) from a mirror on 127.0.0.1 (tests/binance_mirror.py): the whole fetch as a user runs
it (a fresh process, every checksum verified), a second run (everything already verified), and a fetch
SIGKILLed half-way through a file and run again, counting the verified files it fetched a second time.

Run alone: ``python -m benchmarks.run --only fetch``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import Record, guarded
from btc_ai.domain.synthetic import synthetic_candles

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the mirror the tests use (it builds zips with conftest's writer)

from binance_mirror import STALL, Mirror, kline_zip  # noqa: E402

SYMBOL, INTERVAL, MONTHS = "BTCUSDT", "5m", 36
KILL_IN = 19  # the month whose download is killed half-way (18 verified before it)
TIMEOUT_S = 300


def run() -> list[Record]:
    with tempfile.TemporaryDirectory() as tmp, Mirror() as mirror:
        stamps, size = _publish(mirror, Path(tmp))
        return guarded(lambda: measure(mirror, Path(tmp), stamps, size))


def _publish(mirror: Mirror, tmp: Path) -> tuple[list[str], int]:
    """36 months from 2021-01 of synthetic 5-minute candles, one zip each; their total size."""
    series = synthetic_candles(n_rows=1096 * 288, seed=11, start="2021-01-01", interval="5min")
    months = series.index.strftime("%Y-%m")
    stamps = sorted(set(months))[:MONTHS]
    size = 0
    for stamp in stamps:
        data = kline_zip(series[months == stamp], f"{SYMBOL}-{INTERVAL}-{stamp}.csv", tmp)
        mirror.publish(SYMBOL, INTERVAL, stamp, data)
        size += len(data)
    return stamps, size


def _command(mirror: Mirror, dest: Path, stamps: list[str]) -> list[str]:
    return [sys.executable, "-m", "btc_ai", "data", "fetch", SYMBOL, INTERVAL, "--from", stamps[0], "--to",
            stamps[-1], "--dest", str(dest), "--base-url", mirror.url]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "BTC_AI_"))}
    env.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", BTC_AI_FETCH_BACKOFF_S="0")
    return env


def _timed(args: list[str]) -> float:
    tick = time.perf_counter()
    done = subprocess.run(args, env=_env(), capture_output=True, text=True, timeout=TIMEOUT_S)
    seconds = time.perf_counter() - tick
    assert done.returncode == 0, done.stderr
    return seconds


def measure(mirror: Mirror, tmp: Path, stamps: list[str], size: int) -> list[Record]:
    runs = len(list(tmp.glob("fetch-*")))
    dest = tmp / f"fetch-{runs}"
    mirror.requests.clear()
    fetch_s = _timed(_command(mirror, dest, stamps))
    verified = sum((dest / f"{SYMBOL}-{INTERVAL}-{s}.zip").read_bytes() == mirror.files[mirror.paths[s]]
                   for s in stamps)
    rerun_s = _timed(_command(mirror, dest, stamps))

    # killed half-way through month KILL_IN, then run again
    killed = tmp / f"fetch-{runs}-killed"
    mirror.requests.clear()
    mirror.stalled.clear()
    mirror.release.clear()
    mirror.faults[mirror.paths[stamps[KILL_IN - 1]]] = [STALL]
    proc = subprocess.Popen(_command(mirror, killed, stamps), env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    assert mirror.stalled.wait(TIMEOUT_S)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(TIMEOUT_S)
    proc.communicate()
    mirror.release.set()
    before = sorted(p.name for p in killed.glob("*.zip"))
    resume_s = _timed(_command(mirror, killed, stamps))
    again = sum(len(mirror.zip_gets(mirror.paths[s])) - 1 for s in stamps[: KILL_IN - 1])
    resumed_ok = sum((killed / f"{SYMBOL}-{INTERVAL}-{s}.zip").read_bytes() == mirror.files[mirror.paths[s]]
                     for s in stamps)
    assert resumed_ok == MONTHS and verified == MONTHS, (resumed_ok, verified)
    mib = size / (1 << 20)
    note = f"{MONTHS} zips, {mib:.1f} MiB, from a mirror on 127.0.0.1; a fresh `btc-ai data fetch` process"
    return [
        Record("fetch_36_months_seconds", fetch_s, "s", f"{note}; every sha256 checked against its .CHECKSUM"),
        Record("fetch_36_months_mib_per_s", mib / fetch_s, "MiB/s", note),
        Record("fetch_checksums_verified", float(verified), "files", "files byte-identical to the mirror's"),
        Record("fetch_rerun_all_verified_seconds", rerun_s, "s", "second run: every file verified here, no request"),
        Record("fetch_resume_seconds", resume_s, "s",
               f"after a SIGKILL half-way through month {KILL_IN} ({len(before)} files verified before it)"),
        Record("fetch_resume_redownloaded_files", float(again), "files",
               "verified files fetched again by the resumed fetch"),
    ]


if __name__ == "__main__":
    for record in run():
        print(record)
