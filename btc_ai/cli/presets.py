"""`btc-ai presets`: the trading-style buckets and their settings, or every config key with its range."""

from __future__ import annotations

import argparse
import json
from typing import Any

from btc_ai.cli.common import EXIT_OK
from btc_ai.domain.config import KNOWN_KEYS, TrainingConfig, allowed_range, normalize_key, shown_key
from btc_ai.domain.presets import BUCKETS


def add_parser(sub: Any) -> None:
    presets = sub.add_parser("presets", help="list the trading-style buckets and their settings")
    presets.add_argument("--keys", action="store_true", help="list every config key with its allowed range")
    presets.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    if args.keys:
        fields = TrainingConfig.model_fields
        if args.json:
            print(json.dumps({k: {"allowed": allowed_range(k), "description": fields[k].description} for k in KNOWN_KEYS},
                             indent=2))
        else:
            for key in KNOWN_KEYS:
                print(f"{shown_key(key):<24} {allowed_range(key):<32} {fields[key].description}")
        return EXIT_OK
    if args.json:
        print(json.dumps({name: b.config() for name, b in BUCKETS.items()}, indent=2))
        return EXIT_OK
    keys = ["TIMEFRAME", "MAX_STEPS_PER_EPISODE", "LOOKBACK", "FEE_BPS", "HOLDING_COST_BPS", "DRAWDOWN_PENALTY",
            "EPISODES_PER_EVAL"]
    print(f"{'bucket':<10} " + " ".join(f"{normalize_key(k):>21}" for k in keys))
    for name, bucket in BUCKETS.items():
        values = bucket.config()
        print(f"{name:<10} " + " ".join(f"{values[k]!s:>21}" for k in keys))
        print(f"{'':<10} {bucket.description}")
    print("\nany key can be overridden: btc-ai train --bucket Swing --set FEE_BPS=5  (all keys: btc-ai presets --keys)")
    return EXIT_OK
