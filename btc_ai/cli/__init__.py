"""The face: `btc-ai`, one module per command group, and the progress display.

May import every floor below it, each command only what it needs (so `btc-ai --help` stays fast).
"""

from btc_ai.cli.main import build_parser, console, main
from btc_ai.cli.progress import ConsoleReporter
from btc_ai.cli.train import config_from_args

__all__ = ["ConsoleReporter", "build_parser", "config_from_args", "console", "main"]
