"""Models you can trust, measured: a backtest of one year of 5-minute candles (105,120 bars) after imports;
loading the registered model through pyfunc and predicting 10,000 candles in a fresh process (after its
imports); and the whole `btc-ai train` of one generation (tiny config) on an existing store.

Run alone: ``python -m benchmarks.run --only models``.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.bench_startup import TINY_FLAGS, _check, _env, btc_ai
from benchmarks.common import Record

REPEATS = 3


def _train_one_generation(folder: Path) -> float:
    tick = time.perf_counter()
    _check([*btc_ai(), "train", "--episodes", "1", *TINY_FLAGS, "--quiet"], folder)
    return time.perf_counter() - tick


def _fresh_predict(folder: Path, candles: Path) -> float:
    """Seconds a fresh process takes to load models:/btc-ai-scalping/latest and predict, after its imports."""
    code = ("import time, pandas as pd, mlflow.pyfunc\n"
            f"frame = pd.read_parquet({str(candles)!r})\n"
            "tick = time.perf_counter()\n"
            "mlflow.pyfunc.load_model('models:/btc-ai-scalping/latest').predict(frame)\n"
            "print(time.perf_counter() - tick)\n")
    out = _check([sys.executable, "-c", code], folder)
    return float(out.strip().splitlines()[-1])


def run() -> list[Record]:
    from btc_ai import backtest
    from btc_ai.domain.synthetic import synthetic_candles

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        one = [_train_one_generation(folder) for _ in range(REPEATS + 1)][1:]  # the first creates the store
        year = synthetic_candles(105_120, seed=1)
        candles = folder / "candles.parquet"
        year.iloc[:10_000].to_parquet(candles)
        uri = _env(folder)["MLFLOW_TRACKING_URI"]
        backtest("models:/btc-ai-scalping/latest", year.iloc[:2000], tracking_uri=uri)  # warm-up: imports, caches
        times = []
        for _ in range(REPEATS):
            tick = time.perf_counter()
            backtest("models:/btc-ai-scalping/latest", year, tracking_uri=uri)
            times.append(time.perf_counter() - tick)
        predict = [_fresh_predict(folder, candles) for _ in range(REPEATS)]
    return [
        Record("models_backtest_year_seconds", statistics.median(times), "s",
               f"btc_ai.backtest of 105,120 5-minute bars (one year) with the registered model, after imports; median "
               f"of {REPEATS} ({', '.join(f'{t:.2f}' for t in times)} s), null check included"),
        Record("models_pyfunc_predict_10k_seconds", statistics.median(predict), "s",
               "a fresh process: mlflow.pyfunc.load_model('models:/btc-ai-scalping/latest').predict(10,000 candles), "
               f"after its imports; median of {REPEATS} ({', '.join(f'{t:.2f}' for t in predict)} s)"),
        Record("models_train_one_generation_seconds", statistics.median(one), "s",
               "`btc-ai train --episodes 1` (tiny config, built-in data) end to end on an existing store: imports, "
               f"store, training, registration, plots; median of {REPEATS} ({', '.join(f'{t:.2f}' for t in one)} s)"),
    ]


if __name__ == "__main__":  # pragma: no cover
    for record in run():
        print(f"{record.name}: {record.value:.3f} {record.unit} ({record.note})")
