"""Features: causal (no look-ahead), finite, bounded, scale-free."""

from __future__ import annotations

import numpy as np

from btc_ai.domain.features import CLIP, compute_features, feature_names, warmup_bars


def test_changing_candles_after_t_changes_no_feature_at_or_before_t(candles) -> None:
    base = compute_features(candles, 12)
    rng = np.random.default_rng(0)
    for t in (200, 3000, len(candles) - 2):
        changed = candles.copy()
        factor = np.exp(rng.normal(0, 0.01, len(candles) - t - 1))
        for column in ("open", "high", "low", "close"):
            changed.iloc[t + 1 :, changed.columns.get_loc(column)] *= factor
        changed.iloc[t + 1 :, changed.columns.get_loc("volume")] *= 3.0
        other = compute_features(changed, 12)
        np.testing.assert_array_equal(base.values[: t + 1], other.values[: t + 1])
        assert not np.array_equal(base.values[t + 1 :], other.values[t + 1 :])


def test_features_are_finite_bounded_and_named(candles) -> None:
    feats = compute_features(candles, 16)
    assert feats.values.dtype == np.float32
    assert feats.values.shape == (len(candles), len(feature_names(16)))
    assert np.isfinite(feats.values).all()
    assert np.abs(feats.values).max() <= CLIP
    assert feats.valid_from == warmup_bars(16)
    live = feats.values[feats.valid_from :]
    assert (live.std(axis=0) > 0).all()  # no dead feature after warm-up


def test_features_do_not_depend_on_the_price_level(candles) -> None:
    doubled = candles.copy()
    doubled[["open", "high", "low", "close"]] *= 2.0
    np.testing.assert_allclose(compute_features(candles, 12).values, compute_features(doubled, 12).values, atol=1e-4)
