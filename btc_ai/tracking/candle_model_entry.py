"""The code of the registered pyfunc model (MLflow "models from code"): the model object it serves."""

from mlflow.models import set_model

from btc_ai.tracking.candle_model import CandlePolicyModel

set_model(CandlePolicyModel())
