"""The promotion gate: a model version becomes the champion only when it did well on data that was not
used to select it (the test span), after the same costs: a net return above flat (0) and a risk-adjusted
return (Sharpe) above buy-and-hold's over the same span."""

from __future__ import annotations

from collections.abc import Mapping


def promotion_verdict(test: Mapping[str, float]) -> tuple[bool, str]:
    """(passes, why) from a version's out-of-sample figures (``test/...`` metrics)."""
    if "test/total_return" not in test:
        return False, "no out-of-sample figures (the training held out no test span: TEST_FRACTION=0)"
    ret, sharpe, hold = test["test/total_return"], test["test/sharpe"], test["test/buy_and_hold_sharpe"]
    if ret <= 0:
        return False, f"test return {ret:+.2%} after costs is not above flat (0)"
    if sharpe <= hold:
        return False, f"test Sharpe {sharpe:+.2f} is not above buy-and-hold's {hold:+.2f} over the same span"
    return True, f"test return {ret:+.2%} > 0 and Sharpe {sharpe:+.2f} > buy-and-hold's {hold:+.2f}"
