"""Saying plainly when a training collapsed to flat: its selected policy never trades."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from btc_ai.domain.metric_names import (
    METRIC_BEST_GENERATION,
    METRIC_BEST_VALIDATION_POSITION_CHANGES,
    METRIC_TEST_POSITION_CHANGES,
)
from btc_ai.domain.trade_stats import legacy_figure


def never_trades(metrics: Mapping[str, Any]) -> bool:
    """The selected policy made no trade on the validation span nor (when held out) on the test span."""
    validation = legacy_figure(metrics, METRIC_BEST_VALIDATION_POSITION_CHANGES)
    if validation is None:
        return False
    return validation == 0 and legacy_figure(metrics, METRIC_TEST_POSITION_CHANGES, 0) == 0


def collapse_line(metrics: Mapping[str, Any]) -> str | None:
    """``collapsed to flat at generation N: ...`` (N: the selected policy's generation) when it never trades."""
    if not never_trades(metrics):
        return None
    generation = metrics.get("best_generation", metrics.get(METRIC_BEST_GENERATION))
    tested = legacy_figure(metrics, METRIC_TEST_POSITION_CHANGES) is not None
    spans = "the validation and test spans" if tested else "the validation span"
    at = f" at generation {int(generation)}" if generation is not None else ""
    return (f"collapsed to flat{at}: the selected policy never trades (0 trades on {spans}); its figures are "
            "flat's, and any rule baseline with a positive Sharpe beats it")
