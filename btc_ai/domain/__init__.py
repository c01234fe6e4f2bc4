"""The domain floor: candles, config, features, market, policy, the ES algorithm and plots of plain data.

May import numpy, pandas, torch, pydantic and matplotlib, and nothing of btc_ai above it (never mlflow,
tenacity or ray): the domain is usable and testable with no tracking server at all.
"""
