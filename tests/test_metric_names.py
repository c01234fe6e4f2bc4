"""Every metric name is spelled out in one module, `btc_ai/domain/metric_names.py` (re-exported by the run model's
names.py): read from the source, no other module of btc_ai holds a string literal that starts with a metric prefix
(``fitness/``, ``test/``, ``baseline/``, ...), in a plain string or an f-string, a read of an old run's name
included; and the prefixes cover every name the pinned session record holds."""

from __future__ import annotations

import ast
import json
from pathlib import Path

from conftest import ROOT

from btc_ai.domain.metric_names import METRIC_PREFIXES

PACKAGE = ROOT / "btc_ai"
NAMES_MODULES = {PACKAGE / "domain" / "metric_names.py", PACKAGE / "tracking" / "run_model" / "names.py"}


def spelled_out(source: str, where: str) -> list[str]:
    """Each string literal of ``source`` (f-strings' literal parts included) that starts with a metric prefix."""
    return [f"{where}:{node.lineno} {node.value!r}: a metric name spelled out (name it in btc_ai/domain/metric_names.py)"
            for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith(METRIC_PREFIXES)]


def test_no_metric_name_is_spelled_out_outside_the_names_modules() -> None:
    found = [v for path in sorted(PACKAGE.rglob("*.py")) if path not in NAMES_MODULES
             for v in spelled_out(path.read_text(), str(path.relative_to(ROOT)))]
    assert not found, "\n".join(found)


def test_the_check_finds_literal_names_and_composed_ones() -> None:
    source = '''
metrics = {"fitness/mean": 1.0}
ret = metrics.get(f"test/{figure}")
old = legacy_figure(metrics, "best/validation_trades")
rule = f"baseline/{rule}/sharpe"
fine = (METRIC_FITNESS_MEAN, span_metric(SPAN_TEST, figure), f"{span}/{figure}", "models:/x/1", "n/a")
'''
    assert sorted(line.split(" ")[0] for line in spelled_out(source, "m")) == ["m:2", "m:3", "m:4", "m:5"]


def test_the_prefixes_cover_every_recorded_metric_name() -> None:
    record = json.loads(Path(ROOT / "tests" / "data" / "session_record.json").read_text())
    runs = [*record["attempts"], record["session"], *record["repairs"], *record["logged_models"]]
    names = {name for run in runs for name in run.get("metrics", {}) if "/" in name}
    assert names, "the session record holds no metric name with a prefix: the record's layout changed"
    assert not {n for n in names if not n.startswith(METRIC_PREFIXES)}
