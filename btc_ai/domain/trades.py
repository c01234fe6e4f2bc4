"""Round trips, as traders count them, from the positions the simulator holds bar by bar.

A round trip is a stretch of bars held on one side (long or short): it opens at the decision row where
the held position leaves flat or changes side, and ends at the row where it goes flat or changes side
again. A flip (long -> short) is therefore two trades, closed and opened at the same close. Changes of
size on the same side (scaling in or out, fractional positions) stay inside one trade, whose ``size`` is
the largest held. A bar across a gap in the data is held flat (see :mod:`btc_ai.domain.market`), so a
gap closes a trade. A trade still open at the span's end is closed at the span's last close, paying the
closing cost the simulator charges there (``closed_at_end`` says which one).

Every bar's log reward (:func:`btc_ai.domain.market.step_rewards`, the same function the equity curve
sums) belongs to exactly one trade (flat bars earn exactly 0): the cost of a change of position is the
trade's it opens, closes or resizes, and a flip's cost, log(1 - cost x |change|), is split between the
closing and the opening trade in proportion to their sizes. So the trades' net log returns sum to the
equity curve's log return, and their net P&L (in units of the starting equity) to its total return.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from btc_ai.domain.market import MarketData, effective_positions, step_rewards

TRADE_COLUMNS = ("entry_time", "exit_time", "side", "size", "entry_price", "exit_price", "bars_held",
                 "gross_return", "net_return", "gross_pnl", "net_pnl", "closed_at_end")
EQUITY_COLUMNS = ("timestamp", "equity", "position", "drawdown")


def span_index(market: MarketData) -> pd.DatetimeIndex:
    """The span's decision rows and the time one bar after the last (where its closing trade happens)."""
    index = market.index
    if not len(index):
        return index
    step = index[-1] - index[-2] if len(index) > 1 else pd.Timedelta(0)
    return index.append(pd.DatetimeIndex([index[-1] + step]))


def span_rewards(positions: np.ndarray, market: MarketData, cost_rate: float, holding_cost: float) -> np.ndarray:
    """Per-bar log rewards (n,) float64 of ``positions`` over ``market``, flat to flat: the equity curve's."""
    return step_rewards(positions, market.next_log_return, cost_rate, holding_cost, tradable=market.tradable,
                        close_at_end=True).astype(np.float64)


def round_trips(positions: np.ndarray, market: MarketData, cost_rate: float, holding_cost: float,
                rewards: np.ndarray | None = None) -> pd.DataFrame:
    """One row per round trip of ``positions`` over ``market`` (columns :data:`TRADE_COLUMNS`).

    Prices are the closes at the entry and exit rows; returns are fractions of the equity at entry
    (gross: the market move times the position; net: after costs and the holding cost); P&L is in
    units of the span's starting equity, so ``net_pnl.sum()`` is the span's total return.
    """
    held = effective_positions(np.asarray(positions), market.tradable).astype(np.float64)
    rewards = span_rewards(positions, market, cost_rate, holding_cost) if rewards is None else rewards
    n = len(held)
    side = np.sign(held)
    before = np.concatenate([[0.0], side[:-1]]) if n else side
    starts = np.flatnonzero((side != 0) & (side != before))
    if not len(starts):
        return pd.DataFrame({c: pd.Series(dtype=_DTYPES[c]) for c in TRADE_COLUMNS})
    changes = np.concatenate([np.flatnonzero(side[1:] != side[:-1]) + 1, [n]])
    ends = changes[np.searchsorted(changes, starts, side="right")]
    exit_share = _exit_shares(held, rewards, cost_rate)
    log_sum = np.concatenate([[0.0], np.cumsum(rewards)])
    flipped = before[starts] != 0  # opened by a flip: the closing trade's part of that bar's cost is not ours
    pre = log_sum[starts] + np.where(flipped, exit_share[starts], 0.0)
    net = log_sum[ends] + exit_share[ends] - pre
    gross_sum = np.concatenate([[0.0], np.cumsum(held * market.next_log_return.astype(np.float64))])
    gross = gross_sum[ends] - gross_sum[starts]
    entry_equity = np.exp(pre)
    size = np.maximum.reduceat(np.abs(held), starts)  # between one trade's end and the next start all is flat
    times = span_index(market)
    return pd.DataFrame({
        "entry_time": times[starts], "exit_time": times[ends],
        "side": np.where(side[starts] > 0, "long", "short"), "size": size,
        "entry_price": market.close[starts], "exit_price": market.close[ends], "bars_held": ends - starts,
        "gross_return": np.expm1(gross), "net_return": np.expm1(net),
        "gross_pnl": entry_equity * np.expm1(gross), "net_pnl": entry_equity * np.expm1(net),
        "closed_at_end": ends == n,
    })


_DTYPES = {"entry_time": "datetime64[ns, UTC]", "exit_time": "datetime64[ns, UTC]", "side": object, "size": float,
           "entry_price": float, "exit_price": float, "bars_held": np.int64, "gross_return": float,
           "net_return": float, "gross_pnl": float, "net_pnl": float, "closed_at_end": bool}


def _exit_shares(held: np.ndarray, rewards: np.ndarray, cost_rate: float) -> np.ndarray:
    """(n + 1,) the log reward at each row that belongs to the trade closing there: the whole bar when the
    position goes flat (a flat bar earns nothing but that cost), its share of the cost of a flip, 0 elsewhere
    (the last row's closing cost is in its own reward already)."""
    n = len(held)
    share = np.zeros(n + 1)
    if n < 2:
        return share
    prev, now = held[:-1], held[1:]
    closes = (prev != 0) & (np.sign(now) != np.sign(prev))
    to_flat = closes & (now == 0)
    share[1:n][to_flat] = rewards[1:][to_flat]
    flip = closes & (now != 0)
    cost = np.log1p(-cost_rate * np.abs(now[flip] - prev[flip]))
    share[1:n][flip] = cost * np.abs(prev[flip]) / (np.abs(prev[flip]) + np.abs(now[flip]))
    return share


def equity_frame(positions: np.ndarray, market: MarketData, rewards: np.ndarray) -> pd.DataFrame:
    """The equity curve bar by bar (columns :data:`EQUITY_COLUMNS`): point 0 is the span's start (1.0), point
    t+1 the equity after decision t held over its bar; ``position`` is what is held from that point on
    (flat after the span's end), ``drawdown`` the fall from the running peak (0 at a new high)."""
    log_equity = np.concatenate([[0.0], np.cumsum(rewards)])
    held = effective_positions(np.asarray(positions), market.tradable).astype(np.float64)
    return pd.DataFrame({"timestamp": span_index(market), "equity": np.exp(log_equity),
                         "position": np.concatenate([held, [0.0]]),
                         "drawdown": 0.0 - np.expm1(log_equity - np.maximum.accumulate(log_equity))})
