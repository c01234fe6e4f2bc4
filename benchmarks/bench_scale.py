"""Years of 5-minute candles (issue 23 item 4, the measuring half): synthetic candles for one year (105,120
rows) and three years (315,360) written as one raw-Binance CSV, a folder of monthly Binance zips and one
Parquet file; `load_candles` time and peak memory for each form, the feature computation on the Scalping
timeframe, and one Scalping generation (default config, population 48) on a month, a year and three years.
The CSV and zip loads are measured with the candle cache off, then on: the first load (which writes the
entry) and a load from the cache, each in a fresh process.

Every case runs in a fresh process, so its peak memory (VmHWM) is its own and no cache of an earlier case
helps it. Run alone: ``python -m benchmarks.run --only scale``; one case: ``python -m benchmarks.bench_scale``.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import THREADS, Record, guarded
from btc_ai.domain.synthetic import synthetic_candles

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the Binance writers the tests use

from binance_mirror import kline_zip  # noqa: E402
from conftest import write_binance_csv  # noqa: E402

BARS_PER_YEAR = 365 * 288
YEARS = (1, 3)
MONTH_ROWS = 30 * 288
EPISODES = 10  # generations 5 and 10 also score the validation span (EVAL_INTERVAL 5); generation 1 warms up
TIMEOUT_S = 900


def run() -> list[Record]:
    with tempfile.TemporaryDirectory() as tmp:
        forms = {years: _write(Path(tmp), years) for years in YEARS}
        return guarded(lambda: measure(forms, Path(tmp)))


def _write(tmp: Path, years: int) -> dict[str, Path]:
    """The same candles as one CSV, a folder of monthly zips and one Parquet file."""
    candles = synthetic_candles(n_rows=years * BARS_PER_YEAR, seed=11, start="2021-01-01", interval="5min")
    base = tmp / f"{years}y"
    zips = base / "zips"
    zips.mkdir(parents=True)
    csv = write_binance_csv(base / "candles.csv", candles)
    months = candles.index.strftime("%Y-%m")
    for stamp in sorted(set(months)):
        name = f"BTCUSDT-5m-{stamp}"
        (zips / f"{name}.zip").write_bytes(kline_zip(candles[months == stamp], f"{name}.csv", base))
    parquet = base / "candles.parquet"
    candles.reset_index().to_parquet(parquet, index=False)
    return {"csv": csv, "zips": zips, "parquet": parquet}


def _child(*args: str, cache: Path | None = None) -> dict[str, float]:
    """One case in a fresh process; the candle cache off, or in ``cache``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "BTC_AI_"))}
    env.update(PYTHONPATH=str(ROOT), **({"BTC_AI_CACHE_DIR": str(cache)} if cache else {"BTC_AI_CANDLE_CACHE": "off"}))
    done = subprocess.run([sys.executable, "-m", "benchmarks.bench_scale", *args], env=env, capture_output=True,
                          text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(forms: dict[int, dict[str, Path]], tmp: Path) -> list[Record]:
    records: list[Record] = []
    for years, paths in forms.items():
        rows = years * BARS_PER_YEAR
        for form, path in paths.items():
            got = _child("load", str(path))
            assert got["rows"] == rows, (form, got)
            what = {"csv": "one raw-Binance CSV", "zips": f"a folder of {12 * years} monthly zips",
                    "parquet": "one Parquet file"}[form]
            note = f"`load_candles` of {rows:,} 5-minute rows from {what}, a fresh process"
            records.append(Record(f"scale_load_{form}_{years}y_seconds", got["seconds"], "s", note))
            records.append(Record(f"scale_load_{form}_{years}y_peak_mib", got["peak_mib"], "MiB",
                                  f"{note}: its peak RSS (VmHWM), {got['baseline_mib']:.0f} MiB of it imports"))
            if form != "parquet":  # Parquet sources are not cached
                records += _cached(form, years, path, tmp / f"cache-{form}-{years}y", note)
        got = _child("features", str(paths["parquet"]))
        records.append(Record(f"scale_features_{years}y_seconds", got["features"], "s",
                              f"`compute_features` (Scalping, lookback 12) on {rows:,} 5-minute bars"))
        records.append(Record(f"scale_split_{years}y_seconds", got["split"], "s",
                              f"`market_split` (features + train/validation/test) on {rows:,} bars, Scalping"))

    month = tmp / "month.parquet"
    synthetic_candles(n_rows=MONTH_ROWS, seed=11, start="2021-01-01").reset_index().to_parquet(month, index=False)
    spans = {"1m": month, **{f"{y}y": forms[y]["parquet"] for y in YEARS}}
    bare: dict[str, float] = {}
    for label, path in spans.items():
        got = _child("train", str(path))
        bare[label] = got["bare"]
        note = (f"one Scalping generation (default config, population 48) on {label} of 5-minute candles: "
                "median of generations 2-4 and 6-9 (no validation in them, warm)")
        records.append(Record(f"scale_generation_{label}_seconds", got["bare"], "s", note))
        records.append(Record(f"scale_generation_with_validation_{label}_seconds", got["validated"], "s",
                              "generations 5 and 10 of the same training (mean): they also score the validation span"))
        records.append(Record(f"scale_train_{label}_wall_seconds", got["wall"], "s",
                              f"`train_model` of {EPISODES} generations on {label}, data preparation and the "
                              "final validation/test scoring included (a fresh process)"))
    for years in YEARS:
        records.append(Record(f"scale_generation_{years}y_vs_month_pct", 100 * (bare[f"{years}y"] / bare["1m"] - 1),
                              "%", f"a bare Scalping generation on {years} year(s) against one month"))
    return records


def _cached(form: str, years: int, path: Path, cache: Path, note: str) -> list[Record]:
    """The same load with the candle cache: the first (parses and writes the entry), then from the entry."""
    cold = _child("load", str(path), cache=cache)
    warm = _child("load", str(path), cache=cache)
    assert warm["rows"] == cold["rows"] == years * BARS_PER_YEAR and warm["fingerprint"] == cold["fingerprint"]
    return [
        Record(f"scale_load_{form}_{years}y_cache_write_seconds", cold["seconds"], "s",
               f"{note}, the candle cache on and empty: parsed, then written to the cache"),
        Record(f"scale_load_{form}_{years}y_cached_seconds", warm["seconds"], "s",
               f"{note}, from the candle cache (every file hashed, the Parquet entry read and checked)"),
        Record(f"scale_load_{form}_{years}y_cached_peak_mib", warm["peak_mib"], "MiB",
               f"{note}, from the candle cache: its peak RSS (VmHWM)"),
    ]


def _peak_mib() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _case(kind: str, path: str) -> dict[str, float]:
    import torch

    from btc_ai.domain.config import TrainingConfig
    from btc_ai.domain.data import data_fingerprint, load_candles, resample_candles

    torch.set_num_threads(THREADS)
    if kind == "load":
        baseline = _peak_mib()
        tick = time.perf_counter()
        candles, _ = load_candles(path)
        seconds = time.perf_counter() - tick
        return {"seconds": seconds, "rows": len(candles), "peak_mib": _peak_mib(), "baseline_mib": baseline,
                "fingerprint": data_fingerprint(candles)}
    config = TrainingConfig.from_dict({"EPISODES": EPISODES})
    candles, _ = load_candles(path)
    if kind == "features":
        from btc_ai.domain.features import compute_features
        from btc_ai.training.loop import market_split

        bars = resample_candles(candles, config.TIMEFRAME)
        tick = time.perf_counter()
        compute_features(bars, config.LOOKBACK, config.FEATURES)
        features = time.perf_counter() - tick
        tick = time.perf_counter()
        market_split(bars, config)
        return {"features": features, "split": time.perf_counter() - tick}
    from btc_ai.training.loop import train_model

    tick = time.perf_counter()
    _, metrics, _, _ = train_model(config, candles)
    wall = time.perf_counter() - tick
    rows = metrics["history"][1:]  # the first generation pays one-off warm-up
    bare = [r["perf/seconds_per_generation"] for r in rows if "validation/score" not in r]
    validated = [r["perf/seconds_per_generation"] for r in rows if "validation/score" in r]
    return {"bare": statistics.median(bare), "validated": statistics.fmean(validated), "wall": wall}


if __name__ == "__main__":
    if len(sys.argv) == 3:
        print(json.dumps(_case(sys.argv[1], sys.argv[2])))
    else:
        for record in run():
            print(record)
