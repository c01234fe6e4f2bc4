"""The domain floor: candles, config, features, market, policy and the ES algorithm.

May import numpy, pandas, torch and pydantic, and nothing of btc_ai above it (never mlflow, tenacity
or ray): the domain is usable and testable with no tracking server at all.
"""
