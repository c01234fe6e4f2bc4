"""The search's statistics against independent computations: the deflated Sharpe of the paper's own example
(Bailey & López de Prado 2014: SR0 0.1132, DSR 0.9004) and of a small example worked out here by hand with the
standard library; PBO by CSCV on a small matrix whose six splits are enumerated here one by one."""

from __future__ import annotations

import math
import statistics

import pytest

from btc_ai.domain.search_stats import (
    deflated_sharpe,
    expected_max_sharpe,
    moments,
    pbo_cscv,
    probabilistic_sharpe,
    sharpe,
    verdict,
)

PHI = statistics.NormalDist()


def test_the_papers_example() -> None:
    # 100 trials, the best with an annualized Sharpe of 2.5 over 1250 days, trials' Sharpe variance 0.5 a year,
    # skew -3, kurtosis 10: the paper gives SR0 = 0.1132 (daily) and DSR = 0.9004
    daily, variance = 2.5 / math.sqrt(250), 0.5 / 250
    sr0 = math.sqrt(variance) * ((1 - 0.5772156649) * PHI.inv_cdf(1 - 1 / 100) + 0.5772156649 * PHI.inv_cdf(1 - 1 / (100 * math.e)))
    assert sr0 == pytest.approx(0.1132, abs=5e-5)
    assert probabilistic_sharpe(daily, sr0, 1250, -3.0, 10.0) == pytest.approx(0.9004, abs=5e-5)


def test_a_small_example_by_hand() -> None:
    returns = [0.02, -0.01, 0.03, 0.015, -0.005, 0.025]
    trials = [0.9, 0.1, -0.3, 0.5]  # the Sharpes of the four trials of the study
    t = len(returns)
    mean = sum(returns) / t
    sd = math.sqrt(sum((r - mean) ** 2 for r in returns) / (t - 1))
    m2 = sum((r - mean) ** 2 for r in returns) / t
    skew = sum((r - mean) ** 3 for r in returns) / t / m2**1.5
    kurt = sum((r - mean) ** 4 for r in returns) / t / m2**2
    sr = mean / sd
    tm = sum(trials) / 4
    v = sum((x - tm) ** 2 for x in trials) / 3
    sr0 = math.sqrt(v) * ((1 - 0.5772156649) * PHI.inv_cdf(0.75) + 0.5772156649 * PHI.inv_cdf(1 - 1 / (4 * math.e)))
    dsr = PHI.cdf((sr - sr0) * math.sqrt(t - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2))
    assert sharpe(returns) == pytest.approx(sr, rel=1e-12)
    assert moments(returns) == pytest.approx((skew, kurt), rel=1e-12)
    assert expected_max_sharpe(trials) == pytest.approx(sr0, rel=1e-9)
    assert deflated_sharpe(returns, trials) == pytest.approx(dsr, rel=1e-9)
    assert 0 < dsr < 1
    # more trials with the same spread raise the bar: the same returns deflate further
    assert deflated_sharpe(returns, trials * 5) < deflated_sharpe(returns, trials)
    assert deflated_sharpe(returns, trials, 20) < deflated_sharpe(returns, trials)  # tries without a Sharpe count too
    assert "indistinguishable from luck" in verdict(0.5, 0.4) and "unlikely to be luck" in verdict(0.99, 0.1)


def test_pbo_of_a_small_matrix_enumerated_by_hand() -> None:
    # 4 periods (rows) x 3 trials; trial 0 shines in periods 1-2 and fails later, trial 2 is steady
    m = [[0.05, 0.00, 0.011],
         [0.04, 0.013, 0.009],
         [-0.03, 0.024, 0.012],
         [-0.02, 0.017, 0.010]]
    # S = 4 blocks of one row; the 6 in-sample halves, the in-sample best (by mean), its out-of-sample rank (1 = worst of 3)
    halves = {(0, 1): 0, (0, 2): 1, (0, 3): 0, (1, 2): 1, (1, 3): 1, (2, 3): 1}
    logits = []
    for ins, best in halves.items():
        mean_in = [sum(m[r][j] for r in ins) / 2 for j in range(3)]
        assert max(range(3), key=lambda j: mean_in[j]) == best
        outs = [r for r in range(4) if r not in ins]
        mean_out = [sum(m[r][j] for r in outs) / 2 for j in range(3)]
        rank = 1 + sum(x < mean_out[best] for x in mean_out)
        logits.append(math.log((rank / 4) / (1 - rank / 4)))
    found = pbo_cscv(m)
    assert found.splits == 6
    assert list(found.logits) == pytest.approx(logits, rel=1e-12)
    assert found.pbo == pytest.approx(sum(x <= 0 for x in logits) / 6) == pytest.approx(4 / 6)
    assert math.isnan(pbo_cscv([[0.1], [0.2]]).pbo)  # one trial: nothing to overfit between
