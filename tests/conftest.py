"""Shared fixtures: small candle sets, tiny configs, a tracking store under tmp_path."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = ROOT.parent / "shared" / "data" / "btcusdt_5m_2021-06_binance.csv"

# A config small enough that a whole training takes a fraction of a second.
TINY = {
    "EPISODES": 6,
    "ES_POPULATION": 8,
    "HIDDEN_SIZE": 8,
    "MAX_STEPS_PER_EPISODE": 64,
    "EPISODES_PER_EVAL": 2,
    "EVAL_INTERVAL": 2,
    "MIN_CHECKPOINT_INTERVAL": 2,
    "CHECKPOINT_MIN_SECONDS": 0.0,
    "NOISE_TABLE_SIZE": 1 << 16,
}


@pytest.fixture(scope="session")
def candles() -> pd.DataFrame:
    """Three weeks of synthetic 5-minute candles."""
    from btc_ai.domain.synthetic import synthetic_candles

    return synthetic_candles(n_rows=6048, seed=3)


@pytest.fixture(scope="session")
def real_candles() -> pd.DataFrame:
    if not REAL_DATA.exists():
        pytest.skip(f"real data not present at {REAL_DATA}")
    from btc_ai.domain.data import load_candles

    return load_candles(REAL_DATA)[0]


@pytest.fixture
def tiny() -> dict:
    return dict(TINY)


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"


def cli_env(tmp_path: Path) -> dict[str, str]:
    """Environment for a `btc-ai` subprocess: its own store, no inherited tracking URI."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    env["PYTHONUNBUFFERED"] = "1"
    env["BTC_AI_PROGRESS_EVERY"] = "1"  # a progress line per generation: tests act on `gen N/` lines
    return env


def btc_ai_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "btc_ai", *args]


def write_binance_csv(path: Path, df: pd.DataFrame) -> Path:
    """Candles in the raw Binance kline layout (no header, 12 columns, epoch ms)."""
    ms = (df.index.asi8 // 1_000_000).astype(np.int64)
    out = pd.DataFrame(
        {
            0: ms, 1: df["open"], 2: df["high"], 3: df["low"], 4: df["close"], 5: df["volume"],
            6: ms + 299_999, 7: df["volume"] * df["close"], 8: 100, 9: df["volume"] / 2,
            10: df["volume"] * df["close"] / 2, 11: 0,
        }
    )
    out.to_csv(path, header=False, index=False)
    return path
