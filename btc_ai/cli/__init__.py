"""The face: `btc-ai`, one module per command group, and the progress display.

May import every floor below it, each command only what it needs (so `btc-ai --help` stays fast).
"""

from btc_ai.cli.main import main

__all__ = ["main"]
