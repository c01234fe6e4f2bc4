"""The policy's size from config values alone (no numpy, no torch): how many features a look-back gives,
and how many parameters an MLP of a given width and depth has over them. The config checks it against
the noise table; the features and the policy are built from the same numbers."""

from __future__ import annotations

from itertools import pairwise

N_ACTIONS = 3  # short, flat, long
# the features after the return horizons, in column order (btc_ai.domain.features computes them)
OTHER_FEATURES = ("vol_regime", "bar_range", "close_location", "volume_z", "sma_distance", "channel_position",
                  "hour_sin", "hour_cos")


# FEATURES="trend" adds, over a slow window of 7 x LOOKBACK bars (a week when LOOKBACK is a day), the return, the
# close against its moving average and the fast (LOOKBACK) average against the slow one, volatility-scaled
TREND_FEATURES = ("ret_slow", "sma_distance_slow", "sma_cross")
FEATURE_SETS = ("base", "trend")
SLOW_FACTOR = 7


def return_horizons(lookback: int) -> list[int]:
    """Look-backs (in bars) of the return features: short to ``lookback``."""
    return sorted({1, 2, 4, max(1, lookback // 2), lookback, 4 * lookback})


def n_features(lookback: int, features: str = "base") -> int:
    return len(return_horizons(lookback)) + len(OTHER_FEATURES) + (len(TREND_FEATURES) if features == "trend" else 0)


def param_count(n_inputs: int, hidden_size: int, hidden_layers: int) -> int:
    """Weights and biases of inputs -> hidden x layers -> 3 action logits."""
    sizes = [n_inputs] + [hidden_size] * hidden_layers + [N_ACTIONS]
    return sum(i * o + o for i, o in pairwise(sizes))


def policy_param_count(lookback: int, hidden_size: int, hidden_layers: int, features: str = "base") -> int:
    return param_count(n_features(lookback, features), hidden_size, hidden_layers)
