"""Layering: the domain never loads mlflow or tenacity, and `import btc_ai` stays light."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

DOMAIN = ["domain.errors", "domain.presets", "domain.config", "domain.data", "domain.synthetic", "domain.features",
          "domain.market", "domain.policy", "domain.noise", "domain.es", "domain.evaluation", "training.checkpoint",
          "training.loop"]


# each check is a fresh Python that imports torch, pandas or mlflow: seconds apiece
pytestmark = pytest.mark.slow


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return {name.split(".")[0] for name in out.split()}


def test_domain_and_training_modules_import_without_mlflow_or_tenacity() -> None:
    loaded = _loaded_after("; ".join(f"import btc_ai.{m}" for m in DOMAIN))
    assert "torch" in loaded and "pandas" in loaded  # the check really imported the modules
    assert "mlflow" not in loaded
    assert "tenacity" not in loaded
    assert "ray" not in loaded


def test_importing_the_package_is_light_and_names_load_on_first_use() -> None:
    loaded = _loaded_after("import btc_ai")
    assert not {"torch", "pandas", "mlflow", "ray"} & loaded
    loaded = _loaded_after("from btc_ai import train_model, load_candles, TrainingRecoverySystem")
    assert {"torch", "pandas", "mlflow"} <= loaded
    assert "ray" not in loaded


def test_the_cli_of_a_local_training_never_imports_ray() -> None:
    loaded = _loaded_after("import btc_ai.cli.main, btc_ai.cli.train, btc_ai.cli.cluster, btc_ai.recovery, "
                           "btc_ai.training.cluster.address")
    assert "torch" in loaded  # the training's modules really loaded (the recovery floor imports torch)
    assert "ray" not in loaded
    if importlib.util.find_spec("ray") is not None:  # and the check sees ray where a module does import it
        assert "ray" in _loaded_after("import btc_ai.training.cluster.evaluator")
