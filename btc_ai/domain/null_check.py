"""Timing skill or luck: the policy's net return against time-shifted copies of its own positions.

A shifted copy keeps the exposure (shares of bars long, short and flat) and, but for the wrap-around,
the trades, and pays the same costs; only the timing differs. The percentile of the policy's return
among the copies says whether its timing adds anything: about 50 is what luck gives.
"""

from __future__ import annotations

import numpy as np

from btc_ai.domain.market import step_rewards

SHIFTS = 200


def shifted_returns(positions: np.ndarray, returns: np.ndarray, cost_rate: float, holding_cost: float, *,
                    tradable: np.ndarray | None = None, shifts: int = SHIFTS) -> np.ndarray:
    """Net total returns of ``shifts`` copies of ``positions``, circularly shifted by evenly spaced offsets
    (deterministic: no seed), each from flat to flat like the original."""
    n = len(positions)
    if n < 2:
        return np.zeros(0)
    offsets = np.unique(np.linspace(1, n - 1, min(shifts, n - 1)).round().astype(int))
    rows = (np.arange(n)[None, :] - offsets[:, None]) % n
    copies = positions[rows]
    rewards = step_rewards(copies, returns[None, :], cost_rate, holding_cost, tradable=tradable, close_at_end=True)
    return np.expm1(rewards.astype(np.float64).sum(axis=-1))


def null_percentile(positions: np.ndarray, returns: np.ndarray, cost_rate: float, holding_cost: float, *,
                    tradable: np.ndarray | None = None, shifts: int = SHIFTS) -> float:
    """Percentile (0-100) of the policy's own net return among its shifted copies; ties count half."""
    own = np.expm1(step_rewards(positions, returns, cost_rate, holding_cost, tradable=tradable,
                                close_at_end=True).astype(np.float64).sum())
    null = shifted_returns(positions, returns, cost_rate, holding_cost, tradable=tradable, shifts=shifts)
    if not len(null):
        return 50.0
    return float(100.0 * ((null < own).sum() + 0.5 * (null == own).sum()) / len(null))
