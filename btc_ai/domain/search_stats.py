"""How much a search's best result says, once the number of tries is counted: the deflated Sharpe ratio
(Bailey & López de Prado, 2014) and the probability of backtest overfitting from combinatorially symmetric
cross-validation (Bailey, Borwein, López de Prado & Zhu, 2017). Plain numbers in, plain numbers out.

Every Sharpe ratio here is per observation (not annualized): the mean of the returns over their sample
standard deviation. Skew and kurtosis are the sample moments (kurtosis not in excess: 3 for a normal law).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

EULER_GAMMA = 0.5772156649015329
LUCK_LEVEL = 0.95  # a deflated Sharpe below this: the best configuration is indistinguishable from luck


def sharpe(returns: Sequence[float]) -> float:
    """Mean over sample standard deviation (ddof 1); NaN for fewer than two returns or no spread."""
    r = np.asarray(returns, dtype=float)
    if r.size < 2:
        return float("nan")
    sd = float(np.std(r, ddof=1))
    return float(np.mean(r)) / sd if sd > 0 else float("nan")


def moments(returns: Sequence[float]) -> tuple[float, float]:
    """(skew, kurtosis) of ``returns`` from their central moments; (0, 3), a normal law's, when they have no spread."""
    r = np.asarray(returns, dtype=float)
    d = r - r.mean()
    m2 = float(np.mean(d**2))
    if m2 <= 0:
        return 0.0, 3.0
    return float(np.mean(d**3)) / m2**1.5, float(np.mean(d**4)) / m2**2


def probabilistic_sharpe(sr: float, benchmark: float, observations: int, skew: float, kurtosis: float) -> float:
    """P(true Sharpe > ``benchmark``) given an estimate ``sr`` from ``observations`` returns with that skew and
    kurtosis: Φ((SR - SR*) √(T-1) / √(1 - γ3 SR + (γ4 - 1)/4 SR²))."""
    if observations < 2 or not math.isfinite(sr):
        return float("nan")
    var = 1.0 - skew * sr + (kurtosis - 1.0) / 4.0 * sr * sr
    if var <= 0:
        return float("nan")
    return float(norm.cdf((sr - benchmark) * math.sqrt(observations - 1) / math.sqrt(var)))


def expected_max_sharpe(trial_sharpes: Sequence[float], trials: int | None = None) -> float:
    """The Sharpe the best of N trials reaches by luck alone when every true Sharpe is zero:
    √V[SR_n] ((1-γ) Φ⁻¹(1 - 1/N) + γ Φ⁻¹(1 - 1/(N e))), V the variance of the trials' Sharpes; N the trials
    tried (``trials``: pruned and failed ones count as tries though their Sharpes are unknown)."""
    s = np.asarray([x for x in trial_sharpes if math.isfinite(x)], dtype=float)
    n = max(s.size, trials or 0)
    if s.size < 2 or n < 2:
        return 0.0  # one trial: nothing to deflate for
    spread = math.sqrt(float(np.var(s, ddof=1)))
    return spread * ((1 - EULER_GAMMA) * float(norm.ppf(1 - 1 / n)) + EULER_GAMMA * float(norm.ppf(1 - 1 / (n * math.e))))


def deflated_sharpe(returns: Sequence[float], trial_sharpes: Sequence[float], trials: int | None = None) -> float:
    """The probabilistic Sharpe of ``returns`` against the best Sharpe N trials reach by luck."""
    skew, kurt = moments(returns)
    return probabilistic_sharpe(sharpe(returns), expected_max_sharpe(trial_sharpes, trials), len(returns), skew, kurt)


@dataclass(frozen=True)
class Overfitting:
    """CSCV's verdict: PBO, the share of splits whose in-sample best lands in the bottom half out of sample."""

    pbo: float
    splits: int
    logits: tuple[float, ...]


def pbo_cscv(performance: np.ndarray | Sequence[Sequence[float]], groups: int | None = None) -> Overfitting:
    """PBO of a T x N matrix (rows in time order, one column per trial): the rows in ``groups`` (S, even; the
    rows when None, less one when odd) equal contiguous blocks (the oldest rows left over dropped); for each choice of S/2 blocks as
    in-sample, the trial best in-sample (by mean) ranked out of sample: ω = rank / (N + 1), λ = ln(ω / (1 - ω));
    PBO = the share of λ <= 0. NaN with fewer than two trials or two blocks."""
    m = np.asarray(performance, dtype=float)
    t, n = m.shape
    s = groups if groups is not None else t - (t % 2)
    if n < 2 or s < 2 or s % 2 or s > t:
        return Overfitting(float("nan"), 0, ())
    m = m[t % s:]  # the oldest rows that do not fill S equal blocks are left out
    blocks = np.array_split(np.arange(len(m)), s)
    logits = []
    for chosen in itertools.combinations(range(s), s // 2):
        ins = np.concatenate([blocks[b] for b in chosen])
        outs = np.concatenate([blocks[b] for b in range(s) if b not in chosen])
        best = int(np.argmax(m[ins].mean(axis=0)))
        oos = m[outs].mean(axis=0)
        rank = int(np.sum(oos < oos[best])) + 1 + 0.5 * int(np.sum(oos == oos[best]) - 1)  # ties share the rank
        omega = rank / (n + 1)
        logits.append(math.log(omega / (1 - omega)))
    return Overfitting(float(np.mean([lam <= 0 for lam in logits])), len(logits), tuple(logits))


def verdict(dsr: float, pbo: float) -> str:
    """The summary's plain sentence."""
    if not math.isfinite(dsr):
        return "too few folds or trials to tell the best configuration from luck"
    luck = dsr < LUCK_LEVEL
    text = (f"indistinguishable from luck: deflated Sharpe {dsr:.2f} < {LUCK_LEVEL}" if luck
            else f"unlikely to be luck alone: deflated Sharpe {dsr:.2f} >= {LUCK_LEVEL}")
    if math.isfinite(pbo):
        text += f"; probability of backtest overfitting {pbo:.0%}"
    return text
