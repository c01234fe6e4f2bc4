"""The promotion gate: a model version becomes the champion only when it did well on data that was not
used to select it (the test span), after the same costs: a net return above flat (0) and a risk-adjusted
return (Sharpe) above that of every rule baseline over the same span (buy-and-hold, flat, the SMA
crossover, momentum), naming the one it lost to."""

from __future__ import annotations

from collections.abc import Mapping

from btc_ai.domain.baselines import RULE_NAMES, RULES, best_rule
from btc_ai.domain.metric_names import (
    METRIC_TEST_BUY_AND_HOLD_SHARPE,
    METRIC_TEST_SHARPE,
    METRIC_TEST_TOTAL_RETURN,
    baseline_metric,
)


def promotion_verdict(test: Mapping[str, float]) -> tuple[bool, str]:
    """(passes, why) from a version's out-of-sample figures (``test/...`` and ``baseline/<rule>/...`` metrics;
    a record from before the rule baselines is held to buy-and-hold's Sharpe alone)."""
    if METRIC_TEST_TOTAL_RETURN not in test:
        return False, "no out-of-sample figures (the training held out no test span: TEST_FRACTION=0)"
    ret, sharpe = test[METRIC_TEST_TOTAL_RETURN], test[METRIC_TEST_SHARPE]
    sharpes = {rule: test[baseline_metric(rule, "sharpe")] for rule in RULES if baseline_metric(rule, "sharpe") in test}
    if not sharpes:
        sharpes = {"buy_and_hold": test[METRIC_TEST_BUY_AND_HOLD_SHARPE]}
    rule, best = best_rule(sharpes)
    name = RULE_NAMES[rule]
    if ret <= 0:
        return False, f"test return {ret:+.2%} after costs is not above flat (0)"
    if sharpe <= best:
        return False, (f"test Sharpe {sharpe:+.2f} is not above the best rule baseline's over the same span: "
                       f"{name} {best:+.2f}")
    return True, f"test return {ret:+.2%} > 0 and Sharpe {sharpe:+.2f} > the best rule baseline's ({name} {best:+.2f})"
