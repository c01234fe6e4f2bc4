"""The registered model: an `mlflow.pyfunc` model that takes OHLCV candles (a DataFrame with a timestamp
column or index, in any layout `load_candles` reads, at 5 minutes or the policy's own timeframe) and
returns the policy's position per bar (-1/0/1) with the three action probabilities. It carries its policy
(`policy/policy.safetensors` + `policy/policy.json`: weights, feature spec, look-back, timeframe, cost
model) and is saved as MLflow "models from code", so loading it unpickles nothing."""

from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types.schema import AnyType, ColSpec, Schema

from btc_ai.domain.backtest import policy_frame
from btc_ai.domain.policy_files import load_policy

POLICY_ARTIFACT = "policy"
ENTRY = Path(__file__).with_name("candle_model_entry.py")
SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec(AnyType(), "timestamp", required=False), *(ColSpec("double", c) for c in
                   ("open", "high", "low", "close", "volume"))]),
    outputs=Schema([ColSpec("string", "timestamp"), ColSpec("long", "position"), ColSpec("double", "p_short"),
                    ColSpec("double", "p_flat"), ColSpec("double", "p_long"), ColSpec("boolean", "ready")]),
)
DESCRIPTION = (
    "Takes OHLCV candles (columns open, high, low, close, volume and a timestamp column or index; 5-minute "
    "candles are resampled to the bucket's timeframe) and returns, per bar, the position the policy takes at "
    "its close (-1 short, 0 flat, +1 long) and the probabilities of the three actions; the first bars of "
    "the feature look-back are `ready = false` and flat. Load with mlflow.pyfunc.load_model(uri).predict(df); "
    "torch users: btc_ai.load_policy(<downloaded model>/artifacts/policy)."
)


class CandlePolicyModel(mlflow.pyfunc.PythonModel):
    """Candles in, positions out (see the module docstring)."""

    def load_context(self, context):
        self.net, self.card = load_policy(context.artifacts[POLICY_ARTIFACT])

    def predict(self, context, model_input: pd.DataFrame, params=None):
        frame = policy_frame(self.net, self.card, _candles(model_input))
        frame["timestamp"] = frame["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        return frame


def _candles(model_input: Any) -> Any:
    """The input as `load_candles` reads it: a timestamp index kept, or the timestamp column."""
    import pandas as pd

    frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
    if "timestamp" in frame.columns:
        frame = frame.set_index(pd.to_datetime(frame["timestamp"], utc=True)).drop(columns="timestamp")
    return frame


REQUIREMENTS = ["btc_ai", "torch", "pandas", "safetensors"]
EXAMPLE_ROWS = 24


def input_example() -> pd.DataFrame:
    """What the model takes, for its page and its serving example: two hours of (synthetic, fixed) 5-minute
    candles with a timestamp column, as JSON carries it."""
    from btc_ai.domain.synthetic import synthetic_candles

    frame = synthetic_candles(EXAMPLE_ROWS).reset_index()
    frame["timestamp"] = frame["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    return frame


